"""A fault-injecting messenger for tests: wraps a real one and fails chosen messages.

``FaultyMessenger(inner, nth={3: "transient", 5: "bounce"})`` fails the 3rd and 5th push;
``recipients={"a@x.test": ("transient", 1)}`` fails the first push to that address once and
then lets it through (a greylisting 451). From settings it is reachable as
``faulty+<inner URL>?fault_nth=3:transient,5:bounce&fault_to=a@x.test:transient:1
&fault_delay=0.05`` so functional tests of the CLI can inject the same faults.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from campaigns.channels.base import (
    Messenger,
    OutgoingMessage,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)
from campaigns.channels.errors import ConfigurationSendError, transport_config_error

KINDS = ("transient", "bounce", "failed", "opt_out", "config")


def make_error(kind: str, message: OutgoingMessage) -> SendError:
    """The injected error of ``kind`` for ``message``."""
    text = f"injected {kind} failure for {message.to} (ledger {message.ledger_id})"
    if kind == "transient":
        return TransientSendError(text, "injected")
    if kind == "bounce":
        return PermanentSendError(text, "injected", bounce=True)
    if kind == "failed":
        return PermanentSendError(text, "injected", bounce=False)
    if kind == "opt_out":
        return PermanentSendError(text, "injected", bounce=False, opt_out=True)
    if kind == "config":
        return ConfigurationSendError(text, "injected", hint="this fault was injected")
    raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")


class FaultyMessenger:
    """Delegates to ``inner`` except for the pushes chosen to fail."""

    def __init__(self, inner: Messenger, *, nth: Mapping[int, str] | None = None,
                 recipients: Mapping[str, tuple[str, int]] | None = None,
                 delay: float = 0.0) -> None:
        self.inner = inner
        self.name = f"faulty+{inner.name}"
        self.nth = dict(nth or {})
        self.recipients = {to: [kind, times] for to, (kind, times) in (recipients or {}).items()}
        self.delay = delay  # seconds per push: a slow provider, for kill -9 tests
        self.pushes = 0
        self.delivered: list[OutgoingMessage] = []
        self.failures: list[tuple[OutgoingMessage, SendError]] = []
        for kind in [*self.nth.values(), *(k for k, _ in self.recipients.values())]:
            if kind not in KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")

    async def push(self, message: OutgoingMessage) -> SendResult:
        """Fail if this push or recipient is chosen, else send through ``inner``."""
        self.pushes += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        kind = self.nth.get(self.pushes)
        rule = self.recipients.get(message.to)
        if kind is None and rule is not None and rule[1] != 0:
            kind = rule[0]
            rule[1] -= 1  # a negative count never runs out: fail for ever
        if kind is not None:
            error = make_error(kind, message)
            self.failures.append((message, error))
            raise error
        result = await self.inner.push(message)
        self.delivered.append(message)
        return result

    async def flush(self) -> None:
        """Flush the wrapped messenger."""
        await self.inner.flush()

    async def close(self) -> None:
        """Close the wrapped messenger."""
        await self.inner.close()


def parse_fault_params(params: dict[str, str]) -> dict[str, object]:
    """``fault_*`` query options → keyword arguments of :class:`FaultyMessenger`."""
    nth: dict[int, str] = {}
    recipients: dict[str, tuple[str, int]] = {}
    try:
        for item in filter(None, params.get("fault_nth", "").split(",")):
            number, _, kind = item.partition(":")
            nth[int(number)] = kind
        for item in filter(None, params.get("fault_to", "").split(",")):
            address, kind, times = (item.split(":") + ["1"])[:3]
            recipients[address] = (kind, int(times))
        delay = float(params.get("fault_delay", "0"))
    except ValueError as exc:
        raise transport_config_error(
            f"bad fault option: {exc}",
            "fault_nth=3:transient,5:bounce  fault_to=a@x.test:transient:1  fault_delay=0.05",
        ) from None
    return {"nth": nth, "recipients": recipients, "delay": delay}
