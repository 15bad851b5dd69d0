"""The second SMS provider style: Tencent Cloud's API 3.0 (TC3-HMAC-SHA256), against a local
provider that checks every signature with its own implementation of the spec
(tests/support/sms_provider.py: TencentSmsProvider). A number is verified by code through
it; a wrong SecretKey is refused by the provider; its rate-limit codes are transient."""

from __future__ import annotations

import aiohttp
import pytest

from remotegpu.adapters.notifications.tencent_sms import TencentSmsSender, TencentSmsSettings, authorization
from remotegpu.application.notifications.ports import PermanentSmsError, SmsMessage, TransientSmsError
from remotegpu.entrypoints.containers import build_container
from remotegpu.entrypoints.http.app import create_app
from tests.conftest import make_settings, signup
from tests.support.sms_provider import TencentSmsProvider, tc3_signature

PHONE = "/api/v1/users/me/phone"


@pytest.fixture
async def provider():
    p = await TencentSmsProvider().start()
    yield p
    await p.stop()


def _settings(tmp_path, provider, secret="test-secret"):
    return make_settings(
        tmp_path, sms_provider="tencent", sms_endpoint=provider.url, sms_access_key_id="AKID-test",
        sms_access_key_secret=secret, sms_app_id="1400000001", sms_sign_name="RemoteGPU", sms_template_verify="100",
        sms_template_notify="200",
    )


async def _client(aiohttp_client, settings):
    container = build_container(settings, persistence="memory")
    return await aiohttp_client(create_app(container, run_background=False), cookie_jar=aiohttp.DummyCookieJar())


def test_the_signature_matches_tencents_documented_example_and_the_independent_implementation():
    # The worked example of Tencent Cloud's "Signature v3" page (CVM DescribeInstances).
    body = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    documented = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    header = authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
                           "cvm.tencentcloudapi.com", body, 1551113065, service="cvm")
    assert header == ("TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, "
                      f"SignedHeaders=content-type;host, Signature={documented}")
    signed = {"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"}
    assert tc3_signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", "POST", "/", "", signed, ["content-type", "host"], body,
                         "1551113065", service="cvm") == documented
    assert tc3_signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", "POST", "/", "", signed, ["content-type", "host"], body + b" ",
                         "1551113065", service="cvm") != documented  # the body is signed


async def test_a_number_is_verified_by_code_through_the_tencent_style_provider(aiohttp_client, tmp_path, provider):
    client = await _client(aiohttp_client, _settings(tmp_path, provider))
    alice = await signup(client)
    r = await client.put(PHONE, json={"number": "138 0013 8000"}, headers=alice.headers)
    assert r.status == 202, await r.text()
    [sent] = provider.accepted
    assert sent["PhoneNumberSet"] == ["+8613800138000"] and sent["TemplateId"] == "100" and sent["SignName"] == "RemoteGPU"
    assert sent["SmsSdkAppId"] == "1400000001" and provider.refused == []
    [code] = sent["TemplateParamSet"]
    assert len(code) == 6 and code.isdigit()
    r = await client.post(PHONE + "/verify", json={"code": code}, headers=alice.headers)
    assert r.status == 200 and (await r.json())["number"] == "+8613800138000"


async def test_a_wrong_secret_key_is_refused_by_the_provider(aiohttp_client, tmp_path, provider):
    client = await _client(aiohttp_client, _settings(tmp_path, provider, secret="not-the-secret"))
    alice = await signup(client)
    r = await client.put(PHONE, json={"number": "+8613800138020"}, headers=alice.headers)
    assert r.status == 409 and (await r.json())["error"]["code"] == "sms_rejected"
    assert [code for code, _ in provider.refused] == ["AuthFailure.SignatureFailure"] and provider.accepted == []


async def test_rate_limit_codes_are_transient_and_others_permanent(provider):
    sender = TencentSmsSender(TencentSmsSettings(secret_id="AKID-test", secret_key="test-secret", app_id="1400000001",
                                                 sign_name="RemoteGPU", templates={"notify": "200"}, endpoint=provider.url))
    message = SmsMessage(to="+8613800138030", template="notify", params={"title": "t"}, idempotency_key="n-1:sms")
    try:
        provider.answer_next = [(200, "LimitExceeded.PhoneNumberOneHourLimit"), (200, "FailedOperation.TemplateIncorrectOrUnapproved")]
        with pytest.raises(TransientSmsError, match="LimitExceeded"):
            await sender.send(message)
        with pytest.raises(PermanentSmsError, match="TemplateIncorrect"):
            await sender.send(message)
        await sender.send(message)
        assert provider.accepted[-1]["SessionContext"] == "n-1:sms" and provider.accepted[-1]["TemplateParamSet"] == ["t"]
        with pytest.raises(PermanentSmsError, match="no provider template"):
            await sender.send(SmsMessage(to="+8613800138030", template="verify", params={}, idempotency_key="x"))
    finally:
        await sender.close()
