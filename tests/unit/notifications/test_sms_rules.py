"""SMS pieces that need no network: the provider's published signature example, phone
numbers, the per-number limits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from remotegpu.adapters.notifications.aliyun_sms import AliyunSmsSender, AliyunSmsSettings, sign
from remotegpu.application.notifications.ports import SmsMessage
from remotegpu.domain.notifications.sms import masked, normalize_phone, retry_after
from remotegpu.domain.shared.errors import InvalidInput
from tests.support.sms_provider import expected_signature

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def test_the_providers_documented_example_signs_as_documented():
    # Aliyun's "HTTP protocol and signature" example for SendSms (GET, secret "testSecret").
    params = {
        "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123", "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用", "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466", "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}', "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert sign(params, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert expected_signature(params, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_request_parameters():
    sender = AliyunSmsSender(AliyunSmsSettings("id", "secret", "RemoteGPU", {"verify": "SMS_1", "notify": "SMS_2"}))
    p = sender.params(SmsMessage("+8613800138000", "verify", {"code": "123456"}, "k1"), now=T0, nonce="n1")
    assert p["PhoneNumbers"] == "13800138000" and p["TemplateCode"] == "SMS_1" and p["TemplateParam"] == '{"code":"123456"}'
    assert p["Timestamp"] == "2026-11-30T12:00:00Z" and p["OutId"] == "k1"
    assert p["Signature"] == expected_signature(p, "secret")
    intl = sender.params(SmsMessage("+447700900123", "notify", {"title": "x"}, "k2"), now=T0, nonce="n2")
    assert intl["PhoneNumbers"] == "447700900123"


def test_phone_numbers():
    assert normalize_phone("138 0013-8000") == "+8613800138000"
    assert normalize_phone("0044 7700 900123") == "+447700900123"
    assert masked("+8613800138000") == "+86138****8000"
    for bad in ("12345", "+0123456789", "phone", "+86 138 0013 8000 0000 000"):
        with pytest.raises(InvalidInput):
            normalize_phone(bad)


def test_one_a_minute_five_an_hour_ten_a_day():
    assert retry_after([], T0) is None
    assert retry_after([T0 - timedelta(seconds=10)], T0) == 50
    assert retry_after([T0 - timedelta(seconds=61)], T0) is None
    five = [T0 - timedelta(minutes=m) for m in (50, 40, 30, 20, 2)]
    assert retry_after(five, T0) == 10 * 60  # the oldest leaves the hour in 10 minutes
    ten = [T0 - timedelta(hours=h) for h in (23, 20, 18, 16, 14, 12, 10, 8, 6, 4)]
    assert retry_after(ten, T0) == 3600  # the 23-hour-old one leaves the day in an hour
