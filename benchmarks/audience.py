"""Audience benchmark on PostgreSQL: segment count, keyset streaming, CSV import.

Generates N contacts and 10·N events inside the database with ``generate_series`` (in its
own schema, ``bench_audience``), then times, each against a hand-written-SQL baseline
measured in the same run:

  (a) a four-condition segment with an event-count window: COUNT(*) (median of 5 runs);
  (b) streaming that audience in keyset batches with attributes (contacts/s; medians of
      3 alternating runs after a warm-up);
  (c) importing a generated 100k-row CSV (rows/s; baseline: COPY + one set-based upsert,
      without validation).

Usage::

    REACH_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        python benchmarks/audience.py --contacts 1000000

Targets (issue 4): segment count ≤ 250 ms, streaming ≥ 150,000 contacts/s, CSV import
≥ 20,000 rows/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiences.audience import stream_audience  # noqa: E402
from audiences.compiler import compile_conditions, count  # noqa: E402
from audiences.contacts import import_contacts  # noqa: E402
from reach.db import connect  # noqa: E402
from reach.db.engine import make_engine  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SCHEMA = "bench_audience"

SEGMENT = [
    {"attribute": "country", "in": ["DE", "AT", "CH"]},
    {"attribute": "plan", "eq": "pro"},
    {"attribute": "score", "gte": 50},
    {"event": "purchase", "count": {"gte": 2}, "within": "30d"},
]
BASELINE_COUNT = """
SELECT count(*) FROM contacts c
WHERE c.country IN ('DE', 'AT', 'CH')
  AND c.attributes ->> 'plan' = 'pro'
  AND (c.attributes ->> 'score')::int >= 50
  AND c.erased_at IS NULL
  AND c.id IN (SELECT contact_id FROM events
               WHERE type = 'purchase' AND occurred_at >= now() - interval '30 days'
               GROUP BY contact_id HAVING count(*) >= 2)
"""
STREAM = [{"attribute": "country", "in": ["DE", "AT", "CH"]}]
BASELINE_STREAM = """
SELECT * FROM contacts
WHERE country IN ('DE', 'AT', 'CH') AND erased_at IS NULL AND email_status = 'subscribed'
  AND email IS NOT NULL AND id > %s ORDER BY id LIMIT %s
"""


def schema_url(url: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{SCHEMA}"


def generate(url: str, contacts: int, per_contact: int) -> Engine:
    """A fresh schema with ``contacts`` contacts and ``per_contact``× as many events."""
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{SCHEMA}"'))
    admin.dispose()
    engine = connect(schema_url(url))
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO contacts (email, first_name, country, attributes, email_status,
                                  sms_status, created_at, updated_at)
            SELECT 'user' || i || '@example.org', 'Name' || i,
                   (ARRAY['DE','AT','CH','FR','US','GB','NL','IT','ES','PL'])[1 + i % 10],
                   jsonb_build_object('plan', CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END,
                                      'score', i % 100, 'vip', i % 10 = 0,
                                      'signed_up_at', to_char(now() - (i % 400) * interval '1 day',
                                                              'YYYY-MM-DD'),
                                      'tags', jsonb_build_array('t' || i % 7, 't' || i % 11)),
                   CASE WHEN i % 50 = 0 THEN 'unsubscribed' ELSE 'subscribed' END,
                   'subscribed', now() - (i % 400) * interval '1 day', now()
            FROM generate_series(1, :n) AS i
        """), {"n": contacts})
        conn.execute(text("""
            INSERT INTO events (contact_id, type, occurred_at, properties, received_at)
            SELECT 1 + (random() * (:n - 1))::bigint,
                   CASE WHEN random() < 0.2 THEN 'purchase' ELSE 'view' END,
                   now() - random() * interval '365 days',
                   jsonb_build_object('amount', round((random() * 200)::numeric, 2)),
                   now()
            FROM generate_series(1, :n * :k)
        """), {"n": contacts, "k": per_contact})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    print(f"generated {contacts:,} contacts and {contacts * per_contact:,} events "
          f"in {time.perf_counter() - started:.1f} s")
    return engine


def median_ms(fn: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    result, times = None, []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), result


def bench_count(engine: Engine) -> None:
    with engine.connect() as conn:
        base_ms, base_n = median_ms(lambda: conn.execute(text(BASELINE_COUNT)).scalar())
        ours_ms, ours_n = median_ms(lambda: count(conn, compile_conditions(SEGMENT)))
    print(f"(a) segment count: compiler {ours_ms:.1f} ms ({ours_n:,} contacts), hand-written "
          f"{base_ms:.1f} ms ({base_n:,}); ratio {ours_ms / base_ms:.2f}x  [target <= 250 ms]")
    if ours_n != base_n:
        print(f"    WARNING: counts differ ({ours_n} vs {base_n})")


def _stream_ours(engine: Engine, where: Any, batch: int) -> tuple[float, int]:
    t = time.perf_counter()  # what `reach contacts export --segment` streams
    n = sum(len(b) for b in stream_audience(engine, where, "email", batch))
    return n / (time.perf_counter() - t), n


def _stream_baseline(engine: Engine, batch: int) -> tuple[float, int]:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        t, after, m = time.perf_counter(), 0, 0
        while True:
            cur.execute(BASELINE_STREAM, (after, batch))
            rows = cur.fetchall()
            if not rows:
                break
            m += len(rows)
            after = rows[-1][0]
        return m / (time.perf_counter() - t), m
    finally:
        raw.close()


