"""SMS through a Tencent Cloud-style HTTP API (``sms`` ``SendSms`` 2021-01-11, API 3.0 with
TC3-HMAC-SHA256 request signing).

The request is a JSON POST; headers ``X-TC-Action``/``X-TC-Version``/``X-TC-Timestamp``/
``X-TC-Region`` and ``Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/tc3_request,
SignedHeaders=content-type;host, Signature=<hex>``, where

- canonical request = ``POST\\n/\\n\\ncontent-type:<ct>\\nhost:<host>\\n\\ncontent-type;host\\n`` + hex SHA-256 of the body;
- string to sign = ``TC3-HMAC-SHA256\\n<timestamp>\\n<date>/sms/tc3_request\\n`` + hex SHA-256 of the canonical request;
- signing key = HMAC-SHA256 chain ``"TC3" + SecretKey`` → date (UTC, of the timestamp) → ``sms`` → ``tc3_request``;
- signature = hex HMAC-SHA256(signing key, string to sign).

The timestamp binds the request to a 5-minute window at the provider. Answers come with HTTP
200: ``{"Response": {"SendStatusSet": [{"Code": "Ok", ...}]}}`` sent; ``{"Response": {"Error":
{"Code": ...}}}`` or a per-number status code otherwise. ``RequestLimitExceeded``,
``LimitExceeded.*``, ``InternalError*``, a 5xx or no answer: transient (retried with backoff);
anything else permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

import aiohttp

from remotegpu.application.notifications.ports import PermanentSmsError, SmsMessage, TransientSmsError

SERVICE = "sms"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
_TRANSIENT = ("RequestLimitExceeded", "LimitExceeded", "InternalError", "FailedOperation.InsufficientBalanceInSmsPackage")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def authorization(secret_id: str, secret_key: str, host: str, body: bytes, timestamp: int, service: str = SERVICE) -> str:
    """The ``Authorization`` header of a POST of ``body`` to ``host`` at ``timestamp``."""
    date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
    canonical = "\n".join(["POST", "/", "", f"content-type:{CONTENT_TYPE}\nhost:{host}\n", "content-type;host",
                           hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join([ALGORITHM, str(timestamp), scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={signature}"


@dataclass(frozen=True)
class TencentSmsSettings:
    secret_id: str
    secret_key: str
    app_id: str  # SmsSdkAppId
    sign_name: str
    templates: dict[str, str]  # our template name → the provider's TemplateId
    endpoint: str = "https://sms.tencentcloudapi.com/"
    region: str = "ap-guangzhou"
    timeout: float = 10.0


class TencentSmsSender:
    """Satisfies ``application.notifications.ports.SmsSender``."""

    def __init__(self, settings: TencentSmsSettings):
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def request(self, message: SmsMessage, *, now: int | None = None) -> tuple[dict[str, str], bytes]:
        """Headers and body of the ``SendSms`` call for ``message`` (signed)."""
        s = self.settings
        template = s.templates.get(message.template)
        if not template:
            raise PermanentSmsError(f"no provider template configured for {message.template!r} messages")
        number = message.to if message.to.startswith("+") else "+" + message.to
        body = json.dumps({
            "PhoneNumberSet": [number], "SmsSdkAppId": s.app_id, "SignName": s.sign_name, "TemplateId": template,
            # Tencent's templates take positional parameters: {1}, {2}, … in the order given.
            "TemplateParamSet": [str(v) for v in message.params.values()],
            "SessionContext": message.idempotency_key[:512],
        }, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(time.time()) if now is None else now
        host = urlsplit(s.endpoint).netloc
        headers = {
            "Content-Type": CONTENT_TYPE, "Host": host, "X-TC-Action": "SendSms", "X-TC-Version": "2021-01-11",
            "X-TC-Timestamp": str(timestamp), "X-TC-Region": s.region,
            "Authorization": authorization(s.secret_id, s.secret_key, host, body, timestamp),
        }
        return headers, body

    async def send(self, message: SmsMessage) -> None:
        headers, body = self.request(message)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        try:
            async with self._session.post(self.settings.endpoint, data=body, headers=headers, allow_redirects=False) as r:
                text = (await r.content.read(65536)).decode(errors="replace")
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSmsError(f"SMS provider unreachable: {exc.__class__.__name__}: {exc}") from None
        try:
            answer = json.loads(text).get("Response") or {}
        except (ValueError, AttributeError):
            answer = {}
        error = answer.get("Error") if isinstance(answer, dict) else None
        statuses = answer.get("SendStatusSet") if isinstance(answer, dict) else None
        if status == 200 and not error and statuses and all(str(x.get("Code")) == "Ok" for x in statuses):
            return
        if error:
            code, text = str(error.get("Code", "")), str(error.get("Message", ""))
        elif statuses:
            bad = next(x for x in statuses if str(x.get("Code")) != "Ok")
            code, text = str(bad.get("Code", "")), str(bad.get("Message", ""))
        else:
            code = ""
        detail = f"{status} {code}: {text[:300]}"
        if status >= 500 or status == 429 or any(code.startswith(c) for c in _TRANSIENT):
            raise TransientSmsError(detail)
        raise PermanentSmsError(detail)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
