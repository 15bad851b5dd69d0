"""The signed-in user's phone number for SMS notifications, verified by a code before use."""

from __future__ import annotations

from remotegpu.domain.notifications.sms import PhoneNumber
from remotegpu.entrypoints.http.handlers import api
from remotegpu.entrypoints.http.routing import Call
from remotegpu.entrypoints.http.schemas.notifications import PhoneCodeIn, PhoneIn, PhoneOut

TAGS = ["notifications"]
PATH = "/api/v1/users/me/phone"


def _out(p: PhoneNumber, enabled: bool) -> PhoneOut:
    return PhoneOut(number=p.number, verified_at=p.verified_at, pending_number=p.pending_number,
                    code_expires_at=p.code_expires_at, sms_enabled=enabled)


@api.get(PATH, response=PhoneOut, tags=TAGS, errors=[401])
async def get_phone(call: Call) -> PhoneOut:
    """Your verified number and one waiting for its code."""
    service = call.container.phone_service()
    return _out(await service.get(call.user), service.enabled)


@api.put(PATH, body=PhoneIn, response=PhoneOut, status=202, tags=TAGS, errors=[401, 409, 422, 429])
async def set_phone(call: Call) -> PhoneOut:
    """Send a 6-digit code to the number (valid 10 minutes); it is used once confirmed.
    At most 1 code a minute, 5 an hour, 10 a day per number and per user (429)."""
    service = call.container.phone_service()
    return _out(await service.start(call.user, call.body.number), service.enabled)


@api.post(PATH + "/verify", body=PhoneCodeIn, response=PhoneOut, tags=TAGS, errors=[401, 409, 422])
async def verify_phone(call: Call) -> PhoneOut:
    """Confirm the code; 5 wrong ones void it (409 code_expired: request another)."""
    service = call.container.phone_service()
    return _out(await service.confirm(call.user, call.body.code), service.enabled)


@api.delete(PATH, status=204, tags=TAGS, errors=[401])
async def delete_phone(call: Call) -> None:
    """Forget your number: no more SMS."""
    await call.container.phone_service().remove(call.user)