def bench_stream(engine: Engine, batch: int = 5000, rounds: int = 3) -> None:
    """Medians of ``rounds`` alternating runs after one warm-up of each: whichever ran
    first otherwise paid for reading the table into the page cache."""
    where = compile_conditions(STREAM)
    _stream_ours(engine, where, batch)  # warm-ups, not counted
    _stream_baseline(engine, batch)
    ours_runs, base_runs = [], []
    for _ in range(rounds):
        ours_runs.append(_stream_ours(engine, where, batch))
        base_runs.append(_stream_baseline(engine, batch))
    ours, n = statistics.median(r for r, _ in ours_runs), ours_runs[0][1]
    base, m = statistics.median(r for r, _ in base_runs), base_runs[0][1]
    spread = ", ".join(f"{r:,.0f}" for r, _ in ours_runs)
    print(f"(b) streaming with attributes: compiler {ours:,.0f} contacts/s ({n:,}; runs "
          f"{spread}), hand-written {base:,.0f} rows/s ({m:,}); ratio {ours / base:.2f}x  "
          "[target >= 150,000/s]")


def write_csv(path: Path, rows: int, prefix: str) -> None:
    with path.open("w") as fh:
        fh.write("email,first_name,last_name,country,phone,timezone,plan,score,vip,"
                 "signed_up_at\n")
        for i in range(rows):
            fh.write(f"{prefix}{i}@Example.org,First{i},Last{i},de,+49151{i:08d},"
                     f"Europe/Berlin,{'pro' if i % 3 == 0 else 'free'},{i % 100},"
                     f"{'true' if i % 10 == 0 else 'false'},2026-0{1 + i % 9}-15\n")


# The hand-written import: COPY the file into a staging table, then one set-based upsert
# (no per-row validation, no rejected-rows report, no phone normalisation).
BASELINE_UPSERT = """
INSERT INTO contacts (email, first_name, last_name, country, phone, timezone, attributes,
                      email_status, sms_status, created_at, updated_at)
SELECT lower(email), first_name, last_name, upper(country), phone, timezone,
       jsonb_build_object('plan', plan, 'score', score::int, 'vip', vip::boolean,
                          'signed_up_at', signed_up_at),
       'subscribed', 'subscribed', now(), now()
FROM bench_copy
ON CONFLICT (email) DO UPDATE SET first_name = excluded.first_name,
  last_name = excluded.last_name, country = excluded.country, phone = excluded.phone,
  timezone = excluded.timezone, attributes = contacts.attributes || excluded.attributes,
  updated_at = excluded.updated_at
"""


def bench_import(engine: Engine, rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ours_csv, base_csv = Path(tmp) / "contacts.csv", Path(tmp) / "baseline.csv"
        write_csv(ours_csv, rows, "Import")
        write_csv(base_csv, rows, "Baseline")
        t = time.perf_counter()
        report = import_contacts(engine, ours_csv)
        ours = rows / (time.perf_counter() - t)
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("CREATE TEMP TABLE bench_copy (email text, first_name text, last_name "
                        "text, country text, phone text, timezone text, plan text, score text, "
                        "vip text, signed_up_at text)")
            t = time.perf_counter()
            with base_csv.open("rb") as fh, cur.copy(
                "COPY bench_copy FROM STDIN WITH (FORMAT csv, HEADER true)"
            ) as copy:
                while chunk := fh.read(1 << 20):
                    copy.write(chunk)
            cur.execute(BASELINE_UPSERT)
            raw.commit()
            base = rows / (time.perf_counter() - t)
        finally:
            raw.close()
    print(f"(c) CSV import: {ours:,.0f} rows/s (inserted {report.inserted:,}, updated "
          f"{report.updated:,}, rejected {report.rejected_count}), hand-written COPY + upsert "
          f"{base:,.0f} rows/s; ratio {ours / base:.2f}x  [target >= 20,000/s]")


def forget_imports(engine: Engine) -> None:
    """Back to the generated data: without this a second run's import would update the
    rows of the first (another figure) and the streamed audience would grow by them."""
    with engine.begin() as conn:
        gone = conn.execute(text("DELETE FROM contacts WHERE email LIKE 'import%' "
                                 "OR email LIKE 'baseline%'")).rowcount
    with engine.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        auto.execute(text("VACUUM ANALYZE contacts"))
    print(f"removed the {gone:,} contacts a previous run imported")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events-per-contact", type=int, default=10)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the generated data of a previous run (skip generation; "
                             "the contacts its import added are deleted first)")
    args = parser.parse_args(argv)
    url = os.environ.get("REACH_BENCH_DATABASE_URL", DEFAULT_URL)
    if not url.startswith("postgresql"):
        sys.exit("REACH_BENCH_DATABASE_URL must be a PostgreSQL URL")
    if args.reuse:
        engine = connect(schema_url(url))
        forget_imports(engine)
    else:
        engine = generate(url, args.contacts, args.events_per_contact)
    bench_count(engine)
    bench_stream(engine)
    bench_import(engine, args.csv_rows)
    engine.dispose()


if __name__ == "__main__":
    main()
