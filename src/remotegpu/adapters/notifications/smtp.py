"""EmailSender over SMTP with aiosmtplib: a multipart/alternative message (text + HTML)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from email.message import EmailMessage as MimeMessage
from email.utils import formatdate

import aiosmtplib

from remotegpu.application.notifications.ports import EmailMessage, PermanentEmailError, TransientEmailError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str  # the From address
    username: str | None = None
    password: str | None = None
    security: str = "starttls"  # "starttls" | "tls" | "none"
    timeout: float = 15.0


class SmtpEmailSender:
    def __init__(self, settings: SmtpSettings):
        self._s = settings

    def mime(self, message: EmailMessage) -> MimeMessage:
        mime = MimeMessage()
        mime["From"] = self._s.sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = formatdate(localtime=False)
        domain = self._s.sender.rsplit("@", 1)[-1].strip(">") or "remotegpu.local"
        mime["Message-ID"] = f"<{message.idempotency_key}@{domain}>"
        mime.set_content(message.text)
        mime.add_alternative(message.html, subtype="html")
        return mime

    async def send(self, message: EmailMessage) -> None:
        s = self._s
        try:
            await aiosmtplib.send(
                self.mime(message), hostname=s.host, port=s.port, username=s.username, password=s.password,
                use_tls=s.security == "tls", start_tls=True if s.security == "starttls" else False,
                timeout=s.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentEmailError(f"SMTP refused the recipient: {exc.recipients[0] if exc.recipients else ''}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                raise TransientEmailError(f"SMTP {exc.code}: {exc.message}") from None
            raise PermanentEmailError(f"SMTP {exc.code}: {exc.message}") from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            raise TransientEmailError(f"SMTP server unreachable: {type(exc).__name__}") from None
