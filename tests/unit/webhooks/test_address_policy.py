from __future__ import annotations

import ipaddress
import random
from datetime import timedelta

import pytest

from remotegpu.domain.shared.errors import InvalidInput
from remotegpu.domain.webhooks.addresses import AddressPolicy, AddressRefused, parse_cidrs, parse_url
from remotegpu.domain.webhooks.schedule import MAX_ATTEMPTS, next_delay
from remotegpu.domain.webhooks.signing import new_secret, sign

REFUSED = [
    "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.31.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1",
    "100.127.255.255", "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.8",
    "::", "::1", "fc00::1", "fd00:ec2::254", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "::127.0.0.1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "64:ff9b::7f00:1", "64:ff9b::a00:1", "2001:db8::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
]
ALLOWED = ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert not AddressPolicy().is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    assert AddressPolicy().is_allowed(ipaddress.ip_address(address))


def test_an_allowlist_opens_only_its_cidrs():
    policy = AddressPolicy(parse_cidrs("127.0.0.1/32, 10.0.0.0/8"))
    assert policy.is_allowed(ipaddress.ip_address("127.0.0.1")) and policy.is_allowed(ipaddress.ip_address("10.9.9.9"))
    assert policy.is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))  # the same address, mapped
    assert not policy.is_allowed(ipaddress.ip_address("127.0.0.2"))
    assert not policy.is_allowed(ipaddress.ip_address("169.254.169.254"))


@pytest.mark.parametrize("url", [
    "http://2130706433/", "http://0177.0.0.1/", "http://0x7f000001/", "http://0x7f.1/", "http://127.1/", "http://0/",
    "http://017700000001/", "http://localhost/", "http://localhost./", "http://a.localhost/",
])
def test_numbers_in_disguise_and_localhost_are_refused(url):
    with pytest.raises(AddressRefused):
        parse_url(url)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "http://", "https://u:p@example.com/",
                                 "http://exa mple.com/", "http://example.com:99999/", "javascript:alert(1)"])
def test_bad_urls_are_refused(url):
    with pytest.raises(InvalidInput):
        parse_url(url)


def test_names_and_literals_parse():
    assert parse_url("https://Hooks.Example.com./in").host == "hooks.example.com"
    parsed = parse_url("http://[::ffff:127.0.0.1]:8080/x")
    assert parsed.literal == ipaddress.ip_address("::ffff:127.0.0.1") and parsed.port == 8080
    assert parse_url("http://1.2.3.4.example.com/").literal is None  # a name that starts with digits is a name


def test_schedule_is_the_specs_with_jitter_and_retry_after():
    rng = random.Random(1)
    spec = [5, 300, 1800, 7200, 18000, 36000, 36000]
    for attempts, seconds in enumerate(spec, start=1):
        delay = next_delay(attempts, rng=rng).total_seconds()
        assert seconds * 0.9 <= delay <= seconds * 1.1
    assert next_delay(MAX_ATTEMPTS) is None and MAX_ATTEMPTS == 8
    assert next_delay(1, timedelta(seconds=120)) == timedelta(seconds=120)
    assert next_delay(1, timedelta(days=30)) == timedelta(hours=10)  # capped


def test_signature_matches_the_specs_example():
    # The example of the Standard Webhooks spec (and of its reference libraries).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}'
    assert sign(secret, msg_id, ts, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert new_secret().startswith("whsec_") and new_secret() != new_secret()
