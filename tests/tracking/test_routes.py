"""Pixel, click, unsubscribe, view, health and metrics over real HTTP."""

from __future__ import annotations

import base64
import socket

import pytest
from sqlalchemy import select

from reach.db.schema import consent_changes, contacts
from tests.tracking.conftest import (
    LiveServer,
    count_engagements,
    rows,
    start_server,
    wait_for,
)
from tracking.tokens import Signer

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0 Safari/537.36")


def _forgeries(token: str) -> list[str]:
    body, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    return [token[:-1], token[:-4], body + "." + flipped, "MTIz." + mac, body, "", "%00", "x.y"]


def test_pixel_records_an_open(live: LiveServer, seed) -> None:
    contact_id, message_id = seed()
    with live.client(headers={"user-agent": BROWSER}) as client:
        response = client.get(live.pixel(message_id))
    assert response.status_code == 200
    assert response.content == GIF and len(GIF) == 43
    assert response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"]
    opened = wait_for(lambda: rows(live.engine, kind="open"))
    assert len(opened) == 1
    row = opened[0]
    assert (row.message_id, row.contact_id, row.machine, row.machine_reason) == (
        message_id, contact_id, False, None)
    assert row.user_agent == BROWSER and row.ip == "127.0.0.1"


def test_pixel_head_is_a_machine_open(live: LiveServer, seed) -> None:
    _, message_id = seed()
    with live.client(headers={"user-agent": BROWSER}) as client:
        response = client.head(live.pixel(message_id))
    assert response.status_code == 200 and response.content == b""
    opened = wait_for(lambda: rows(live.engine, kind="open"))
    assert [(r.machine, r.machine_reason) for r in opened] == [(True, "head_request")]


def test_pixel_answers_gif_to_forged_tokens_and_records_nothing(live: LiveServer, seed) -> None:
    _, message_id = seed()
    token = live.signer.message_token(message_id)
    other_key = Signer(["another-project"]).message_token(message_id)
    with live.client() as client:
        for forged in [*_forgeries(token), other_key]:
            response = client.get(f"/o/{forged}.gif")
            assert response.status_code == 200, forged
            assert response.content == GIF
        # A valid open after the forgeries: once it is stored, the queue has been flushed.
        client.get(live.pixel(message_id), headers={"user-agent": BROWSER})
    assert wait_for(lambda: rows(live.engine, kind="open"))
    live.stop()
    assert count_engagements(live.engine) == 1


def test_click_redirects_to_the_sealed_url(live: LiveServer, seed) -> None:
    contact_id, message_id = seed()
    target = "https://shop.acme.test/sale?utm_source=reach&x=1&y=%C3%A9#top"
    with live.client(headers={"user-agent": BROWSER}) as client:
        response = client.get(live.click(message_id, target))
    assert response.status_code == 302
    assert response.headers["location"] == target
    clicks = wait_for(lambda: rows(live.engine, kind="click"))
    assert [(r.url, r.contact_id, r.machine) for r in clicks] == [(target, contact_id, False)]


def test_altered_click_tokens_get_400_and_record_nothing(live: LiveServer, seed) -> None:
    _, message_id = seed()
    mtoken = live.signer.message_token(message_id)
    utoken = live.signer.url_token("https://shop.acme.test/")
    evil = Signer(["attacker"]).url_token("https://evil.example/phish")
    script = live.signer.url_token("javascript:alert(1)")
    crlf = live.signer.url_token("https://shop.acme.test/\r\nSet-Cookie: session=stolen")
    attempts = [f"/c/{m}/{utoken}" for m in _forgeries(mtoken) if m and m != "%00"]
    attempts += [f"/c/{mtoken}/{u}" for u in _forgeries(utoken) if u and u != "%00"]
    attempts += [f"/c/{mtoken}/{evil}", f"/c/{mtoken}/{script}", f"/c/{mtoken}/{crlf}",
                 f"/c/{utoken}/{mtoken}", f"/c/{mtoken}/{mtoken}"]
    with live.client() as client:
        for path in attempts:
            response = client.get(path)
            assert response.status_code == 400, path
            assert "location" not in response.headers
            assert "set-cookie" not in response.headers
            assert "text/html" in response.headers["content-type"]
    live.stop()
    assert count_engagements(live.engine) == 0


