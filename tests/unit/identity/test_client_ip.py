"""The client address behind trusted proxies: X-Forwarded-For walked from the right."""

from __future__ import annotations

import pytest

from remotegpu.entrypoints.config import ConfigError, load_settings
from remotegpu.entrypoints.http.client_ip import parse_address, parse_networks, resolve

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.7, fd00::/8")


@pytest.mark.parametrize(
    "peer, xff, expected",
    [
        # No trusted proxy in front: the header is the client's own words, ignored.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # One trusted proxy: the hop it appended is the client.
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        # The client wrote its own header first: everything left of the first untrusted hop is ignored.
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # the same, as two header lines
        # A chain of trusted proxies: skip them all.
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1, 192.0.2.7, 10.9.9.9"], "198.51.100.1"),
        # Every hop trusted: the leftmost is the best we know.
        ("10.1.2.3", ["10.0.0.5, 192.0.2.7"], "10.0.0.5"),
        # A trusted proxy without the header: itself.
        ("10.1.2.3", [], "10.1.2.3"),
        # Garbage where an address should be: the trusted hop that passed it on.
        ("10.1.2.3", ["198.51.100.1, not-an-ip"], "10.1.2.3"),
        # Ports, brackets, IPv6 and IPv4-mapped peers as proxies write them.
        ("10.1.2.3", ["198.51.100.1:4711"], "198.51.100.1"),
        ("fd00::1", ["[2001:db8::5]:443"], "2001:db8::5"),
        ("::ffff:10.1.2.3", ["2001:db8::6"], "2001:db8::6"),
        (None, ["198.51.100.1"], None),
    ],
)
def test_the_first_untrusted_hop_from_the_right_is_the_client(peer, xff, expected):
    assert resolve(peer, xff, PROXIES) == expected


def test_with_no_trusted_proxies_the_peer_is_the_client():
    assert resolve("127.0.0.1", ["198.51.100.1"], ()) == "127.0.0.1"


def test_parse_address_refuses_garbage():
    assert parse_address("unknown") is None and parse_address("") is None and parse_address("1.2.3") is None


def test_trusted_proxies_config_is_validated_and_normalised(tmp_path):
    settings = load_settings(data_dir=tmp_path, trusted_proxies=" 10.0.0.1/8 ,::1")
    assert settings.trusted_proxies == "10.0.0.0/8,::1/128"
    assert load_settings(data_dir=tmp_path).trusted_proxies == ""
    assert load_settings(data_dir=tmp_path, trusted_proxies=["192.0.2.0/24"]).trusted_proxies == "192.0.2.0/24"
    with pytest.raises(ConfigError, match="REMOTEGPU_TRUSTED_PROXIES"):
        load_settings(data_dir=tmp_path, trusted_proxies="10.0.0.0/8, proxy.internal")
