"""reach.db.bulk on the test database: the batch helpers give what plain SQL gives."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select

from reach.db.bulk import among, insert_rows, update_rows
from reach.db.schema import contacts

HOSTILE = ["o'brien@example.com", "x@example.com'); DROP TABLE contacts; --",
           'quote"d@example.com', "back\\slash@example.com", "{curly,comma}@example.com"]


def _seed(engine: Engine) -> list[int]:
    now = datetime(2026, 3, 2, 10, tzinfo=UTC)
    rows = [{"email": email, "first_name": f"n{i}", "attributes": {"i": i},
             "email_status": "subscribed", "sms_status": "subscribed",
             "created_at": now, "updated_at": now}
            for i, email in enumerate([*HOSTILE, *(f"c{i}@example.com" for i in range(60))])]
    with engine.begin() as conn:
        return sorted(insert_rows(conn, contacts, rows, conflict=["email"],
                                  returning=contacts.c.id))


def test_among_matches_in_for_ids_strings_and_empty(engine: Engine) -> None:
    ids = _seed(engine)
    with engine.connect() as conn:
        def ids_where(clause: object) -> list[int]:
            return sorted(conn.execute(select(contacts.c.id).where(clause)).scalars())  # type: ignore[arg-type]

        wanted = ids[::3] + [10**12]  # one id that does not exist
        assert ids_where(among(conn, contacts.c.id, wanted)) == ids[::3]
        assert ids_where(among(conn, contacts.c.id, iter(ids[:2]))) == ids[:2]  # any iterable
        assert ids_where(among(conn, contacts.c.id, [])) == []
        # Strings travel as values, never as SQL: each hostile address finds its own row.
        found = conn.execute(select(contacts.c.email).where(
            among(conn, contacts.c.email, HOSTILE))).scalars().all()
        assert sorted(found) == sorted(HOSTILE)
        assert conn.execute(select(contacts.c.id).where(
            among(conn, contacts.c.email, ["nobody@example.com"]))).first() is None


def test_insert_skips_conflicts_and_update_sets_each_row(engine: Engine) -> None:
    ids = _seed(engine)
    assert len(ids) == len(HOSTILE) + 60
    assert _seed(engine) == []  # every email exists: nothing new, nothing returned
    with engine.begin() as conn:
        update_rows(conn, contacts,
                    [{"id": cid, "first_name": f"renamed {cid}"} for cid in ids[:10]],
                    where=[contacts.c.email_status == "subscribed"],
                    fixed={"country": "NL"})
    with engine.connect() as conn:
        rows = conn.execute(select(contacts.c.id, contacts.c.first_name, contacts.c.country)
                            .order_by(contacts.c.id)).all()
    for cid, first_name, country in rows:
        if cid in ids[:10]:
            assert (first_name, country) == (f"renamed {cid}", "NL")
        else:
            assert first_name.startswith("n") and country is None
