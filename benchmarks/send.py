"""Send throughput: (a) the raw pipe vs (b) Reach's full path, side by side in one run.

(a) pre-rendered messages pushed through the SMTP messenger's pool to a sink;
(b) the audience read from PostgreSQL in keyset batches → Jinja on the compiled ~300-line
MJML newsletter → tracked links → MIME → ledger claim/mark → the same pool and sink.
Prints messages/s, the ratio b/a, CPU per message and peak memory.

    python benchmarks/send.py --contacts 100000 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# benchmarks/ is appended, not prepended: benchmarks/tracking.py must not shadow `tracking`.
sys.path.append(str(ROOT / "benchmarks"))

from smtp_sink import bench as raw_pipe  # noqa: E402
from smtp_sink import run_sink  # noqa: E402

CAMPAIGN = """\
campaign: bench
audience:
  conditions:
    - {attribute: email, exists: true}
channel: email
email:
  from: "Acme <news@acme.test>"
  subject: "{{ contact.first_name | default('Hello') }}, this week at Acme"
  preheader: "News, offers and a story"
  template: templates/bench.mjml
"""


def make_project(url: str, port: int) -> Path:
    from reach.scaffold import write_project

    root = write_project(Path(tempfile.mkdtemp(prefix="reach-bench-")) / "p", contacts=10)
    shutil.copy(ROOT / "templating" / "samples" / "newsletter.mjml",
                root / "templates" / "bench.mjml")
    (root / "campaigns" / "bench.yaml").write_text(CAMPAIGN)
    os.environ["REACH_DATABASE_URL"] = url
    os.environ["REACH_EMAIL_TRANSPORT"] = f"smtp://127.0.0.1:{port}?pool=4"
    os.environ["REACH_BATCH_SIZE"] = "2000"
    return root


def generate_contacts(url: str, n: int) -> None:
    from sqlalchemy import text

    from reach.db import connect

    engine = connect(url)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO contacts (email, first_name, last_name, country, timezone, attributes,
                                  email_status, sms_status, created_at, updated_at)
            SELECT 'user' || g || '@example.test', 'Name' || (g % 997), 'Last' || (g % 113),
                   (ARRAY['DE','AT','CH','GB','US'])[1 + g % 5], 'Europe/Berlin',
                   jsonb_build_object('plan', CASE WHEN g % 3 = 0 THEN 'pro' ELSE 'free' END,
                                      'score', g % 100, 'vip', g % 10 = 0),
                   'subscribed', 'subscribed', now(), now()
            FROM generate_series(1, :n) AS g"""), {"n": n})


def sender(project: str, ranges: list[tuple[int, int]]) -> None:
    from campaigns.plan import compile_campaign
    from campaigns.run import send_range
    from reach.db import connect
    from reach.project import load_project
    from reach.settings import load_settings

    settings = load_settings(project)
    engine = connect(settings.resolved_database_url)
    plan = compile_campaign(load_project(settings), "bench")
    for lo, hi in ranges:
        send_range(settings, engine, plan, lo, hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--raw", type=int, default=20_000, help="messages for the raw pipe")
    parser.add_argument("--url", default=os.environ.get(
        "REACH_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    from sqlalchemy import text

    from reach.db.engine import dispose_all, make_engine

    schema = "bench_send"
    admin = make_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
    url = f"{args.url}?options=-csearch_path%3D{schema}"

    port = 20000 + os.getpid() % 20000
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=run_sink, args=("127.0.0.1", port, ready), daemon=True)
    sink.start()
    ready.wait(10)
    try:
        project = make_project(url, port)
        t0 = time.perf_counter()
        generate_contacts(url, args.contacts)
        print(f"generated {args.contacts:,} contacts in {time.perf_counter() - t0:.1f} s")

        from audiences.audience import contact_dict
        from campaigns.plan import compile_campaign
        from campaigns.run import batch_ranges, start
        from campaigns.sender import Renderers, render_row
        from reach.db import connect
        from reach.project import load_project
        from reach.settings import load_settings

        settings = load_settings(project)
        engine = connect(settings.resolved_database_url)
        plan = compile_campaign(load_project(settings), "bench")
        sample = render_row(Renderers(settings, plan), plan,
                            {"id": 1, "source_kind": "campaign", "channel": "email",
                             "variant": "main", "step_id": None},
                            contact_dict({"id": 1, "email": "user1@example.test",
                                          "first_name": "Ada", "country": "DE",
                                          "attributes": {"plan": "pro", "score": 7}}))
        size = len(sample.raw)

        # (a) the raw pipe, messages of the same size.
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        a = runner(raw_pipe(port, args.raw, size, 4, 16))
        # (b) the full path.
        t0 = time.perf_counter()
        summary = start(settings, engine, plan)
        ranges = batch_ranges(engine, plan, settings.batch_size)
        enqueue_s = time.perf_counter() - t0
        dispose_all()
        chunks = [ranges[i::args.processes] for i in range(args.processes)]
        ctx = multiprocessing.get_context("fork")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        procs = [ctx.Process(target=sender, args=(str(project), c)) for c in chunks]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        engine = connect(settings.resolved_database_url)
        with engine.connect() as conn:
            sent = conn.execute(text("SELECT count(*) FROM messages WHERE status='sent'")).scalar()
        b_rate = sent / wall
        print(f"message size: {size / 1024:.1f} KB (the ~300-line MJML newsletter)")
        print(f"(a) raw pipe:  {a['msg_per_s']:8,.0f} msg/s  "
              f"{a['cpu_ms_per_msg']:.3f} ms CPU/msg (1 process)")
        print(f"(b) full path: {b_rate:8,.0f} msg/s  {cpu / max(sent, 1) * 1000:.3f} ms CPU/msg "
              f"({args.processes} processes, {sent:,} sent, enqueue {summary.enqueued:,} "
              f"in {enqueue_s:.1f} s)")
        print(f"ratio b/a: {b_rate / a['msg_per_s']:.2f}   target: b ≥ 1,500 msg/s and ≥ 0.7")
        print(f"peak memory per sender process: {after.ru_maxrss / 1024:.0f} MB "
              f"for {args.contacts:,} contacts")
    finally:
        sink.terminate()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


if __name__ == "__main__":
    main()
