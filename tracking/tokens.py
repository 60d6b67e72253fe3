"""Signed, compact, URL-safe tracking tokens.

One token per message (``m``) identifies it on the pixel, unsubscribe and view routes. A
click URL is ``/c/{message token}/{url token}``: the URL token seals the target URL and is
signed once per link per template, not per contact, so rendering a message costs a single
HMAC however many links it has; both halves must verify, so no open redirect is possible.
Keys rotate: tokens signed with any accepted key verify; new tokens use the first.
"""

from __future__ import annotations

import base64
import hmac


class BadToken(ValueError):
    """A token that was altered, truncated or signed with an unknown key."""


_MAC_BYTES = 12  # 96-bit truncated HMAC-SHA256: unforgeable in practice, short in a URL


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise BadToken("not base64") from exc


class Signer:
    """Signs and verifies tokens with the project's secret key and its accepted old keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys or not keys[0]:
            raise ValueError("a secret_key is required to sign tracking tokens")
        self._keys = [k.encode() for k in keys]

    def _mac(self, key: bytes, domain: bytes, payload: bytes) -> bytes:
        # hmac.digest: one call into OpenSSL (the HMAC object costs ~10 µs a message).
        return hmac.digest(key, domain + b"\x00" + payload, "sha256")[:_MAC_BYTES]

    def _sign(self, domain: bytes, payload: bytes) -> str:
        return _b64(payload) + "." + _b64(self._mac(self._keys[0], domain, payload))

    def _verify(self, domain: bytes, token: str) -> bytes:
        if token.count(".") != 1 or len(token) > 8192:
            raise BadToken("malformed token")
        body, mac_text = token.split(".")
        payload, mac = _unb64(body), _unb64(mac_text)
        if len(mac) != _MAC_BYTES:
            raise BadToken("truncated token")
        for key in self._keys:
            if hmac.compare_digest(mac, self._mac(key, domain, payload)):
                return payload
        raise BadToken("bad signature")

    def message_token(self, message_id: int) -> str:
        """The token of one message (pixel, unsubscribe, view in browser, click prefix)."""
        return self._sign(b"m", str(int(message_id)).encode())

    def verify_message(self, token: str) -> int:
        payload = self._verify(b"m", token)
        if not payload.isdigit():
            raise BadToken("malformed message id")
        return int(payload)

    def url_token(self, url: str) -> str:
        """Seals a click target URL; independent of the message, so computed once per link."""
        return self._sign(b"u", url.encode("utf-8"))

    def verify_url(self, token: str) -> str:
        payload = self._verify(b"u", token)
        try:
            url = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadToken("malformed url") from exc
        if not url.startswith(("http://", "https://")):
            raise BadToken("not an http(s) url")
        return url


def open_path(message_token: str) -> str:
    return f"/o/{message_token}.gif"


def click_path(message_token: str, url_token: str) -> str:
    return f"/c/{message_token}/{url_token}"


def unsubscribe_path(message_token: str) -> str:
    return f"/u/{message_token}"


def view_path(message_token: str) -> str:
    return f"/v/{message_token}"
