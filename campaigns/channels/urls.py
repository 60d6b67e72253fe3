"""Transport URLs (``smtp://user:pass@host:587?pool=8``) parsed once, with typed options.

Query values are percent-decoded but a ``+`` stays a plus: ``?from=+15550100`` is a phone
number, not " 15550100" as ``parse_qs`` (form decoding) would make it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from campaigns.channels.errors import transport_config_error

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class TransportUrl:
    """The parts of a transport URL; ``params`` are the query options not yet consumed."""

    raw: str
    scheme: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    def text(self, key: str, default: str | None = None) -> str | None:
        """A string option."""
        return self.params.get(key, default)

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        """An integer option at least ``minimum``; a bad value names the option."""
        value = self.params.get(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise transport_config_error(
                f"transport option {key}={value!r} is not an integer >= {minimum}",
                f"fix '{key}' in the transport URL {self.redacted()}",
            )
        return number

    def number(self, key: str, default: float | None) -> float | None:
        """A positive float option (``max_per_second=12.5``); 0 means no limit."""
        value = self.params.get(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if number < 0:
            raise transport_config_error(
                f"transport option {key}={value!r} is not a positive number",
                f"fix '{key}' in the transport URL {self.redacted()}",
            )
        return number or None

    def flag(self, key: str, default: bool | None) -> bool | None:
        """A boolean option: true/false, yes/no, 1/0, on/off."""
        value = self.params.get(key)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise transport_config_error(
            f"transport option {key}={value!r} is not true or false",
            f"fix '{key}' in the transport URL {self.redacted()}",
        )

    def check_known(self, known: set[str]) -> None:
        """Refuse options this transport does not understand (a typo must not be ignored)."""
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise transport_config_error(
                f"unknown option(s) {', '.join(unknown)} in transport URL {self.redacted()}",
                f"options understood by {self.scheme}: {', '.join(sorted(known))}",
            )

    def redacted(self) -> str:
        """The URL with the password replaced, for error messages and logs."""
        if self.password is None:
            return self.raw
        return self.raw.replace(":" + _quoted_password(self.raw), ":***", 1)


def _quoted_password(raw: str) -> str:
    netloc = urlsplit(raw).netloc
    userinfo = netloc.rpartition("@")[0]
    return userinfo.partition(":")[2]


def parse_transport_url(url: str) -> TransportUrl:
    """Split ``scheme://user:pass@host:port?k=v`` (or a bare name like ``outbox``)."""
    url = url.strip()
    parts = urlsplit(url)
    scheme = (parts.scheme or parts.path.split("?")[0]).lower()
    params: dict[str, str] = {}
    for pair in filter(None, parts.query.split("&")):
        key, _, value = pair.partition("=")
        params[unquote(key)] = unquote(value)
    try:
        port = parts.port
    except ValueError as exc:
        raise transport_config_error(
            f"bad port in transport URL: {exc}", "write the URL as scheme://host:port"
        ) from None
    return TransportUrl(
        raw=url,
        scheme=scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        params=params,
    )