def test_click_query_string_cannot_change_the_target(live: LiveServer, seed) -> None:
    _, message_id = seed()
    path = live.click(message_id, "https://shop.acme.test/")
    hostile = "?url=https://evil.example&next=//evil.example&x=%0d%0aSet-Cookie:%20a=b"
    with live.client(headers={"user-agent": "'; DROP TABLE engagements; --"}) as client:
        response = client.get(path + hostile)
    assert response.status_code == 302
    assert response.headers["location"] == "https://shop.acme.test/"
    assert "set-cookie" not in response.headers
    clicks = wait_for(lambda: rows(live.engine, kind="click"))
    assert clicks[0].user_agent == "'; DROP TABLE engagements; --"


def test_honeypot_link_is_recorded_as_machine_and_not_followed(live: LiveServer, seed) -> None:
    _, message_id = seed()
    with live.client(headers={"user-agent": BROWSER}) as client:
        response = client.get(live.click(message_id, "https://honeypot.reach.invalid/"))
    assert response.status_code == 204
    assert "location" not in response.headers
    clicks = wait_for(lambda: rows(live.engine, kind="click"))
    assert [(r.machine, r.machine_reason) for r in clicks] == [(True, "honeypot")]


def test_oversized_paths(live: LiveServer, seed) -> None:
    _, message_id = seed()
    with live.client() as client:
        assert client.get("/c/" + "A" * 5000 + "/x").status_code == 400
        assert client.get("/u/" + "A" * 5000).status_code == 400
        pixel = client.get("/o/" + "A" * 5000 + ".gif")
        assert pixel.status_code == 200 and pixel.content == GIF
        client.get(live.pixel(message_id), headers={"user-agent": BROWSER})
    assert wait_for(lambda: rows(live.engine, kind="open"))
    live.stop()
    assert count_engagements(live.engine) == 1


