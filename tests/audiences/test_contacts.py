"""Contact import (CSV, JSON lines), upsert, statuses, export and erasure on a real DB."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sqlalchemy import Engine, func, insert, select

from audiences.contacts import erase_contact, export_contacts, import_contacts
from reach.db.schema import consent_changes, contacts, events, messages

CSV = """email,first_name,country,phone,timezone,created_at,plan,score,ratio,vip,zip,note
Ann@Example.org,Ann,de,0151 12345678,Europe/Berlin,2026-01-05,pro,42,1.5,TRUE,01234,hi
not-an-email,Bob,DE,,,,free,1,,,,
cy@example.org,Cy,DE,12,,,,,,,,
dee@example.org,Dee,DEU,,,,,,,,,
eve@example.org,Eve,FR,,Mars/Olympus,,,,,,,
fay@example.org,Fay,FR,,,yesterday,,,,,,
"gus@example.org","Gus, Jr.",US,+1 415 555 2671,America/New_York,2026-02-01T10:00:00+02:00,"multi
line",7,,false,,
,,,,,,,,,,,
hal@example.org,Hal,GB,,,,,,,,,,extra
noaddress,,,,,,,,,,,
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rows(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r.email: dict(r._mapping) for r in conn.execute(select(contacts))}


def test_csv_import_types_and_rejects_bad_rows_with_line_numbers(engine: Engine,
                                                                  tmp_path: Path) -> None:
    seen: list[int] = []
    report = import_contacts(engine, write(tmp_path, "c.csv", CSV), progress=seen.append)
    assert (report.inserted, report.updated) == (2, 0)
    reasons = {r.line: r.reason for r in report.rejected}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 11, 12]  # gus spans lines 8-9, line 10 is empty
    assert "invalid email" in reasons[3] and "invalid phone" in reasons[4]
    assert "country" in reasons[5] and "timezone" in reasons[6] and "created_at" in reasons[7]
    assert "13 fields" in reasons[11] and "invalid email" in reasons[12]
    assert report.rejected[0].raw.startswith("not-an-email,Bob")
    assert seen and seen[-1] == 9  # records read (the empty row is not one)
    got = rows(engine)
    ann = got["ann@example.org"]
    assert (ann["phone"], ann["country"], ann["timezone"]) == ("+4915112345678", "DE",
                                                               "Europe/Berlin")
    assert ann["attributes"] == {"plan": "pro", "score": 42, "ratio": 1.5, "vip": True,
                                 "zip": "01234", "note": "hi"}
    assert ann["created_at"].year == 2026 and ann["created_at"].month == 1
    gus = got["gus@example.org"]
    assert gus["first_name"] == "Gus, Jr." and gus["phone"] == "+14155552671"
    assert gus["attributes"]["plan"] == "multi\nline" and gus["attributes"]["vip"] is False


def test_upsert_by_email_and_external_id_merges_and_keeps(engine: Engine, tmp_path: Path) -> None:
    import_contacts(engine, write(tmp_path, "a.csv",
                                  "email,external_id,first_name,plan,score\n"
                                  "a@x.org,A1,Ann,pro,1\n,B2,,free,2\n"))
    report = import_contacts(engine, write(tmp_path, "b.csv",
                                           "email,external_id,first_name,last_name,score,new\n"
                                           "A@X.org,,,Lee,5,yes\n,B2,Bo,,,\n"
                                           "c@x.org,,Cy,,,\nc@x.org,,Cyrus,,,\n"))
    assert (report.inserted, report.updated, report.rejected) == (1, 3, [])
    with engine.connect() as conn:
        by_ext = {r.external_id: r for r in conn.execute(select(contacts))}
        assert conn.execute(select(func.count()).select_from(contacts)).scalar() == 3
    a = by_ext["A1"]
    assert (a.first_name, a.last_name) == ("Ann", "Lee")  # empty cells never clear a field
    assert a.attributes == {"plan": "pro", "score": 5, "new": "yes"}
    assert by_ext["B2"].first_name == "Bo" and by_ext["B2"].attributes["plan"] == "free"
    assert rows(engine)["c@x.org"]["first_name"] == "Cyrus"  # the later row wins


