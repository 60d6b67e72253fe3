"""Real servers on loopback for the channel tests: aiosmtpd, and a tiny threaded HTTP server.

Nothing here imitates the code under test: the SMTP server is aiosmtpd, and the HTTP server
answers the way the real services document.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class RecordingHandler:
    """Records accepted mail; can be told to refuse recipients or drop the connection."""

    messages: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)  # address → next replies
    data_replies: dict[str, list[str]] = field(default_factory=dict)
    drop_in_data: set[str] = field(default_factory=set)  # close instead of answering DATA
    close_after_data: bool = False  # close right after a 250 (an idle-timeout server)
    connections: int = 0
    auths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            replies = self.rcpt_replies.get(address)
            if replies:
                return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0]
        with self.lock:
            if rcpt in self.drop_in_data:
                self.drop_in_data.discard(rcpt)
                # The message arrived but the reply never does: the client cannot know.
                self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                              envelope.original_content))
                server.transport.close()
                return "250 OK"
            replies = self.data_replies.get(rcpt)
            if replies:
                return replies.pop(0)
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content))
        if self.close_after_data:
            server.loop.call_soon(server.transport.close)
        return "250 2.0.0 Ok: queued as Q" + str(len(self.messages))


class _CountingController(Controller):
    def factory(self) -> SMTP:
        handler = self.handler

        class CountingSMTP(SMTP):
            def connection_made(self, transport: Any) -> None:
                with handler.lock:
                    handler.connections += 1
                super().connection_made(transport)

        return CountingSMTP(self.handler, **self.SMTP_kwargs)


def start_smtp(handler: RecordingHandler, *, tls_context: ssl.SSLContext | None = None,
               implicit_tls: bool = False, users: dict[str, str] | None = None,
               require_starttls: bool = False) -> Controller:
    """An aiosmtpd server on 127.0.0.1 in its own thread; call ``.stop()`` after use."""
    kwargs: dict[str, Any] = {}
    if users is not None:
        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          auth_data: Any) -> AuthResult:
            if isinstance(auth_data, LoginPassword):
                login = auth_data.login.decode()
                ok = users.get(login) == auth_data.password.decode()
                if ok:
                    handler.auths.append(login)
                return AuthResult(success=ok, handled=False)
            return AuthResult(success=False, handled=False)

        kwargs.update(authenticator=authenticator, auth_require_tls=False)
    if tls_context is not None and not implicit_tls:
        kwargs.update(tls_context=tls_context, require_starttls=require_starttls)
    controller = _CountingController(
        handler, hostname="127.0.0.1", port=free_port(),
        ssl_context=tls_context if implicit_tls else None, **kwargs)
    controller.start()
    # The controller's readiness probe counts as a connection; start from zero.
    handler.connections = 0
    return controller


Route = Callable[["Request"], tuple[int, dict[str, str], bytes]]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpServer:
    """A threaded ``http.server`` on loopback that records requests and answers via ``route``."""

    def __init__(self, route: Route) -> None:
        self.requests: list[Request] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                request = Request("POST", self.path, dict(self.headers.items()),
                                  self.rfile.read(length))
                outer.requests.append(request)
                status, headers, body = route(request)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
