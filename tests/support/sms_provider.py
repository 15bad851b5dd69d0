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


def tc3_signature(secret_key: str, method: str, path: str, query: str, headers: dict[str, str], signed: list[str],
                  body: bytes, timestamp: str, service: str = "sms") -> str:
    """TC3-HMAC-SHA256 as Tencent Cloud's API 3.0 documents it, written from the spec (not the
    adapter's code): the canonical headers are the ones the request says it signed."""
    day = datetime.fromtimestamp(int(timestamp), tz=timezone.utc).date().isoformat()
    canon_headers = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in signed)
    request = f"{method}\n{path}\n{query}\n{canon_headers}\n{';'.join(signed)}\n{hashlib.sha256(body).hexdigest()}"
    scope = day + "/" + service + "/tc3_request"
    sts = "TC3-HMAC-SHA256\n" + timestamp + "\n" + scope + "\n" + hashlib.sha256(request.encode("utf-8")).hexdigest()
    k = ("TC3" + secret_key).encode("utf-8")
    for part in (day, service, "tc3_request"):
        k = hmac.new(k, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(k, sts.encode("utf-8"), hashlib.sha256).hexdigest()


class TencentSmsProvider(SmsProvider):
    """A Tencent Cloud-style SMS API (``SendSms`` 2021-01-11) that checks every request's
    TC3-HMAC-SHA256 signature with the implementation above, a timestamp within 5 minutes,
    the SecretId and the SmsSdkAppId, then answers like the provider (always HTTP 200).
    ``accepted`` holds the JSON bodies it accepted."""

    def __init__(self, secret_id: str = "AKID-test", secret: str = "test-secret", app_id: str = "1400000001") -> None:
        super().__init__(secret_id, secret)
        self.app_id = app_id

    def _tc_error(self, code: str, params: dict) -> web.Response:
        self.refused.append((code, params))
        return web.json_response({"Response": {"Error": {"Code": code, "Message": code}, "RequestId": "r"}})

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            params = json.loads(body)
        except ValueError:
            return self._tc_error("InvalidParameter", {})
        auth = request.headers.get("Authorization", "")
        algorithm, _, rest = auth.partition(" ")
        fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
        if algorithm != "TC3-HMAC-SHA256" or not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
            return self._tc_error("AuthFailure.InvalidAuthorization", params)
        secret_id, day, service, terminator = fields["Credential"].split("/")
        if secret_id != self.access_key_id:
            return self._tc_error("AuthFailure.SecretIdNotFound", params)
        timestamp = request.headers.get("X-TC-Timestamp", "0")
        if abs(datetime.now(timezone.utc).timestamp() - int(timestamp)) > 300:
            return self._tc_error("AuthFailure.SignatureExpire", params)
        signed = fields["SignedHeaders"].split(";")
        headers = {name: request.headers.get(name, "") for name in signed}
        if "host" not in signed or "content-type" not in signed or service != "sms" or terminator != "tc3_request":
            return self._tc_error("AuthFailure.InvalidAuthorization", params)
        want = tc3_signature(self.secret, request.method, request.path, request.query_string, headers, signed, body, timestamp)
        if day != datetime.fromtimestamp(int(timestamp), tz=timezone.utc).date().isoformat() \
                or not hmac.compare_digest(fields["Signature"], want):
            return self._tc_error("AuthFailure.SignatureFailure", params)
        if request.headers.get("X-TC-Action") != "SendSms" or request.headers.get("X-TC-Version") != "2021-01-11":
            return self._tc_error("InvalidAction", params)
        if params.get("SmsSdkAppId") != self.app_id:
            return self._tc_error("FailedOperation.SmsSdkAppIdVerifyFail", params)
        if not params.get("PhoneNumberSet") or not params.get("TemplateId") or not params.get("SignName"):
            return self._tc_error("MissingParameter", params)
        if self.answer_next:
            _, code = self.answer_next.pop(0)
            self.refused.append((code, params))
            return web.json_response({"Response": {"SendStatusSet": [
                {"PhoneNumber": params["PhoneNumberSet"][0], "Code": code, "Message": code}], "RequestId": "r"}})
        self.accepted.append(params)
        return web.json_response({"Response": {"SendStatusSet": [
            {"SerialNo": f"sn{len(self.accepted)}", "PhoneNumber": n, "Fee": 1, "Code": "Ok", "Message": "send success"}
            for n in params["PhoneNumberSet"]], "RequestId": "r"}})