def test_conflicting_keys_reject_only_that_row(engine: Engine, tmp_path: Path) -> None:
    import_contacts(engine, write(tmp_path, "a.csv", "email,external_id\na@x.org,A1\n"
                                                     "b@x.org,B1\n"))
    report = import_contacts(engine, write(tmp_path, "b.csv", "email,external_id\n"
                                                              "c@x.org,C1\nb@x.org,A1\n"))
    assert report.inserted == 1 and [r.line for r in report.rejected] == [3]
    assert "two different contacts" in report.rejected[0].reason


def test_jsonl_import_and_bad_lines(engine: Engine, tmp_path: Path) -> None:
    lines = [
        json.dumps({"email": "j@x.org", "first_name": "Jo", "plan": "pro", "score": "7",
                    "tags": ["a", "b"], "attributes": {"vip": True}}),
        "{not json",
        json.dumps(["a list"]),
        "",
        json.dumps({"external_id": "k9", "created_at": "31/12/2026"}),
        json.dumps({"external_id": "k10", "sms_status": "complained"}),
    ]
    report = import_contacts(engine, write(tmp_path, "c.ndjson", "\n".join(lines) + "\n"))
    assert report.inserted == 2
    assert [(r.line, r.reason.split(" '")[0].split(":")[0]) for r in report.rejected] == [
        (2, "invalid JSON"), (3, "each line must be a JSON object"), (5, "invalid created_at")]
    jo = rows(engine)["j@x.org"]
    # JSON keeps its own types: "7" stays a string there.
    assert jo["attributes"] == {"plan": "pro", "score": "7", "tags": ["a", "b"], "vip": True}


def test_status_columns_go_through_consent_history(engine: Engine, tmp_path: Path) -> None:
    import_contacts(engine, write(tmp_path, "a.csv", "email,email_status,sms_status\n"
                                                     "u@x.org,unsubscribed,\nv@x.org,,bounced\n"
                                                     "w@x.org,maybe,\n"))
    report = import_contacts(engine, write(tmp_path, "b.csv", "email,email_status\n"
                                                              "u@x.org,subscribed\n"))
    assert report.updated == 1
    got = rows(engine)
    assert got["u@x.org"]["email_status"] == "unsubscribed"  # an import never re-subscribes
    assert got["v@x.org"]["sms_status"] == "bounced" and "w@x.org" not in got
    with engine.connect() as conn:
        history = conn.execute(select(consent_changes.c.channel, consent_changes.c.status,
                                      consent_changes.c.source)).all()
    assert sorted(history) == [("email", "unsubscribed", "import"), ("sms", "bounced", "import")]


def test_unknown_format_is_an_error(engine: Engine, tmp_path: Path) -> None:
    import pytest

    from reach.errors import ReachError

    with pytest.raises(ReachError) as info:
        import_contacts(engine, write(tmp_path, "c.xlsx", "x"))
    assert info.value.code == "I501"


def test_export_round_trips(engine: Engine, tmp_path: Path) -> None:
    import_contacts(engine, write(tmp_path, "c.csv", CSV))
    out = io.StringIO()
    assert export_contacts(engine, out, "csv") == 2
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    ann = next(r for r in table if r["email"] == "ann@example.org")
    assert ann["plan"] == "pro" and ann["vip"] == "true" and ann["zip"] == "01234"
    path = tmp_path / "out.jsonl"
    assert export_contacts(engine, path, "jsonl") == 2
    objs = [json.loads(line) for line in path.read_text().splitlines()]
    assert {o["email"] for o in objs} == {"ann@example.org", "gus@example.org"}
    again = import_contacts(engine, write(tmp_path, "again.csv", out.getvalue()))
    assert again.updated == 2 and again.rejected == []


def test_erasure_removes_personal_data_and_keeps_counts(engine: Engine, tmp_path: Path) -> None:
    import_contacts(engine, write(tmp_path, "c.csv", CSV))
    with engine.begin() as conn:
        cid = conn.execute(select(contacts.c.id).where(
            contacts.c.email == "ann@example.org")).scalar_one()
        from reach import clock
        conn.execute(insert(events).values(contact_id=cid, type="purchase",
                                           occurred_at=clock.now(), properties={"amount": 5},
                                           received_at=clock.now()))
        conn.execute(insert(messages).values(
            idempotency_key="k", source_kind="campaign", source_name="c", source_version="v",
            contact_id=cid, channel="email", status="sent", to_address="ann@example.org",
            created_at=clock.now()))
    assert erase_contact(engine, "ANN@example.org") is True
    assert erase_contact(engine, "ann@example.org") is False
    with engine.connect() as conn:
        row = conn.execute(select(contacts).where(contacts.c.id == cid)).one()
        assert row.email is None and row.first_name is None and row.phone is None
        assert row.attributes == {} and row.erased_at is not None
        assert (row.email_status, row.sms_status) == ("unsubscribed", "unsubscribed")
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 1
        assert conn.execute(select(messages.c.to_address)).scalar() is None
    assert "ann@example.org" not in export_contacts_text(engine)


