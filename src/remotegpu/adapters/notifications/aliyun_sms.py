"""SMS through an Aliyun-style HTTP API (Dysmsapi ``SendSms``, RPC signature version 1.0).

The request is a form POST of the parameters plus ``Signature``: base64 of
HMAC-SHA1(AccessKeySecret + "&", "POST&%2F&" + percent-encode(canonical query)), where
the canonical query is the parameters sorted by name, each name and value
percent-encoded (RFC 3986: only ``A-Z a-z 0-9 - _ . ~`` stay) and joined with ``=`` and
``&``. A fresh ``SignatureNonce`` and the UTC ``Timestamp`` make each request unique and
let the provider refuse replays. Tencent Cloud and others sign similarly; the endpoint is
configurable, so a compatible gateway works too.

Answers: ``{"Code": "OK", ...}`` sent; ``isv.BUSINESS_LIMIT_CONTROL`` / ``Throttling*`` / a
5xx / no answer: transient (retried with backoff); any other code: permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

import aiohttp

from remotegpu.application.notifications.ports import PermanentSmsError, SmsMessage, TransientSmsError

_TRANSIENT_CODES = ("isv.BUSINESS_LIMIT_CONTROL", "Throttling", "ServiceUnavailable", "InternalError")


def percent_encode(value: str) -> str:
    return quote(value, safe="~")


def sign(params: dict[str, str], secret: str, method: str = "POST") -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class AliyunSmsSettings:
    access_key_id: str
    access_key_secret: str
    sign_name: str
    templates: dict[str, str]  # our template name → the provider's TemplateCode
    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    region: str = "cn-hangzhou"
    timeout: float = 10.0


class AliyunSmsSender:
    """Satisfies ``application.notifications.ports.SmsSender``."""

    def __init__(self, settings: AliyunSmsSettings):
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def params(self, message: SmsMessage, *, now: datetime | None = None, nonce: str | None = None) -> dict[str, str]:
        s = self.settings
        template = s.templates.get(message.template)
        if not template:
            raise PermanentSmsError(f"no provider template configured for {message.template!r} messages")
        number = message.to.removeprefix("+86") if message.to.startswith("+86") else message.to.lstrip("+")
        params = {
            "AccessKeyId": s.access_key_id, "Action": "SendSms", "Format": "JSON", "RegionId": s.region,
            "SignatureMethod": "HMAC-SHA1", "SignatureNonce": nonce or uuid.uuid4().hex, "SignatureVersion": "1.0",
            "Timestamp": (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": "2017-05-25",
            "PhoneNumbers": number, "SignName": s.sign_name, "TemplateCode": template,
            "TemplateParam": json.dumps(message.params, ensure_ascii=False, separators=(",", ":")),
            "OutId": message.idempotency_key[:64],
        }
        params["Signature"] = sign(params, s.access_key_secret)
        return params

    async def send(self, message: SmsMessage) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        try:
            async with self._session.post(self.settings.endpoint, data=self.params(message), allow_redirects=False) as r:
                text = (await r.content.read(65536)).decode(errors="replace")
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSmsError(f"SMS provider unreachable: {exc.__class__.__name__}: {exc}") from None
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
        code = str(body.get("Code", "")) if isinstance(body, dict) else ""
        if status == 200 and code == "OK":
            return
        detail = f"{status} {code}: {str(body.get('Message', text))[:300] if isinstance(body, dict) else text[:300]}"
        if status >= 500 or status == 429 or any(code.startswith(c) for c in _TRANSIENT_CODES):
            raise TransientSmsError(detail)
        raise PermanentSmsError(detail)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
