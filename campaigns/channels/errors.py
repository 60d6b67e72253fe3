"""Send errors that are not about one message but about the whole transport.

``base.py`` has the per-message outcomes (transient / permanent). A wrong password, a
certificate that does not verify or a From address the provider refuses fails every message
the same way: retrying burns the ledger's attempts and the error threshold only pauses the run
after hundreds of failures. Those raise :class:`ConfigurationSendError`, which the sender should
turn into a stopped run (``to_reach_error()``) instead of marking the message.
"""

from __future__ import annotations

from campaigns.channels.base import SendError
from reach.errors import ReachError


class ConfigurationSendError(SendError):
    """The transport is misconfigured (auth, TLS, sender): stop the run, fix the settings."""

    transient = False
    stop_run = True

    def __init__(self, message: str, code: str | int | None = None, *, hint: str) -> None:
        super().__init__(message, code)
        self.hint = hint

    def to_reach_error(self) -> ReachError:
        """The error a command prints: code C601 (configuration error) with the hint."""
        return ReachError("C601", str(self), self.hint)


def transport_config_error(message: str, hint: str) -> ReachError:
    """A bad transport URL or option, found when the messenger is opened."""
    return ReachError("C601", message, hint)
