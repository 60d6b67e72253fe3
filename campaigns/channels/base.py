"""The messenger protocol: email, SMS and webhooks are all just messengers.

Modelled on listmonk's four-method ``Messenger`` (name / push / flush / close). A messenger
is opened inside the task that uses it (connections belong to one event loop) and is
registered by URL scheme, so ``email_transport = "smtp://…"`` picks the SMTP one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message, ready for the wire."""

    ledger_id: int
    channel: str  # email | sms | webhook
    to: str  # email address, E.164 number or URL
    sender: str  # From address / number
    raw: bytes = b""  # email: the complete RFC 5322 message
    body: str = ""  # sms text or webhook JSON
    headers: dict[str, str] = field(default_factory=dict)
    # email: ``raw`` has CRLF line ends only and no line starting with '.', so SMTP sends it
    # without scanning it (set by Reach's own MIME builder, which checks it).
    wire_clean: bool = False


@dataclass(frozen=True)
class SendResult:
    provider_id: str | None = None
    segments: int | None = None
    status: str = "sent"


class SendError(Exception):
    """Base of send failures; ``transient`` decides whether the ledger retries."""

    transient = True

    def __init__(self, message: str, code: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientSendError(SendError):
    """Try again later: SMTP 4xx, dropped connection, HTTP 429/5xx."""

    transient = True


class PermanentSendError(SendError):
    """Never retry: SMTP 5xx on RCPT/DATA (a hard bounce), an invalid number."""

    transient = False

    def __init__(self, message: str, code: str | int | None = None, *, bounce: bool = True,
                 opt_out: bool = False) -> None:
        super().__init__(message, code)
        self.bounce = bounce  # the address is bad: suppress it
        self.opt_out = opt_out  # the recipient opted out (e.g. Twilio 21610)


class OutcomeUnknownError(SendError):
    """The message may or may not have been accepted (e.g. the connection dropped after the
    whole body was written): resending could duplicate it, so the ledger records
    ``unknown`` and resends only if the operator chose ``resend_unknown``."""

    transient = False


class Messenger(Protocol):
    """Sends messages of one channel. Implementations must be safe to ``close`` twice."""

    name: str

    async def push(self, message: OutgoingMessage) -> SendResult:
        """Send one message; raise a :class:`SendError` on failure."""
        ...

    async def flush(self) -> None:
        """Wait until everything pushed has been handed over."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...
