"""The unsubscribe page in headless Chromium: it renders, the button works, consent changes.

Chromium is Debian's ``chromium`` package, driven over the DevTools protocol. When it is
missing and the tests run as root, it is installed (apt-get, with a time limit); where that
cannot be done the test is skipped with the reason.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from reach.db.schema import consent_changes, contacts
from tests.tracking.conftest import LiveServer

INSTALL_TIMEOUT = 900


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True,
                       timeout=INSTALL_TIMEOUT, check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env,
                       capture_output=True, timeout=INSTALL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("chromium")


class DevTools:
    """A minimal Chrome DevTools protocol client on one page target."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=50 * 1024 * 1024, open_timeout=10)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_event(self, method: str) -> dict[str, Any]:
        for index, seen in enumerate(self.events):
            if seen.get("method") == method:
                return self.events.pop(index)
        while True:
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("method") == method:
                return message
            self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _chromium()
    if not path:
        pytest.skip("headless Chromium is not available: install Debian's 'chromium' package "
                    "(apt-get install chromium) to run the browser check")
    return path


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", "--disable-extensions", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip("Chromium is installed but did not start headless here")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        import httpx

        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t.get("type") == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        try:
            yield tools
        finally:
            tools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_unsubscribe_in_headless_chromium(live: LiveServer, seed, browser: DevTools,
                                          tmp_path: Path) -> None:
    contact_id, message_id = seed(email="reader@example.com")
    browser.call("Page.enable")
    # A phone-sized viewport: the page must work on mobile.
    browser.call("Emulation.setDeviceMetricsOverride", width=390, height=844,
                 deviceScaleFactor=2, mobile=True)
    browser.call("Page.navigate", url=live.url + live.unsubscribe(message_id))
    browser.wait_event("Page.loadEventFired")
    assert browser.evaluate("document.documentElement.lang") == "en"
    assert "reader@example.com" in browser.evaluate("document.body.innerText")
    button = browser.evaluate(
        "(() => { const b = document.querySelector('form button[type=submit]');"
        " const r = b.getBoundingClientRect();"
        " return {text: b.innerText, width: r.width, height: r.height,"
        " inView: r.bottom <= window.innerHeight && r.right <= window.innerWidth}; })()")
    assert button["text"] == "Unsubscribe"
    assert button["height"] >= 44 and button["inView"]  # a comfortable touch target
    assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot = browser.call("Page.captureScreenshot", format="png")
    (tmp_path / "unsubscribe.png").write_bytes(base64.b64decode(shot["data"]))
    with live.engine.connect() as conn:
        assert conn.execute(select(contacts.c.email_status)
                            .where(contacts.c.id == contact_id)).scalar() == "subscribed"

    browser.evaluate("document.querySelector('form button[type=submit]').click()")
    browser.wait_event("Page.loadEventFired")
    text = browser.evaluate("document.body.innerText")
    assert "You are unsubscribed" in text and "reader@example.com" in text
    assert browser.evaluate("location.pathname") == live.unsubscribe(message_id)
    with live.engine.connect() as conn:
        status = conn.execute(select(contacts.c.email_status)
                              .where(contacts.c.id == contact_id)).scalar()
        sources = conn.execute(select(consent_changes.c.source)).scalars().all()
    assert status == "unsubscribed" and sources == ["unsubscribe_link"]
