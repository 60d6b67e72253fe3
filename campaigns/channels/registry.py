"""Messengers registered by URL scheme: ``email_transport = "smtp://…"`` picks SMTP.

| channel | transport URL |
|---|---|
| email | ``outbox`` · ``smtp://user:pass@host:587?starttls=true&pool=4`` · ``smtps://…:465`` |
| sms | ``outbox`` · ``twilio://SID:TOKEN@api.twilio.com?from=+15550100`` |
| webhook | ``outbox`` · ``webhook`` (real http(s) POSTs to each step's URL) |

Any of them can be wrapped for tests as ``faulty+<url>?fault_nth=…`` (see ``faulty.py``).
Open a messenger inside the task (event loop) that uses it, and close it there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from campaigns.channels.base import Messenger
from campaigns.channels.errors import transport_config_error
from campaigns.channels.urls import TransportUrl, parse_transport_url
from reach.settings import Settings

Channel = Literal["email", "sms", "webhook"]
Factory = Callable[[Channel, TransportUrl, Settings], Messenger]

_FACTORIES: dict[str, tuple[set[str], Factory]] = {}


def register(scheme: str, channels: set[str], factory: Factory) -> None:
    """Make ``scheme://…`` open ``factory`` for the given channels."""
    _FACTORIES[scheme] = (channels, factory)


def open_messenger(channel: Channel, transport_url: str, settings: Settings) -> Messenger:
    """The messenger for ``channel`` that ``transport_url`` names.

    Raises ``ReachError`` C601 for an unknown scheme, a scheme of another channel or a bad
    option, before anything is sent.
    """
    url = parse_transport_url(transport_url or "outbox")
    if url.scheme.startswith("faulty+"):
        return _open_faulty(channel, url, settings)
    entry = _FACTORIES.get(url.scheme)
    if entry is None:
        known = ", ".join(sorted(s for s, (chs, _) in _FACTORIES.items() if channel in chs))
        raise transport_config_error(
            f"unknown {channel} transport {url.redacted()!r}",
            f"{channel} transports: {known}",
        )
    channels, factory = entry
    if channel not in channels:
        raise transport_config_error(
            f"transport {url.scheme!r} cannot carry {channel} messages",
            f"set {channel}_transport to one of: " + ", ".join(
                sorted(s for s, (chs, _) in _FACTORIES.items() if channel in chs)),
        )
    return factory(channel, url, settings)


def _open_faulty(channel: Channel, url: TransportUrl, settings: Settings) -> Messenger:
    from campaigns.channels.faulty import FaultyMessenger, parse_fault_params

    base, _, query = url.raw.split("+", 1)[1].partition("?")
    # The fault_* options are ours; the inner messenger must not see them as unknown.
    kept = [pair for pair in query.split("&") if pair and not pair.startswith("fault_")]
    inner_raw = base + ("?" + "&".join(kept) if kept else "")
    faults = {k: v for k, v in url.params.items() if k.startswith("fault_")}
    inner = open_messenger(channel, inner_raw, settings)
    try:
        return FaultyMessenger(inner, **parse_fault_params(faults))  # type: ignore[arg-type]
    except ValueError as exc:
        raise transport_config_error(str(exc), "fault kinds: transient, bounce, failed, "
                                     "opt_out, config") from None


def _outbox(channel: Channel, url: TransportUrl, settings: Settings) -> Messenger:
    from campaigns.channels.outbox import open_outbox

    url.check_known({"from", "fsync"})
    return open_outbox(channel, settings, default_sender=url.text("from") or "",
                       fsync=bool(url.flag("fsync", False)))


def _smtp(channel: Channel, url: TransportUrl, settings: Settings) -> Messenger:
    from campaigns.channels.smtp import SmtpMessenger, SmtpOptions

    return SmtpMessenger(SmtpOptions.from_url(url))


def _twilio(channel: Channel, url: TransportUrl, settings: Settings) -> Messenger:
    from campaigns.channels.twilio import TwilioMessenger

    return TwilioMessenger(url, settings)


def _webhook(channel: Channel, url: TransportUrl, settings: Settings) -> Messenger:
    from campaigns.channels.webhook import WebhookMessenger

    return WebhookMessenger(url, settings)


register("outbox", {"email", "sms", "webhook"}, _outbox)
register("smtp", {"email"}, _smtp)
register("smtps", {"email"}, _smtp)
register("twilio", {"sms"}, _twilio)
register("webhook", {"webhook"}, _webhook)
