"""Benchmark: one journey tick over N contacts on PostgreSQL, outbox transport.

    python benchmarks/journey_tick.py --contacts 100000 \
        --database postgresql+psycopg://postgres@127.0.0.1:5432/test

A three-step journey (email → wait 1d → update). Tick 1 enrols everybody, renders and
writes one email each, and parks them at the wait; tick 2 (a day later) runs the update.
Reports contacts advanced per second for each tick and the peak traced Python memory
(tracemalloc) and the process's maximum RSS.

Baseline, measured in the same run: how many ``.eml`` files this machine's file system
creates per second in a plain loop (temporary file, write, rename; the outbox's own
pattern), in the folder the outbox writes to. Every message of tick 1 is one such file, so
that rate is a ceiling no outbox tick can pass; it moved between 1,000 and 20,000 files/s
from one minute to the next on the virtual machines measured here.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy import insert, text

MJML = """<mjml><mj-body><mj-section><mj-column>
<mj-text>Hi {{ contact.first_name | default('there') }}, welcome to Acme.</mj-text>
<mj-button href="https://acme.test/start">Start</mj-button>
</mj-column></mj-section></mj-body></mjml>
"""
JOURNEY = """journey: bench
entry: {segment: everyone}
settings: {from: "Acme <hello@acme.test>"}
steps:
  - {id: hello, email: {template: templates/hello.mjml, subject: "Hi {{ contact.first_name }}"}}
  - {id: pause, wait: 1d}
  - {id: tag, update: {attributes: {onboarded: true}}}
"""


def file_floor(directory: Path, count: int, size: int) -> float:
    """Files per second: create ``count`` files of ``size`` bytes as the outbox does."""
    directory.mkdir(parents=True, exist_ok=True)
    body = b"x" * size
    started = time.perf_counter()
    for i in range(count):
        temp = directory / f".{i}.tmp"
        with temp.open("wb") as handle:
            handle.write(body)
        os.replace(temp, directory / f"{i}.eml")
    rate = count / (time.perf_counter() - started)
    for i in range(count):
        (directory / f"{i}.eml").unlink()
    return rate


def main() -> None:
    # Sibling benchmark scripts (e.g. tracking.py) must not shadow the packages.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=None,
                        help="processes per tick (default: the tick_processes setting, "
                        "one per core on PostgreSQL)")
    parser.add_argument("--no-trace", action="store_true",
                        help="skip tracemalloc (it slows Python down); RSS is still reported")
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    from journeys.plan import compile_journey
    from journeys.runtime import tick_journey
    from reach import clock
    from reach.db.engine import connect, make_engine
    from reach.project import load_project
    from reach.settings import load_settings

    schema = f"bench_{secrets.token_hex(4)}"
    admin = make_engine(args.database)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.database}{'&' if '?' in args.database else '?'}options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for rel, body in {"segments/everyone.yaml": "segment: everyone\nconditions: []\n",
                              "templates/hello.mjml": MJML, "journeys/bench.yaml": JOURNEY}.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_text(body)
            (root / "reach.toml").write_text(f'secret_key = "bench-{secrets.token_hex(8)}"\n'
                                             f'database_url = "{url}"\n')
            cfg = load_settings(root)
            project = load_project(cfg)
            assert project.ok, project.diagnostics
            plan = compile_journey(project, "bench")
            engine = connect(url)
            t0 = clock.parse_instant("2026-03-02T10:00:00+00:00")
            with engine.begin() as conn:
                for lo in range(0, args.contacts, 10_000):
                    conn.execute(insert(__import__("reach.db.schema").db.schema.contacts), [
                        {"email": f"c{i}@example.com", "first_name": f"C{i}", "attributes": {},
                         "email_status": "subscribed", "sms_status": "subscribed",
                         "created_at": t0, "updated_at": t0}
                        for i in range(lo, min(args.contacts, lo + 10_000))])
            with engine.connect() as conn:
                # A list in production has statistics (autovacuum analyzes a table soon after
                # a large import); without them PostgreSQL plans a batch's id lookup on
                # contacts as a full scan.
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    text("ANALYZE contacts"))
            floor_before = file_floor(root / "floor", 5000, 3000)
            if not args.no_trace:
                tracemalloc.start()
            rates = []
            for label, at in (("tick 1 (enrol + render + send)", t0),
                              ("tick 2 (update)", t0.replace(day=3))):
                with clock.frozen(at):
                    started = time.perf_counter()
                    stats = tick_journey(cfg, engine, plan, owner="bench",
                                         batch_size=args.batch, processes=args.processes)
                    took = time.perf_counter() - started
                rates.append(stats.advanced / took)
                print(f"{label}: {stats.advanced} contacts advanced, {stats.sent} sent in "
                      f"{took:.1f} s = {stats.advanced / took:,.0f} contacts/s")
            floor_after = file_floor(root / "floor", 5000, 3000)
            floor = (floor_before + floor_after) / 2
            print(f"baseline: this file system created {floor_before:,.0f} (before) and "
                  f"{floor_after:,.0f} (after) outbox files/s in a plain loop; tick 1 / "
                  f"baseline = {rates[0] / floor:.2f}  [target >= 2,000 contacts/s]")
            _, peak = tracemalloc.get_traced_memory()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            helper = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            traced = ("not traced (--no-trace)" if args.no_trace
                      else f"{peak / 2**20:.1f} MiB")
            print(f"peak traced Python memory {traced}; max RSS {rss:.0f} MiB"
                  + (f" (largest helper process {helper:.0f} MiB)" if helper else ""))
            engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
