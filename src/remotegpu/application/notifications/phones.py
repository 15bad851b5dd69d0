"""Phone numbers: verified by a code sent by SMS before any notification goes to them,
and the per-number send limits every SMS (code or notification) is held to."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from remotegpu.application.notifications.ports import (
    PermanentSmsError,
    PhoneRepository,
    SmsMessage,
    SmsSender,
    TransientSmsError,
)
from remotegpu.application.shared.ports import Clock
from remotegpu.domain.identity.models import User
from remotegpu.domain.notifications import sms as rules
from remotegpu.domain.notifications.sms import PhoneNumber
from remotegpu.domain.shared.errors import Conflict, InvalidInput, RateLimited


class SmsLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"rate limited: 1/min, 5/h, 10/day per number; again in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class PhoneService:
    repo: PhoneRepository
    clock: Clock
    sender: SmsSender | None  # None: no SMS provider configured
    code_key: bytes  # codes are kept as HMACs under the server's secret

    @property
    def enabled(self) -> bool:
        return self.sender is not None

    async def send_limited(self, number: str, template: str, params: dict[str, str], key: str) -> None:
        """Send within the per-number × template limits (SmsLimited otherwise); the send is
        recorded before the provider is asked, so a crash never lets a number exceed them."""
        if self.sender is None:
            raise PermanentSmsError("SMS is not configured on this platform")
        await self._reserve(number, template, SmsLimited)
        await self.sender.send(SmsMessage(number, template, params, key))

    async def _reserve(self, key: str, template: str, refuse) -> None:
        """Log the send first, then count: of two workers racing for the last slot neither
        can both pass (each sees the other's row; at worst both refuse), so no number ever
        gets more than the rules allow. A refused send's row is taken back."""
        now = self.clock.now()
        window = max(w for w, _ in rules.RATE_RULES)
        mine = await self.repo.record_send(key, template, now)
        others = await self.repo.sends_since(key, template, now - window)
        if now in others:
            others.remove(now)  # our own row
        wait = rules.retry_after(others, now)
        if wait is not None:
            await self.repo.cancel_send(mine)
            raise refuse(wait)

    def _hash(self, user_id: str, number: str, code: str) -> str:
        return hmac.new(self.code_key, f"{user_id}:{number}:{code}".encode(), hashlib.sha256).hexdigest()

    async def get(self, user: User) -> PhoneNumber:
        return await self.repo.get(user.id) or PhoneNumber(user.id)

    async def start(self, user: User, number: str) -> PhoneNumber:
        """Send a 6-digit code to ``number``; it becomes the user's once confirmed."""
        if self.sender is None:
            raise Conflict("SMS is not configured on this platform", code="sms_not_configured")
        number = rules.normalize_phone(number)
        phone = await self.get(user)
        code = f"{secrets.randbelow(10**6):06d}"
        # The same limits per user as per number: nobody sprays codes over many numbers.
        await self._reserve(f"user:{user.id}", rules.TEMPLATE_VERIFY,
                            lambda wait: RateLimited("too many codes requested; try again later", retry_after=wait))
        try:
            await self.send_limited(number, rules.TEMPLATE_VERIFY, {"code": code}, f"verify-{secrets.token_hex(8)}")
        except SmsLimited as exc:
            raise RateLimited("too many codes sent to this number; try again later", retry_after=exc.retry_after) from None
        except TransientSmsError:
            raise Conflict("the SMS provider did not accept the message; try again shortly", code="sms_unavailable") from None
        except PermanentSmsError as exc:
            raise Conflict(f"the SMS provider refused the message: {exc}", code="sms_rejected") from None
        now = self.clock.now()
        phone.pending_number, phone.code_hash = number, self._hash(user.id, number, code)
        phone.code_expires_at, phone.code_attempts, phone.updated_at = now + rules.CODE_TTL, 0, now
        await self.repo.save(phone)
        return phone

    async def confirm(self, user: User, code: str) -> PhoneNumber:
        phone = await self.get(user)
        now = self.clock.now()
        if not phone.pending_number or not phone.code_hash or not phone.code_expires_at or now >= phone.code_expires_at:
            raise Conflict("no code is waiting to be confirmed (or it expired): request a new one", code="code_expired")
        if phone.code_attempts >= rules.MAX_CODE_ATTEMPTS:
            raise Conflict("too many wrong codes: request a new one", code="code_expired")
        if not hmac.compare_digest(phone.code_hash, self._hash(user.id, phone.pending_number, code.strip())):
            phone.code_attempts += 1
            phone.updated_at = now
            await self.repo.save(phone)
            raise InvalidInput("wrong code", code="invalid_code", details={
                "field": "code", "attempts_left": max(0, rules.MAX_CODE_ATTEMPTS - phone.code_attempts)})
        phone.number, phone.verified_at = phone.pending_number, now
        phone.pending_number = phone.code_hash = phone.code_expires_at = None
        phone.code_attempts, phone.updated_at = 0, now
        await self.repo.save(phone)
        return phone

    async def remove(self, user: User) -> None:
        await self.repo.delete(user.id)

    async def verified_number(self, user_id: str) -> str | None:
        phone = await self.repo.get(user_id)
        return phone.number if phone and phone.verified_at else None
