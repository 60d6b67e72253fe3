"""POST /events, the SMS status callback and the bounce webhook over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from reach.db.schema import consent_changes, contacts, events, messages
from tests.tracking.conftest import API_KEY, LiveServer, rows, start_server
from tracking.webhooks import twilio_signature

SAMPLES = Path(__file__).parent / "samples"
KEY = {"x-reach-key": API_KEY}


def _contact(engine, contact_id: int):
    with engine.connect() as conn:
        return conn.execute(select(contacts).where(contacts.c.id == contact_id)).one()


def _message(engine, message_id: int):
    with engine.connect() as conn:
        return conn.execute(select(messages).where(messages.c.id == message_id)).one()


def _changes(engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [(r.channel, r.status, r.source) for r in
                conn.execute(select(consent_changes).order_by(consent_changes.c.id))]


def _events(engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(select(events).order_by(events.c.id)))


# POST /events -------------------------------------------------------------------------------

def test_events_single_and_batch(live: LiveServer, seed) -> None:
    contact_id, _ = seed(email="buyer@example.com")
    with live.client(headers=KEY) as client:
        one = client.post("/events", json={
            "contact": "buyer@example.com", "type": "purchase",
            "occurred_at": "2024-05-14T10:00:00+02:00",
            "properties": {"revenue": 49.9, "note": "'; DROP TABLE events; --"}, "id": "ord-1"})
        assert one.status_code == 200, one.text
        assert one.json() == {"received": 1, "recorded": 1}
        batch = client.post("/events", json={"events": [
            {"contact": "buyer@example.com", "type": "page_view"},
            {"contact": "buyer@example.com", "type": "purchase", "id": "ord-1"},  # duplicate
        ]})
        assert batch.status_code == 200 and batch.json()["received"] == 2
    stored = _events(live.engine)
    assert [(e.contact_id, e.type) for e in stored] == [
        (contact_id, "purchase"), (contact_id, "page_view")]
    assert stored[0].properties["note"] == "'; DROP TABLE events; --"


def test_events_need_the_api_key(live: LiveServer, seed) -> None:
    seed(email="buyer@example.com")
    body = {"contact": "buyer@example.com", "type": "purchase"}
    with live.client() as client:
        assert client.post("/events", json=body).status_code == 401
        wrong = client.post("/events", json=body, headers={"x-reach-key": API_KEY + "x"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_api_key"
    assert _events(live.engine) == []


def test_events_refused_when_no_api_key_is_configured(settings, engine) -> None:
    server = start_server(settings.model_copy(update={"api_key": ""}), engine)
    try:
        with server.client() as client:
            for headers in ({}, {"x-reach-key": ""}, {"x-reach-key": "anything"}):
                response = client.post("/events", json={"contact": "a", "type": "b"},
                                       headers=headers)
                assert response.status_code == 403
                assert response.json()["error"]["code"] == "api_key_not_configured"
    finally:
        server.stop()


@pytest.mark.parametrize("body, code", [
    (b'{"contact": "a@b.c", "type": ', "malformed_json"),
    (b"\xff\xfe not json", "malformed_json"),
    (b"[]", "invalid_events"),
    (b'"just a string"', "invalid_events"),
    (b'{"events": [{"type": "purchase"}]}', "invalid_event"),
    (b'{"contact": "a@b.c", "type": "' + b"x" * 65 + b'"}', "invalid_event"),
    (b'{"contact": "a@b.c", "type": "t", "properties": [1]}', "invalid_event"),
])
def test_events_malformed_bodies(live: LiveServer, body: bytes, code: str) -> None:
    with live.client(headers={**KEY, "content-type": "application/json"}) as client:
        response = client.post("/events", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_events_unknown_contact_and_oversized_body(live: LiveServer) -> None:
    with live.client(headers=KEY) as client:
        unknown = client.post("/events", json={"contact": "nobody@example.com", "type": "x"})
        assert unknown.status_code == 400 and "nobody@example.com" in unknown.text
        huge = client.post("/events", content=b'{"contact": "' + b"a" * 1_100_000 + b'"}',
                           headers={"content-type": "application/json"})
        assert huge.status_code == 413
        assert huge.json()["error"]["code"] == "body_too_large"


# POST /webhooks/sms/status ------------------------------------------------------------------

def test_sms_delivery_callbacks(live: LiveServer, seed) -> None:
    contact_id, delivered = seed(phone="+14155550100", channel="sms", provider_id="SM111")
    _, failed = seed(contact_id=contact_id, channel="sms", provider_id="SM222")
    _, opted_out = seed(contact_id=contact_id, channel="sms", provider_id="SM333")
    with live.client(headers=KEY) as client:
        for _ in range(2):  # Twilio may repeat a callback
            ok = client.post("/webhooks/sms/status", data={
                "MessageSid": "SM111", "MessageStatus": "delivered", "To": "+14155550100"})
            assert ok.status_code == 204
        client.post("/webhooks/sms/status", data={
            "MessageSid": "SM222", "MessageStatus": "undelivered", "ErrorCode": "30003"})
        assert _contact(live.engine, contact_id).sms_status == "subscribed"
        client.post("/webhooks/sms/status", data={
            "MessageSid": "SM333", "MessageStatus": "failed", "ErrorCode": "21610"})
        unknown = client.post("/webhooks/sms/status", data={
            "MessageSid": "SM' OR 1=1 --", "MessageStatus": "failed", "ErrorCode": "21610"})
        assert unknown.status_code == 204
    assert _message(live.engine, delivered).delivered_at is not None
    assert len(rows(live.engine, kind="delivered")) == 1
    assert (_message(live.engine, failed).status, _message(live.engine, failed).last_error) == (
        "failed", "twilio undelivered (error 30003)")
    assert _message(live.engine, opted_out).status == "failed"
    assert _contact(live.engine, contact_id).sms_status == "unsubscribed"
    assert _changes(live.engine) == [("sms", "unsubscribed", "sms_stop")]


def test_sms_inbound_keywords(live: LiveServer, seed) -> None:
    contact_id, _ = seed(phone="+14155550100", channel="sms")

    def reply(body: str, sid: str) -> None:
        with live.client(headers=KEY) as client:
            response = client.post("/webhooks/sms/status", data={
                "MessageSid": sid, "From": "+1 415-555-0100", "To": "+15550100", "Body": body})
        assert response.status_code == 200
        assert "<Response>" in response.text

    reply("  stop ", "SMa1")
    assert _contact(live.engine, contact_id).sms_status == "unsubscribed"
    reply("Start", "SMa2")
    assert _contact(live.engine, contact_id).sms_status == "subscribed"
    reply("HELP", "SMa3")
    reply("please stop sending me offers", "SMa4")  # not the whole message: not a keyword
    reply("HELP", "SMa3")  # a retried callback
    assert _contact(live.engine, contact_id).sms_status == "subscribed"
    assert _contact(live.engine, contact_id).email_status == "subscribed"
    assert _changes(live.engine) == [("sms", "unsubscribed", "sms_stop"),
                                     ("sms", "subscribed", "sms_start")]
    assert [e.properties["keyword"] for e in _events(live.engine)] == ["STOP", "START", "HELP"]


def test_sms_webhook_auth_with_api_key(live: LiveServer, seed) -> None:
    contact_id, _ = seed(phone="+14155550100", channel="sms")
    form = {"MessageSid": "SMx", "From": "+14155550100", "Body": "STOP"}
    with live.client() as client:
        assert client.post("/webhooks/sms/status", data=form).status_code == 403
        assert client.post("/webhooks/sms/status", data=form,
                           auth=("reach", "wrong")).status_code == 403
        assert _contact(live.engine, contact_id).sms_status == "subscribed"
        assert client.post("/webhooks/sms/status", data=form,
                           auth=("reach", API_KEY)).status_code == 200
    assert _contact(live.engine, contact_id).sms_status == "unsubscribed"


def test_sms_webhook_twilio_signature(settings, engine, seed) -> None:
    contact_id, _ = seed(phone="+14155550100", channel="sms")
    twilio = settings.model_copy(update={
        "sms_transport": "twilio://AC0123:auth-token@api.twilio.com?from=+15550100"})
    server = start_server(twilio, engine)
    form = {"MessageSid": "SMsig", "From": "+14155550100", "To": "+15550100", "Body": "STOP"}
    good = twilio_signature("auth-token", "https://t.acme.test/webhooks/sms/status",
                            list(form.items()))
    try:
        with server.client() as client:
            for signature in ("", "bm90IGEgc2lnbmF0dXJl", good[:-2]):
                refused = client.post("/webhooks/sms/status", data=form,
                                      headers={"x-twilio-signature": signature, **KEY})
                assert refused.status_code == 403
            assert _contact(engine, contact_id).sms_status == "subscribed"
            accepted = client.post("/webhooks/sms/status", data=form,
                                   headers={"x-twilio-signature": good})
            assert accepted.status_code == 200
    finally:
        server.stop()
    assert _contact(engine, contact_id).sms_status == "unsubscribed"


# POST /webhooks/email/bounce ----------------------------------------------------------------

def _sample(name: str, **values: str) -> bytes:
    text = (SAMPLES / name).read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text.replace("\n", "\r\n").encode()


def test_dsn_permanent_bounce(live: LiveServer, seed) -> None:
    contact_id, message_id = seed(email="gone@example.com")
    body = _sample("dsn_permanent.eml", recipient="gone@example.com", action="failed",
                   status="5.1.1", message_id_header="x@acme.test", ledger_ref=str(message_id))
    with live.client(headers={**KEY, "content-type": "message/rfc822"}) as client:
        response = client.post("/webhooks/email/bounce", content=body)
        assert response.status_code == 200, response.text
        again = client.post("/webhooks/email/bounce", content=body)
        assert again.status_code == 200
    result = response.json()["results"][0]
    assert (result["matched"], result["message_id"], result["permanent"]) == (
        True, message_id, True)
    message = _message(live.engine, message_id)
    assert message.status == "bounced" and "5.1.1" in message.last_error
    assert "User unknown" in message.last_error
    assert _contact(live.engine, contact_id).email_status == "bounced"
    assert _changes(live.engine) == [("email", "bounced", "bounce")]
    assert len(rows(live.engine, kind="bounce")) == 1


def test_dsn_transient_is_recorded_only(live: LiveServer, seed) -> None:
    contact_id, message_id = seed(email="full@example.com")
    body = _sample("dsn_permanent.eml", recipient="full@example.com", action="delayed",
                   status="4.2.2", message_id_header="y@acme.test", ledger_ref=str(message_id))
    with live.client(headers={**KEY, "content-type": "message/rfc822"}) as client:
        response = client.post("/webhooks/email/bounce", content=body)
    assert response.status_code == 200 and response.json()["results"][0]["permanent"] is False
    assert _message(live.engine, message_id).status == "sent"
    assert _contact(live.engine, contact_id).email_status == "subscribed"
    assert len(rows(live.engine, kind="soft_bounce")) == 1 and _changes(live.engine) == []


def test_dsn_posted_as_bare_report_matched_by_message_id(live: LiveServer, seed) -> None:
    contact_id, message_id = seed(email="gone@example.com", provider_id="<abc.123@acme.test>")
    whole = _sample("dsn_permanent.eml", recipient="gone@example.com", action="failed",
                    status="5.1.1", message_id_header="abc.123@acme.test", ledger_ref="")
    head, _, body = whole.partition(b"\r\n\r\n")
    content_type = ('multipart/report; report-type=delivery-status; '
                    'boundary="4VQ1B2C3D4.1715677923/mx.example.com"')
    with live.client(headers={**KEY, "content-type": content_type}) as client:
        response = client.post("/webhooks/email/bounce", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["message_id"] == message_id
    assert _contact(live.engine, contact_id).email_status == "bounced"


def test_arf_abuse_complaint(live: LiveServer, seed) -> None:
    contact_id, message_id = seed(email="angry@example.com")
    body = _sample("arf_abuse.eml", recipient="angry@example.com",
                   message_id_header="m@acme.test", ledger_ref=str(message_id))
    with live.client(headers={**KEY, "content-type": "message/rfc822"}) as client:
        response = client.post("/webhooks/email/bounce", content=body)
    assert response.status_code == 200, response.text
    assert _contact(live.engine, contact_id).email_status == "complained"
    assert _changes(live.engine) == [("email", "complained", "complaint")]
    assert [r.message_id for r in rows(live.engine, kind="complaint")] == [message_id]


def test_json_bounce_and_complaint_forms(live: LiveServer, seed) -> None:
    bounced, bounced_msg = seed(email="Gone@Example.com")
    complained, _ = seed(email="spam@example.com")
    with live.client(headers=KEY) as client:
        response = client.post("/webhooks/email/bounce", json=[
            {"email": "gone@example.com", "type": "bounce", "permanent": True,
             "diagnostic": "550 5.1.1 no such user"},
            {"email": "spam@example.com", "type": "complaint"},
            {"email": "stranger@example.com", "type": "bounce", "permanent": True},
        ])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["matched"] for r in results] == [True, True, False]
    assert results[0]["message_id"] == bounced_msg
    assert _contact(live.engine, bounced).email_status == "bounced"
    assert _contact(live.engine, complained).email_status == "complained"


def test_bounce_webhook_refusals(live: LiveServer, seed) -> None:
    contact_id, message_id = seed(email="gone@example.com")
    body = json.dumps({"email": "gone@example.com", "type": "bounce", "permanent": True})
    with live.client() as client:
        assert client.post("/webhooks/email/bounce", content=body,
                           headers={"content-type": "application/json"}).status_code == 401
        for content, kind in [
            (b"{not json", "application/json"),
            (b'{"email": "gone@example.com", "type": "unsubscribe"}', "application/json"),
            (b"Subject: hello\r\n\r\njust a mail", "message/rfc822"),
            (b"--x\r\n\x00\xff\xfe--x--", "multipart/report; boundary=x"),
        ]:
            response = client.post("/webhooks/email/bounce", content=content,
                                   headers={**KEY, "content-type": kind})
            assert response.status_code == 400, content
            assert response.json()["error"]["code"] == "unreadable_report"
        huge = client.post("/webhooks/email/bounce", content=b"x" * (2 * 1024 * 1024 + 1),
                           headers={**KEY, "content-type": "message/rfc822"})
        assert huge.status_code == 413
    assert _contact(live.engine, contact_id).email_status == "subscribed"


def test_arf_matched_by_reach_message_id(live: LiveServer, seed) -> None:
    contact_id, message_id = seed(email="angry@example.com")
    _, newer = seed(contact_id=contact_id)  # the recipient fallback would pick this one
    body = _sample("arf_abuse.eml", recipient="angry@example.com",
                   message_id_header=f"{message_id}.9f86d081884c7d65@acme.test", ledger_ref="")
    with live.client(headers={**KEY, "content-type": "message/rfc822"}) as client:
        response = client.post("/webhooks/email/bounce", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["message_id"] == message_id != newer
    assert [r.message_id for r in rows(live.engine, kind="complaint")] == [message_id]
