"""Fixtures of the tracking tests: the real app under a real uvicorn on a free port.

The server runs in a background thread with its own event loop; tests talk to it over
loopback HTTP with httpx, and read the database directly with SQLAlchemy.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, insert, select

from reach.db.schema import contacts, engagements, messages
from reach.settings import Settings
from tracking.app import create_app
from tracking.tokens import Signer

SECRET = "test-secret-key"
API_KEY = "test-api-key"


@dataclass
class LiveServer:
    """A running tracking server and what a test needs to talk to it."""

    url: str
    engine: Engine
    settings: Settings
    signer: Signer
    server: uvicorn.Server
    thread: threading.Thread
    app: Any
    stopped: bool = field(default=False)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=10, **kwargs)

    def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM: answers in-flight requests, flushes the queue."""
        if not self.stopped:
            self.server.should_exit = True
            self.thread.join(timeout=30)
            self.stopped = True

    def pixel(self, message_id: int) -> str:
        return f"/o/{self.signer.message_token(message_id)}.gif"

    def click(self, message_id: int, url: str) -> str:
        return f"/c/{self.signer.message_token(message_id)}/{self.signer.url_token(url)}"

    def unsubscribe(self, message_id: int) -> str:
        return f"/u/{self.signer.message_token(message_id)}"


def start_server(settings: Settings, engine: Engine, **kwargs: Any) -> LiveServer:
    """Start ``create_app(settings, engine, **kwargs)`` under uvicorn on a free port."""
    app = create_app(settings, engine, **kwargs)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                            timeout_graceful_shutdown=20)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the tracking server did not start")
        time.sleep(0.01)
    return LiveServer(f"http://127.0.0.1:{port}", engine, settings, Signer([SECRET]), server,
                      thread, app)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(project_dir=tmp_path, database_url=db_url, secret_key=SECRET,
                    api_key=API_KEY, tracking_base_url="https://t.acme.test")


@pytest.fixture
def live(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    """The tracking server on the test's database."""
    server = start_server(settings, engine)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def seed(engine: Engine) -> Callable[..., tuple[int, int]]:
    """Insert a contact and a sent message; returns (contact id, message id)."""
    counter = {"n": 0}

    def make(
        *,
        email: str | None = None,
        phone: str | None = None,
        channel: str = "email",
        sent_ago: float = 3600.0,
        provider_id: str | None = None,
        contact_id: int | None = None,
    ) -> tuple[int, int]:
        counter["n"] += 1
        n = counter["n"]
        email = email if email is not None else f"person{n}@example.com"
        now = datetime.now(UTC)
        with engine.begin() as conn:
            if contact_id is None:
                contact_id = conn.execute(insert(contacts).values(
                    email=email,
                    phone=phone, attributes={}, email_status="subscribed",
                    sms_status="subscribed", created_at=now, updated_at=now,
                )).inserted_primary_key[0]
            message_id = conn.execute(insert(messages).values(
                idempotency_key=f"campaign:spring:{n}:{contact_id}", source_kind="campaign",
                source_name="spring", source_version="v1", step_id="send", contact_id=contact_id,
                channel=channel, status="sent", attempts=1, provider_id=provider_id,
                to_address=phone if channel == "sms" else email, created_at=now,
                sent_at=now - timedelta(seconds=sent_ago),
            )).inserted_primary_key[0]
        return contact_id, message_id

    return make


def rows(engine: Engine, **where: Any) -> list[Any]:
    """Engagement rows matching column=value filters, oldest first."""
    query = select(engagements).order_by(engagements.c.id)
    for name, value in where.items():
        query = query.where(engagements.c[name] == value)
    with engine.connect() as conn:
        return list(conn.execute(query))


def count_engagements(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(engagements)).scalar_one()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll until ``predicate()`` is truthy (the queue flushes every 100 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