def export_contacts_text(engine: Engine) -> str:
    out = io.StringIO()
    export_contacts(engine, out, "jsonl")
    return out.getvalue()


def test_rejected_rows_are_counted_but_kept_only_up_to_a_cap(engine, tmp_path, monkeypatch):
    from audiences.contacts import ImportReport, import_contacts

    monkeypatch.setattr(ImportReport, "KEEP_REJECTED", 5)
    path = tmp_path / "many-bad.csv"
    lines = ["email,first_name", *(f"bad{i}-no-at-sign,X" for i in range(8)),
             "ok@example.com,Ok"]
    path.write_text("\n".join(lines) + "\n")
    report = import_contacts(engine, path)
    assert report.inserted == 1 and report.rejected_count == 8
    assert [r.line for r in report.rejected] == [2, 3, 4, 5, 6]


def test_long_numbers_and_unicode_attributes_import_whole(engine: Engine, tmp_path: Path) -> None:
    # CSV: 25 digits stay text (no float rounding); JSON lines: an integer beyond 64 bits,
    # which orjson refuses to write, is stored whole instead of crashing the import.
    text = "email,account,city\nzoe@example.org,1234567890123456789012345,Zürich 東京\n"
    report = import_contacts(engine, write(tmp_path, "long.csv", text))
    assert (report.inserted, report.rejected_count) == (1, 0)
    attrs = rows(engine)["zoe@example.org"]["attributes"]
    assert attrs == {"account": "1234567890123456789012345", "city": "Zürich 東京"}
    line = json.dumps({"email": "yan@example.org", "big": 2**80, "city": "Zürich"})
    report = import_contacts(engine, write(tmp_path, "big.jsonl", line + "\n"))
    assert (report.inserted, report.rejected_count) == (1, 0)
    assert rows(engine)["yan@example.org"]["attributes"] == {"big": 2**80, "city": "Zürich"}
    # A second import of the same file updates in place (the stage table is reused).
    again = import_contacts(engine, write(tmp_path, "long.csv", text))
    assert (again.inserted, again.updated) == (0, 1)


def test_values_the_database_cannot_store_reject_only_their_row(engine: Engine,
                                                                tmp_path: Path) -> None:
    # A NUL character: PostgreSQL's text and JSON refuse it. The chunk is retried row by
    # row, so that row alone is rejected with the database's reason; quotes, backslashes
    # and JSON-looking text are stored as they are.
    text = ("email,first_name,note\n"
            "a@x.org,Ann,\"quote \"\" and \\\\ back\"\n"
            "b@x.org,B\x00b,plain\n"
            "c@x.org,Cy,\"{\"\"not\"\": \"\"json\"\"}\"\n"
            "d@x.org,Di,nul \x00 here\n")
    report = import_contacts(engine, write(tmp_path, "nul.csv", text))
    pg = engine.dialect.name == "postgresql"
    assert report.inserted == (2 if pg else 4)
    assert [r.line for r in report.rejected] == ([3, 5] if pg else [])
    with engine.connect() as conn:
        got = {r.email: (r.first_name, r.attributes) for r in conn.execute(select(contacts))}
    assert got["a@x.org"] == ("Ann", {"note": 'quote " and \\\\ back'})
    assert got["c@x.org"] == ("Cy", {"note": '{"not": "json"}'})


def test_progress_advances_by_what_was_read_since_the_last_call(engine: Engine,
                                                                 tmp_path: Path) -> None:
    rows = "".join(f"p{i}@example.org,P{i}\n" for i in range(4500))
    steps: list[int] = []
    report = import_contacts(engine, write(tmp_path, "p.csv", "email,first_name\n" + rows),
                             progress=steps.append)
    assert report.inserted == 4500
    assert len(steps) >= 3 and sum(steps) == 4500  # a bar's advance: increments, not totals
