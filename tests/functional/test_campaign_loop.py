"""The thin loop with real parts: CSV import → validate → Prefect flow → SMTP (aiosmtpd on
loopback) or outbox → tracking server over real HTTP → report."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from reach.db.schema import contacts, engagements
from tests.channels.servers import RecordingHandler, start_smtp


def _run(project: Path) -> dict:
    from campaigns.flows import run_campaign

    return run_campaign(str(project), "autumn-newsletter")


def _engine():
    from reach.cli.common import engine

    return engine()


@pytest.mark.usefixtures("prefect_harness")
def test_smtp_loop_exactly_once_with_rfc8058_headers(project: Path, cli, monkeypatch) -> None:
    result = cli("contacts", "import", str(project / "contacts.csv"))
    assert result.exit_code == 0, result.output
    assert "40 new" in result.output and "2 rejected" in result.output
    assert "line 42" in result.output and "line 43" in result.output

    from reach.db import connect
    from reach.settings import load_settings

    eng = connect(load_settings(project).resolved_database_url)
    with eng.begin() as conn:
        # One unsubscriber: suppressed whatever the segment says.
        conn.execute(update(contacts).where(contacts.c.id == 3)
                     .values(email_status="unsubscribed"))
        expected = {r[0] for r in conn.execute(
            select(contacts.c.email).where(contacts.c.email_status == "subscribed"))}
    assert len(expected) == 39

    handler = RecordingHandler()
    server = start_smtp(handler)
    try:
        monkeypatch.setenv("REACH_EMAIL_TRANSPORT", f"smtp://127.0.0.1:{server.port}?pool=3")
        first = _run(project)
        second = _run(project)
    finally:
        server.stop()

    assert first["sent"] == 39 and first["status"] == "done"
    assert second["enqueued"] == 0 and second["sent"] == 0
    recipients = [r for m in handler.messages for r in m.rcpt_tos]
    assert sorted(recipients) == sorted(expected)  # each exactly once, nobody suppressed

    ids = set()
    for received in handler.messages:
        msg = email.message_from_bytes(received.content, policy=policy.default)
        assert msg["From"] == "Acme <news@acme.test>"
        assert msg["Date"] and msg["Message-ID"]
        ids.add(msg["Message-ID"])
        unsub = msg["List-Unsubscribe"]
        assert unsub.startswith("<http") and "<mailto:" in unsub
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        parts = [p.get_content_type() for p in msg.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        html = msg.get_body(("html",)).get_content()
        assert "/o/" in html and "/c/" in html and "/u/" in html
    assert len(ids) == 39  # unique Message-IDs


@pytest.mark.usefixtures("prefect_harness")
def test_outbox_then_tracking_over_http_then_report(project: Path, cli) -> None:
    from campaigns.view import view_renderer
    from reach.db import connect
    from reach.demo import BackgroundServer, free_port, read_outbox
    from reach.settings import load_settings
    from tracking.app import create_app

    assert cli("contacts", "import", str(project / "contacts.csv")).exit_code == 0
    port = free_port()
    toml = project / "reach.toml"
    toml.write_text(toml.read_text().replace("http://127.0.0.1:8787",
                                             f"http://127.0.0.1:{port}"))
    summary = _run(project)
    assert summary["sent"] == 40
    settings = load_settings(project)
    mails = read_outbox(settings.resolved_outbox_dir / "email")
    assert len(mails) == 40
    eng = connect(settings.resolved_database_url)
    ua = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"}
    with BackgroundServer(create_app(settings, eng, view_renderer=view_renderer(settings, eng)),
                          port), httpx.Client(headers=ua) as client:
        for mail in mails[:10]:
            assert client.get(mail["pixel"]).status_code == 200
        for mail in mails[:4]:
            response = client.get(mail["clicks"][0], follow_redirects=False)
            assert response.status_code == 302
            assert response.headers["location"].startswith("https://acme.test/")
        # An altered token: 400 and nothing recorded.
        forged = mails[5]["clicks"][0][:-3] + "AAA"
        assert client.get(forged, follow_redirects=False).status_code == 400
        view = client.get(mails[0]["pixel"].replace("/o/", "/v/").removesuffix(".gif"))
        assert view.status_code == 200 and "what's new" in view.text.lower()
    with eng.connect() as conn:
        kinds = [r[0] for r in conn.execute(select(engagements.c.kind))]
    assert kinds.count("open") == 10 and kinds.count("click") == 4

    result = cli("report", "autumn-newsletter", "--json")
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.output)
    assert report["sent"] == 40 and report["opens_unique"] == 10
    assert report["clicks_unique"] == 4


def test_bad_files_exit_1_with_positions_and_send_nothing(project: Path, cli) -> None:
    campaign = project / "campaigns" / "autumn-newsletter.yaml"
    text = campaign.read_text()
    campaign.write_text(text.replace("channel: email", "channel: email\nthrotle: 5")
                        .replace("templates/newsletter.mjml", "templates/newsleter.mjml"))
    (project / "campaigns" / "broken.yaml").write_text("campaign: broken\naudience: [\n")
    result = cli("validate")
    assert result.exit_code == 1
    out = result.output
    assert "campaigns/autumn-newsletter.yaml:5:1: error[K101] unknown key 'throtle'" in out
    assert "did you mean 'throttle'?" in out
    assert "error[R201] template 'templates/newsleter.mjml' not found" in out
    assert "did you mean 'templates/newsletter.mjml'?" in out
    assert "campaigns/broken.yaml:3:1: error[Y001]" in out

    result = cli("run", "campaigns/autumn-newsletter.yaml")
    assert result.exit_code == 1
    assert "error[K101]" in result.output
    assert not (project / "outbox").exists()


def test_bandit_needs_a_recurring_schedule(project: Path, cli) -> None:
    (project / "campaigns" / "once.yaml").write_text(
        "campaign: once\naudience: {segment: subscribers}\nchannel: email\n"
        "email: {from: \"A <a@acme.test>\", subject: Hi, template: templates/newsletter.mjml}\n"
        "ab_test:\n  strategy: bandit\n  variants: [{id: a}, {id: b}]\n")
    result = cli("validate")
    assert result.exit_code == 1
    assert "campaigns/once.yaml:1:1: error[K103]" in result.output
    assert "recurring schedule (cron)" in result.output