def _raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_hostile_user_agents_are_stored_safely(live: LiveServer, seed) -> None:
    _, message_id = seed()
    path = live.pixel(message_id).encode()
    hostile = ["x' OR '1'='1", 'a"); DELETE FROM contacts; --', "ü\t\u202e" + "B" * 5000]
    for agent in hostile:
        answer = _raw_request(live.url, b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n"
                              b"Connection: close\r\nUser-Agent: " + agent.encode("utf-8")
                              + b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200")
    opened = wait_for(lambda: len(rows(live.engine, kind="open")) == 3 and
                      rows(live.engine, kind="open"))
    agents = [r.user_agent for r in opened]
    assert agents[0] == "x' OR '1'='1"
    assert agents[1] == 'a"); DELETE FROM contacts; --'
    assert len(agents[2]) == 512 and agents[2].isprintable()
    with live.engine.connect() as conn:
        assert conn.execute(select(contacts.c.id)).first() is not None


def test_unsubscribe_page_and_form_post(live: LiveServer, seed) -> None:
    contact_id, message_id = seed(email="ann@example.com")
    with live.client(headers={"user-agent": BROWSER}) as client:
        page = client.get(live.unsubscribe(message_id))
        assert page.status_code == 200
        assert "ann@example.com" in page.text
        assert '<form method="post"' in page.text
        assert 'name="viewport"' in page.text and '<html lang="en">' in page.text
        done = client.post(live.unsubscribe(message_id), data={"confirm": "yes"})
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        again = client.post(live.unsubscribe(message_id), data={"confirm": "yes"})
        assert again.status_code == 200 and "already unsubscribed" in again.text
    with live.engine.connect() as conn:
        assert conn.execute(select(contacts.c.email_status)
                            .where(contacts.c.id == contact_id)).scalar() == "unsubscribed"
        changes = list(conn.execute(select(consent_changes)))
    assert [(c.channel, c.status, c.source, c.message_id) for c in changes] == [
        ("email", "unsubscribed", "unsubscribe_link", message_id)]
    assert len(rows(live.engine, kind="unsubscribe")) == 1


@pytest.mark.parametrize("multipart", [False, True])
def test_one_click_unsubscribe(live: LiveServer, seed, multipart: bool) -> None:
    contact_id, message_id = seed()
    with live.client() as client:
        if multipart:
            response = client.post(live.unsubscribe(message_id),
                                   files={"List-Unsubscribe": (None, "One-Click")})
        else:
            response = client.post(live.unsubscribe(message_id),
                                   content=b"List-Unsubscribe=One-Click",
                                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/plain")
    with live.engine.connect() as conn:
        source = conn.execute(select(consent_changes.c.source)).scalar()
        status = conn.execute(select(contacts.c.email_status)
                              .where(contacts.c.id == contact_id)).scalar()
    assert (source, status) == ("one_click", "unsubscribed")


def test_unsubscribe_sms_message_changes_sms_consent(live: LiveServer, seed) -> None:
    contact_id, message_id = seed(phone="+14155550100", channel="sms")
    with live.client() as client:
        page = client.get(live.unsubscribe(message_id))
        assert "+14155550100" in page.text and "text messages" in page.text
        assert client.post(live.unsubscribe(message_id)).status_code == 200
    with live.engine.connect() as conn:
        row = conn.execute(select(contacts.c.email_status, contacts.c.sms_status)
                           .where(contacts.c.id == contact_id)).one()
    assert tuple(row) == ("subscribed", "unsubscribed")


def test_unsubscribe_bad_token_and_unknown_message(live: LiveServer, seed) -> None:
    _, message_id = seed()
    token = live.signer.message_token(message_id)
    with live.client() as client:
        for forged in _forgeries(token)[:3]:
            assert client.get(f"/u/{forged}").status_code == 400
            assert client.post(f"/u/{forged}", data={"List-Unsubscribe": "One-Click"}
                               ).status_code == 400
        assert client.get(live.unsubscribe(999_999)).status_code == 404
        too_big = client.post(live.unsubscribe(message_id), content=b"x" * 70_000,
                              headers={"content-type": "application/x-www-form-urlencoded"})
        assert too_big.status_code == 413
        garbage = client.post(live.unsubscribe(message_id), content=b"--zz\r\n\x00\xff",
                              headers={"content-type": "multipart/form-data; boundary=zz"})
        assert garbage.status_code == 200  # the POST to our own URL is the consent
    with live.engine.connect() as conn:
        assert conn.execute(select(consent_changes.c.source)).scalars().all() == [
            "unsubscribe_link"]


def test_view_in_browser(settings, engine, seed) -> None:
    _, message_id = seed()
    pages = {message_id: "<html><body><h1>Spring sale</h1></body></html>"}
    server = start_server(settings, engine, view_renderer=pages.get)
    try:
        with server.client() as client:
            shown = client.get(f"/v/{server.signer.message_token(message_id)}")
            assert shown.status_code == 200 and "<h1>Spring sale</h1>" in shown.text
            assert "script-src 'none'" in shown.headers["content-security-policy"]
            missing = client.get(f"/v/{server.signer.message_token(message_id + 1)}")
            assert missing.status_code == 404
            assert client.get(f"/v/{server.signer.message_token(message_id)}x").status_code == 400
    finally:
        server.stop()


def test_view_without_renderer_is_404(live: LiveServer, seed) -> None:
    _, message_id = seed()
    with live.client() as client:
        assert client.get(f"/v/{live.signer.message_token(message_id)}").status_code == 404


def test_health_and_metrics(live: LiveServer, seed) -> None:
    _, message_id = seed()
    with live.client(headers={"user-agent": BROWSER}) as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        client.get(live.pixel(message_id))
        client.get("/c/bad/worse")
        wait_for(lambda: rows(live.engine, kind="open"))
        text = client.get("/metrics").text
    assert 'reach_tracking_requests_total{route="/o",status="200"} 1' in text
    assert 'reach_tracking_requests_total{route="/c",status="400"} 1' in text
    assert 'reach_tracking_events_written_total{kind="open"} 1' in text
    assert "reach_tracking_queue_depth 0" in text
    assert "# TYPE reach_tracking_flush_errors_total counter" in text
    assert "bad" not in text  # tokens never become label values


def test_metrics_token_is_asked_for_when_configured(settings, engine) -> None:
    guarded = start_server(settings.model_copy(update={"metrics_token": "s3cret-token"}), engine)
    try:
        with guarded.client() as client:
            bare = client.get("/metrics")
            wrong = client.get("/metrics", headers={"authorization": "Bearer s3cret-tokem"})
            basic = client.get("/metrics", headers={"authorization": "Basic s3cret-token"})
            right = client.get("/metrics", headers={"authorization": "Bearer s3cret-token"})
            health = client.get("/health")  # liveness stays open for load balancers
    finally:
        guarded.stop()
    for refused in (bare, wrong, basic):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "bad_metrics_token"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "reach_tracking" not in refused.text
    assert right.status_code == 200 and "reach_tracking_queue_depth" in right.text
    assert health.status_code == 200
