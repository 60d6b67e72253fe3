"""`reach demo`: the whole loop on embedded defaults, end to end, with real parts.

A sample project is created, contacts and events imported, the files validated, the
newsletter sent through the Prefect flow to the outbox, the tracking server started on a
free loopback port, and a share of the recipients "read" their mail over real HTTP: the
pixel is fetched, links are followed, a few unsubscribe with one click and some buy.
"""

from __future__ import annotations

import email
import random
import re
import socket
import tempfile
import threading
import time
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import httpx

from reach.cli.common import console, progress_bar, quiet_prefect, state

BROWSER_UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.5 Safari/605.1.15")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """uvicorn in a thread, stopped gracefully (the app's queue flushes on shutdown)."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the tracking server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _links(html: str) -> tuple[str | None, list[str]]:
    pixel = re.search(r'src="([^"]+/o/[^"]+\.gif)"', html)
    clicks = re.findall(r'href="([^"]+/c/[^"]+)"', html)
    return (pixel.group(1) if pixel else None), clicks


def read_outbox(outbox: Path) -> list[dict[str, Any]]:
    """Each .eml file as the recipient's mail client would see it."""
    mails = []
    for path in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        html_part = msg.get_body(preferencelist=("html",))
        html = html_part.get_content() if html_part else ""
        pixel, clicks = _links(html)
        unsub = re.search(r"<(https?://[^>]+)>", msg.get("List-Unsubscribe", ""))
        mails.append({"to": str(msg["To"]), "pixel": pixel, "clicks": clicks,
                      "unsubscribe": unsub.group(1) if unsub else None})
    return mails


def behave(base_url: str, api_key: str, mails: list[dict[str, Any]],
           seed: int = 11) -> dict[str, int]:
    """Recipients at work: opens, clicks, one-click unsubscribes and purchases, over HTTP."""
    rng = random.Random(seed)
    done = {"opens": 0, "clicks": 0, "unsubscribes": 0, "purchases": 0}
    purchases = []
    with httpx.Client(headers={"User-Agent": BROWSER_UA}, timeout=10) as client:
        with progress_bar("Recipients reading their mail", len(mails)) as advance:
            for mail in mails:
                if mail["pixel"] and rng.random() < 0.55:
                    client.get(mail["pixel"]).raise_for_status()
                    done["opens"] += 1
                    if mail["clicks"] and rng.random() < 0.4:
                        response = client.get(rng.choice(mail["clicks"]), follow_redirects=False)
                        if response.status_code != 302:
                            raise RuntimeError(f"click answered {response.status_code}")
                        done["clicks"] += 1
                        if rng.random() < 0.35:
                            purchases.append({
                                "contact": mail["to"].split("<")[-1].rstrip(">"),
                                "type": "purchase", "id": f"demo-{len(purchases)}",
                                "properties": {"amount": round(rng.uniform(19, 149), 2)}})
                if mail["unsubscribe"] and rng.random() < 0.03:
                    response = client.post(mail["unsubscribe"],
                                           data={"List-Unsubscribe": "One-Click"})
                    response.raise_for_status()
                    done["unsubscribes"] += 1
                advance(1)
        if purchases:
            response = client.post(f"{base_url}/events", json={"events": purchases},
                                   headers={"X-Reach-Key": api_key})
            response.raise_for_status()
            done["purchases"] = len(purchases)
    return done


def run_demo(directory: Path | None, *, contacts: int = 200) -> Path:
    """Run the demo; returns the project folder (kept, so it can be explored)."""
    from audiences.contacts import import_contacts
    from audiences.events import import_events
    from campaigns.view import view_renderer
    from reach.cli.common import engine as open_engine
    from reach.cli.common import settings as load
    from reach.cli.serve_cmds import print_reports
    from reach.errors import ValidationFailed
    from reach.project import load_project
    from reach.scaffold import write_project
    from reports.campaign import campaign_report
    from tracking.app import create_app

    started = time.monotonic()
    target = directory or Path(tempfile.mkdtemp(prefix="reach-demo-")) / "acme"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    write_project(target, contacts=contacts, tracking_base_url=base_url)
    state.project = target
    console.rule("[bold]Reach demo")
    console.print(f"1. sample project in [bold]{target}[/bold]")
    cfg = load()
    eng = open_engine(cfg)
    with progress_bar("Importing contacts", contacts + 2) as advance:
        imported = import_contacts(eng, target / "contacts.csv", progress=advance)
    console.print(f"2. contacts: {imported.inserted} imported, {imported.rejected_count} rejected "
                  + ", ".join(f"(line {r.line}: {r.reason})" for r in imported.rejected))
    events = import_events(eng, target / "events.jsonl")
    console.print(f"   events: {events.inserted} purchases imported")
    project = load_project(cfg)
    if not project.ok:
        raise ValidationFailed(project.diagnostics)
    console.print(f"3. validated {len(project.segments)} segments, {len(project.campaigns)} "
                  f"campaigns, {len(project.journeys)} journeys: no errors")
    quiet_prefect()
    from campaigns import run as runner
    from campaigns.flows import run_campaign

    console.print("4. sending 'autumn-newsletter' as a Prefect flow (ephemeral mode)")
    # The newsletter went out two hours ago: opens seconds after delivery look like a
    # privacy proxy's prefetch and would rightly be counted as machine opens.
    import os

    from reach import clock

    sent_at = clock.now() - timedelta(hours=2)
    previous = os.environ.get("REACH_NOW")
    os.environ["REACH_NOW"] = sent_at.isoformat()
    with progress_bar("Sending autumn-newsletter", None) as advance:
        runner.progress_hook = advance
        try:
            summary = run_campaign(str(target), "autumn-newsletter")
        finally:
            runner.progress_hook = None
            if previous is None:
                os.environ.pop("REACH_NOW", None)
            else:
                os.environ["REACH_NOW"] = previous
    console.print(f"   sent {summary['sent']} emails to {cfg.resolved_outbox_dir / 'email'}")
    mails = read_outbox(cfg.resolved_outbox_dir / "email")
    console.print(f"5. tracking server on {base_url}; recipients open, click, buy, unsubscribe")
    app = create_app(cfg, eng, view_renderer=view_renderer(cfg, eng))
    with BackgroundServer(app, port):
        behaviour = behave(base_url, cfg.api_key, mails)
    console.print("   " + ", ".join(f"{v} {k}" for k, v in behaviour.items()))
    console.print("6. the report")
    print_reports([campaign_report(eng, "autumn-newsletter")])
    console.print(f"Done in {time.monotonic() - started:.0f} s. Explore: cd {target} && "
                  "reach report autumn-newsletter --html report.html")
    return target
