"""A local stand-in for an Aliyun-style SMS API that checks every request the way the
provider does, with its own implementation of the signature (not the adapter's):
the signature, a fresh timestamp, an unused nonce, the access key, then answers like
Dysmsapi (``{"Code": "OK"}`` or an error code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from datetime import datetime, timedelta, timezone

from aiohttp import web

_UNRESERVED = set(string.ascii_letters + string.digits + "-_.~")


def _rfc3986(text: str) -> str:
    """Percent-encode UTF-8 bytes, leaving only RFC 3986 unreserved characters (written out by hand)."""
    return "".join(chr(b) if chr(b) in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def expected_signature(params: dict[str, str], secret: str, method: str = "POST") -> str:
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(_rfc3986(k) + "=" + _rfc3986(v) for k, v in pairs)
    string_to_sign = method + "&" + _rfc3986("/") + "&" + _rfc3986(canonical)
    mac = hmac.new((secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


class SmsProvider:
    def __init__(self, access_key_id: str = "LTAI-test", secret: str = "test-secret") -> None:
        self.access_key_id, self.secret = access_key_id, secret
        self.accepted: list[dict[str, str]] = []
        self.refused: list[tuple[str, dict[str, str]]] = []
        self.answer_next: list[tuple[int, str]] = []  # (status, Code) to answer instead of OK
        self._nonces: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _error(self, code: str, params: dict[str, str], status: int = 400) -> web.Response:
        self.refused.append((code, params))
        return web.json_response({"Code": code, "Message": code, "RequestId": "r"}, status=status)

    async def _handle(self, request: web.Request) -> web.Response:
        params = {k: v for k, v in (await request.post()).items()}
        if params.get("AccessKeyId") != self.access_key_id:
            return self._error("InvalidAccessKeyId.NotFound", params, 404)
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            return self._error("InvalidSignatureMethod", params)
        if not hmac.compare_digest(params.get("Signature", ""), expected_signature(params, self.secret)):
            return self._error("SignatureDoesNotMatch", params)
        at = datetime.strptime(params.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        if abs(datetime.now(timezone.utc) - at) > timedelta(minutes=15):
            return self._error("InvalidTimeStamp.Expired", params)
        if params.get("SignatureNonce", "") in self._nonces:
            return self._error("SignatureNonceUsed", params)
        self._nonces.add(params["SignatureNonce"])
        if params.get("Action") != "SendSms" or not params.get("PhoneNumbers") or not params.get("TemplateCode"):
            return self._error("MissingParameter", params)
        json.loads(params.get("TemplateParam", "{}"))
        if self.answer_next:
            status, code = self.answer_next.pop(0)
            return self._error(code, params, status)
        self.accepted.append(params)
        return web.json_response({"Code": "OK", "Message": "OK", "BizId": f"biz{len(self.accepted)}", "RequestId": "r"})

    async def start(self) -> "SmsProvider":
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the port the OS chose
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
