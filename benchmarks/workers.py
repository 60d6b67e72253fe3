"""Throughput of one campaign shared by 1, 2 and 4 Prefect process workers (docs/scaling.md).

    .venv/bin/python benchmarks/workers.py --contacts 20000 --workers 1 2 4

Starts a Prefect server (own PREFECT_HOME, SQLite), the SMTP sink of ``smtp_sink.py`` in
its own process, applies prefect.yaml, then per worker count: a fresh Reach database with
the contacts, N ``prefect worker start`` processes, one ``campaign-run`` with 2×N batch runs.
Prints wall time from trigger to completion and the send rate measured on the ledger
(first to last ``sent_at``), in messages per second.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _measure(cluster, root: Path, db_url: str, sink_port: int, workers: int,
             batch_size: int) -> dict[str, float]:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from sqlalchemy import func, select

    from reach.db import connect
    from reach.db.schema import messages
    from tests.scale.cluster import stop

    env = {"REACH_DATABASE_URL": db_url, "REACH_BATCH_SIZE": str(batch_size),
           "REACH_EMAIL_TRANSPORT": f"smtp://127.0.0.1:{sink_port}?pool=8"}
    procs = [cluster.worker("reach", env, limit=3, name=f"bench-{workers}-{i}")
             for i in range(workers)]
    try:
        time.sleep(3)  # let the workers register and poll
        with temporary_settings({PREFECT_API_URL: cluster.api_url}), \
                get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name("campaign-run/campaign-run")
            started = time.monotonic()
            run = client.create_flow_run_from_deployment(deployment.id, parameters={
                "project_dir": str(root), "campaign": "autumn-newsletter",
                "batch_runs": 2 * workers})
            while not (state := client.read_flow_run(run.id).state) or not state.is_final():
                time.sleep(0.5)
            wall = time.monotonic() - started
    finally:
        for proc in procs:
            stop(proc)
    with connect(db_url).connect() as conn:
        sent, first, last = conn.execute(select(
            func.count(), func.min(messages.c.sent_at), func.max(messages.c.sent_at)).where(
            messages.c.status == "sent")).one()
    span = (last - first).total_seconds() if sent else 0.0
    return {"workers": workers, "sent": sent, "state": state.type.value, "wall_s": wall,
            "wall_rate": sent / wall, "send_rate": sent / span if span else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    from audiences.contacts import import_contacts
    from benchmarks.smtp_sink import run_sink
    from reach.db import connect
    from reach.scaffold import write_project
    from tests.channels.servers import free_port
    from tests.scale.cluster import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="reach-bench-workers-"))
    (tmp / "home").mkdir()
    sink_port = free_port()
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=run_sink, args=("127.0.0.1", sink_port, ready),
                                   daemon=True)
    sink.start()
    ready.wait(30)
    cluster = Cluster(tmp / "home")
    try:
        cluster.start()
        cluster.run("prefect", "work-pool", "create", "reach", "--type", "process")
        done = cluster.run("prefect", "--no-prompt", "deploy", "--all", cwd=ROOT,
                           env={"REACH_PROJECT_DIR": str(tmp)})
        if done.returncode:
            raise SystemExit(done.stdout + done.stderr)
        root = write_project(tmp / "acme", contacts=args.contacts)
        print("| workers | messages | wall (trigger → done) | msg/s (wall) | msg/s (sending) |")
        print("|---:|---:|---:|---:|---:|")
        for n in args.workers:
            db_url = f"sqlite:///{tmp / f'reach-{n}.db'}"
            import_contacts(connect(db_url), root / "contacts.csv")
            r = _measure(cluster, root, db_url, sink_port, n, args.batch_size)
            print(f"| {n} | {r['sent']} | {r['wall_s']:.1f} s | {r['wall_rate']:.0f} | "
                  f"{r['send_rate']:.0f} |", flush=True)
    finally:
        cluster.close()
        sink.terminate()


if __name__ == "__main__":
    main()
