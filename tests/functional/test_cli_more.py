"""More of the CLI against whole projects: preview, dry runs, test sends, an SMS campaign
through a Twilio-compatible API on loopback, status callbacks into the ledger."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from reach.db.schema import consent_changes, contacts, messages
from tests.channels.servers import HttpServer
from tests.channels.test_twilio import SID, STOPPED, TOKEN, FakeTwilio


def _engine(project: Path):  # type: ignore[no-untyped-def]
    from reach.db import connect
    from reach.settings import load_settings

    return connect(load_settings(project).resolved_database_url)


def test_preview_dry_run_and_test_send(project: Path, cli) -> None:
    assert cli("contacts", "import", str(project / "contacts.csv")).exit_code == 0
    with _engine(project).connect() as conn:
        first = conn.execute(select(contacts).order_by(contacts.c.id).limit(1)).one()
    result = cli("preview", "templates/newsletter.mjml", "--contact", first.email,
                 "--subject", "Hi {{ contact.first_name }}")
    assert result.exit_code == 0, result.output
    assert f"Subject: Hi {first.first_name}" in result.output
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in result.output

    result = cli("run", "autumn-newsletter", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["audience"] == 40 and info["sample"]["to"] == first.email
    assert not (project / "outbox").exists()

    result = cli("run", "autumn-newsletter", "--test-to", "qa@acme.test")
    assert result.exit_code == 0, result.output
    (eml,) = (project / "outbox" / "email").glob("*.eml")
    assert b"To: " in eml.read_bytes() and b"qa@acme.test" in eml.read_bytes()
    with _engine(project).connect() as conn:
        kinds = [r[0] for r in conn.execute(select(messages.c.source_kind))]
    assert kinds == ["test"]  # a test send is never part of the campaign's figures


def test_sms_campaign_through_twilio_api_with_opt_out(project: Path, cli, monkeypatch) -> None:
    assert cli("contacts", "import", str(project / "contacts.csv")).exit_code == 0
    api = HttpServer(FakeTwilio())
    engine = _engine(project)
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(select(contacts.c.id).order_by(contacts.c.id))]
        # One recipient has replied STOP at the carrier: Twilio answers 21610.
        conn.execute(update(contacts).where(contacts.c.id == ids[0]).values(phone=STOPPED))
    (project / "campaigns" / "sms-all.yaml").write_text(
        "campaign: sms-all\naudience: {segment: subscribers}\nchannel: sms\n"
        "sms:\n  from: \"+15550100\"\n  body: \"Hi {{ contact.first_name }}, 20% off today\"\n"
        "cost: {per_sms: 0.05, currency: EUR}\n")
    monkeypatch.setenv("REACH_SMS_TRANSPORT",
                       f"twilio://{SID}:{TOKEN}@api.twilio.com?from=+15550100&base_url={api.url}")
    try:
        from campaigns.plan import compile_campaign
        from campaigns.run import run_plan
        from reach.project import load_project
        from reach.settings import load_settings

        settings = load_settings(project)
        summary = run_plan(settings, engine, compile_campaign(load_project(settings), "sms-all"))
    finally:
        api.stop()
    assert summary.sent == 39
    forms = [r.body.decode() for r in api.requests]
    assert all("Reply+STOP" in f or "STOP" in f for f in forms)  # opt-out text appended
    with engine.connect() as conn:
        status = conn.execute(select(contacts.c.sms_status)
                              .where(contacts.c.id == ids[0])).scalar()
        sids = [r[0] for r in conn.execute(select(messages.c.provider_id)
                                           .where(messages.c.status == "sent"))]
        sources = [r[0] for r in conn.execute(select(consent_changes.c.source))]
    assert status == "unsubscribed" and "provider_opt_out" in sources
    assert len(sids) == 39 and all(s.startswith("SM") for s in sids)

    result = cli("report", "sms-all", "--json")
    report = json.loads(result.output)
    assert report["sent"] == 39 and report["failed"] == 1
    assert report["cost"] == 1.95  # 39 single-segment SMS at 0.05


def test_report_page_served_behind_the_api_key(project: Path, cli) -> None:
    import httpx

    from campaigns.plan import compile_campaign
    from campaigns.run import run_plan
    from reach.demo import BackgroundServer, free_port
    from reach.project import load_project
    from reach.settings import load_settings
    from tracking.app import create_app

    assert cli("contacts", "import", str(project / "contacts.csv")).exit_code == 0
    settings = load_settings(project)
    engine = _engine(project)
    run_plan(settings, engine, compile_campaign(load_project(settings), "autumn-newsletter"))
    port = free_port()
    with BackgroundServer(create_app(settings, engine), port):
        base = f"http://127.0.0.1:{port}/reports"
        assert httpx.get(f"{base}/autumn-newsletter").status_code == 401
        wrong = httpx.get(f"{base}/autumn-newsletter", headers={"X-Reach-Key": "nope"})
        assert wrong.status_code == 401
        key = {"X-Reach-Key": settings.api_key}
        page = httpx.get(f"{base}/autumn-newsletter", headers=key)
        assert page.status_code == 200 and "<svg" in page.text
        assert "autumn-newsletter" in page.text and "<script" not in page.text
        assert httpx.get(f"{base}/no-such-campaign", headers=key).status_code == 404


def test_segment_show_count_and_export_of_a_segment(project: Path, cli, tmp_path: Path) -> None:
    assert cli("contacts", "import", str(project / "contacts.csv")).exit_code == 0
    with _engine(project).begin() as conn:
        ids = [r[0] for r in conn.execute(select(contacts.c.id).order_by(contacts.c.id))]
        conn.execute(update(contacts).where(contacts.c.id.in_(ids[:7]))
                     .values(attributes={"plan": "vip"}))
        conn.execute(update(contacts).where(contacts.c.id == ids[0])
                     .values(email_status="unsubscribed"))
    (project / "segments" / "vips.yaml").write_text(
        "segment: vips\nconditions:\n  - attribute: plan\n    eq: vip\n")
    result = cli("segment", "show", "vips", "-n", "3")
    assert result.exit_code == 0, result.output
    assert "vips: 7 contacts (first 3)" in result.output
    result = cli("segment", "count", "vips", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"segment": "vips", "count": 7, "email": 6, "sms": 7}
    result = cli("segment", "count", "vips", "--explain")
    assert result.exit_code == 0, result.output
    assert "vips: 7 contacts" in result.output and "Plan" in result.output
    sql = result.output.split("SQL\n", 1)[1].split("Plan")[0]
    assert "FROM contacts" in sql and "vip" in sql  # values shown inline, for reading

    out = tmp_path / "vips.jsonl"
    result = cli("contacts", "export", str(out), "--segment", "vips")
    assert result.exit_code == 0, result.output
    assert "exported 7 contacts" in result.output
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    # An export is of the people, not of a send: the unsubscribed one is in it, with status.
    assert [c["id"] for c in exported] == ids[:7]
    assert exported[0]["email_status"] == "unsubscribed"
    assert {c["attributes"]["plan"] for c in exported} == {"vip"}
    result = cli("contacts", "export", str(tmp_path / "all.csv"))
    assert result.exit_code == 0 and f"exported {len(ids)} contacts" in result.output
    assert cli("contacts", "export", str(out), "--segment", "vipz").exit_code == 1
