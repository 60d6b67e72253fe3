"""Human or machine: each signal, end to end over HTTP, and the pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.tracking.conftest import LiveServer, rows, wait_for
from tracking.classify import (
    Classifier,
    clean_user_agent,
    request_reason,
    timing_reason,
)

HUMAN = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


def _verdicts(live: LiveServer, kind: str, count: int) -> list[tuple[int, bool, str | None]]:
    found = wait_for(lambda: len(rows(live.engine, kind=kind)) >= count)
    assert found, f"expected {count} {kind} rows"
    return [(r.message_id, r.machine, r.machine_reason) for r in rows(live.engine, kind=kind)]


def test_scanner_user_agents_and_missing_agent(live: LiveServer, seed) -> None:
    _, m = seed()
    agents = [
        "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        HUMAN,
    ]
    with live.client() as client:
        for agent in agents:
            client.get(live.pixel(m), headers={"user-agent": agent})
        client.get(live.pixel(m), headers={"user-agent": ""})
    reasons = [reason for _, _, reason in _verdicts(live, "open", 6)]
    # Gmail's proxy fetches when the reader opens the mail: human unless it is early.
    assert reasons == ["ua:barracuda", "ua:ms_office_preview", None, "ua:bot", None,
                       "no_user_agent"]


def test_open_right_after_send_is_a_prefetch(live: LiveServer, seed) -> None:
    _, fresh = seed(sent_ago=0.5)
    _, old = seed(sent_ago=3600)
    with live.client(headers={"user-agent": HUMAN}) as client:
        client.get(live.pixel(fresh))
        client.get(live.pixel(old))
    assert _verdicts(live, "open", 2) == [(fresh, True, "open_prefetch"), (old, False, None)]


def test_click_soon_after_send_without_open(live: LiveServer, seed) -> None:
    _, scanned = seed(sent_ago=10)
    _, read = seed(sent_ago=10)
    _, later = seed(sent_ago=3600)
    with live.client(headers={"user-agent": HUMAN}) as client:
        client.get(live.click(scanned, "https://shop.acme.test/a"))
        client.get(live.pixel(read))
        wait_for(lambda: rows(live.engine, kind="open"))
        client.get(live.click(read, "https://shop.acme.test/a"))
        client.get(live.click(later, "https://shop.acme.test/a"))
    assert _verdicts(live, "click", 3) == [
        (scanned, True, "click_before_open"), (read, False, None), (later, False, None)]


def test_every_link_within_seconds_is_a_burst(live: LiveServer, seed) -> None:
    _, m = seed()
    _, calm = seed()
    with live.client(headers={"user-agent": HUMAN}) as client:
        for path in ("a", "b", "c", "d"):
            client.get(live.click(m, f"https://shop.acme.test/{path}"))
        client.get(live.click(calm, "https://shop.acme.test/a"))
        client.get(live.click(calm, "https://shop.acme.test/a"))  # the same link twice
    wait_for(lambda: all(r.machine for r in rows(live.engine, kind="click", message_id=m))
             and len(rows(live.engine, kind="click")) == 6)
    burst = rows(live.engine, kind="click", message_id=m)
    assert [(r.machine, r.machine_reason) for r in burst] == [(True, "link_burst")] * 4
    assert [r.machine for r in rows(live.engine, kind="click", message_id=calm)] == [False] * 2


def test_head_click_is_machine(live: LiveServer, seed) -> None:
    _, m = seed()
    with live.client(headers={"user-agent": HUMAN}) as client:
        response = client.head(live.click(m, "https://shop.acme.test/"))
    assert response.status_code == 302
    assert _verdicts(live, "click", 1) == [(m, True, "head_request")]


def test_pure_functions() -> None:
    assert request_reason("HEAD", HUMAN) == "head_request"
    assert request_reason("GET", None) == "no_user_agent"
    assert request_reason("GET", "Mozilla/5.0 Proofpoint URL Defense") == "ua:proofpoint"
    yahoo = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
    assert request_reason("GET", yahoo) is None
    assert request_reason("GET", HUMAN) is None
    sent = datetime(2024, 5, 14, 9, 0, tzinfo=UTC)
    assert timing_reason("open", sent + timedelta(seconds=2), sent, opened=False) == "open_prefetch"
    assert timing_reason("open", sent + timedelta(seconds=30), sent, opened=False) is None
    assert timing_reason("click", sent + timedelta(seconds=30), sent, opened=False) == (
        "click_before_open")
    assert timing_reason("click", sent + timedelta(seconds=30), sent, opened=True) is None
    assert timing_reason("click", sent + timedelta(minutes=5), sent, opened=False) is None
    assert timing_reason("open", sent, None, opened=False) is None
    assert clean_user_agent("a\r\nb" + "c" * 600) == "a  b" + "c" * 508
    assert clean_user_agent("") is None
    memory = Classifier()
    now = datetime(2024, 5, 14, 9, 0, tzinfo=UTC)
    assert memory.click_reason(1, "u1", now) == (None, False)
    assert memory.click_reason(1, "u2", now + timedelta(seconds=1)) == (None, False)
    assert memory.click_reason(1, "u3", now + timedelta(seconds=2)) == ("link_burst", True)
    assert memory.click_reason(1, "u4", now + timedelta(seconds=3)) == ("link_burst", False)
    assert memory.burst_start(1) == now
    assert memory.click_reason(2, "u1", now) == (None, False)
    assert memory.click_reason(2, "u2", now + timedelta(seconds=10)) == (None, False)
    assert memory.click_reason(2, "u3", now + timedelta(seconds=20)) == (None, False)
