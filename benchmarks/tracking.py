"""Benchmark: the bare Starlette pixel route vs. the full tracking pixel on PostgreSQL.

    .venv/bin/python benchmarks/tracking.py [--duration 10] [--connections 64] [--workers 1]

Starts (a) a bare Starlette app answering the GIF and (b) the full tracking server (token
verified, open classified, queued, persisted to PostgreSQL in a schema of its own), each
under uvicorn (uvloop + httptools, access log off) in a subprocess, loads each with ``wrk``
(installed with apt-get when missing and running as root; an async httpx client otherwise)
for ``--duration`` seconds on 127.0.0.1, and prints requests/s and p99 side by side, the
ratio, and whether the events persisted equal the 200 answers the server counted. The full
server is stopped with SIGTERM, as in production, before counting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET = "benchmark-secret"
MESSAGES = 200


def bare_app():  # type: ignore[no-untyped-def]
    """The baseline: a Starlette route that returns the pixel and does nothing else."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from tracking.metrics import PIXEL

    headers = {"cache-control": "no-store, no-cache, must-revalidate, max-age=0"}

    async def pixel(request):  # type: ignore[no-untyped-def]
        return Response(PIXEL, media_type="image/gif", headers=headers)

    return Starlette(routes=[Route("/o/{token}.gif", pixel, methods=["GET", "HEAD"])])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def _wrk() -> str | None:
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True,
                   timeout=600, check=False)
    return shutil.which("wrk")


def _load_wrk(wrk: str, port: int, paths: list[str], args: argparse.Namespace,
              workdir: Path) -> dict[str, float]:
    script = workdir / "paths.lua"
    lua_paths = ",".join(f'"{p}"' for p in paths)
    script.write_text(
        f"local paths = {{{lua_paths}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        "  return wrk.format('GET', paths[i], {['User-Agent'] = 'Mozilla/5.0 (bench)'})\nend\n"
    )
    out = subprocess.run(
        [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else -1,
            "requests": total, "non_2xx": int(bad.group(1)) if bad else 0}


def _load_httpx(port: int, paths: list[str], args: argparse.Namespace) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0

    async def worker(client: httpx.AsyncClient, stop: float, offset: int) -> None:
        nonlocal errors
        i = offset
        while time.monotonic() < stop:
            start = time.perf_counter()
            response = await client.get(paths[i % len(paths)])
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200
            i += 1

    async def run() -> float:
        limits = httpx.Limits(max_connections=args.connections)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as c:
            began = time.monotonic()
            stop = began + args.duration
            await asyncio.gather(*(worker(c, stop, n) for n in range(args.connections)))
            return time.monotonic() - began

    elapsed = asyncio.run(run())
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p99_ms": latencies[int(len(latencies) * .99)] * 1e3,
            "requests": len(latencies), "non_2xx": errors}


def _server_200s(port: int) -> int:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    match = re.search(r'reach_tracking_requests_total\{route="/o",status="200"\} (\d+)', text)
    return int(match.group(1)) if match else 0


def _seed(url: str) -> list[int]:
    from sqlalchemy import insert

    from reach.db import connect
    from reach.db.schema import contacts, messages

    engine = connect(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        contact = conn.execute(insert(contacts).values(
            email="bench@example.com", attributes={}, email_status="subscribed",
            sms_status="subscribed", created_at=now, updated_at=now)).inserted_primary_key[0]
        ids = [conn.execute(insert(messages).values(
            idempotency_key=f"bench:{n}", source_kind="campaign", source_name="bench",
            source_version="v1", contact_id=contact, channel="email", status="sent",
            attempts=1, created_at=now, sent_at=now - timedelta(hours=1),
        )).inserted_primary_key[0] for n in range(MESSAGES)]
    engine.dispose()
    return ids


def _count(url: str) -> int:
    from sqlalchemy import func, select

    from reach.db import make_engine
    from reach.db.schema import engagements

    engine = make_engine(url)
    with engine.connect() as conn:
        value = conn.execute(select(func.count()).select_from(engagements)).scalar_one()
    engine.dispose()
    return value


def main() -> None:
    """Run both servers, load them, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pg-url", default=os.environ.get("REACH_TEST_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from tracking.server import uvicorn_options

    if args.serve_bare:
        import uvicorn

        options = uvicorn_options("127.0.0.1", args.serve_bare, args.workers)
        if args.workers > 1:
            uvicorn.run("benchmarks.tracking:bare_app", factory=True, **options)
        else:
            uvicorn.run(bare_app(), **options)
        return

    from sqlalchemy import text

    from reach.db import make_engine
    from tracking.tokens import Signer

    schema = f"bench_{secrets.token_hex(4)}"
    admin = make_engine(args.pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.pg_url else "?"
    url = f"{args.pg_url}{sep}options=-csearch_path%3D{schema}"
    wrk = _wrk()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        ids = _seed(url)
        signer = Signer([SECRET])
        paths = [f"/o/{signer.message_token(mid)}.gif" for mid in ids]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            results = {}
            for name in ("bare", "full"):
                port = _free_port()
                if name == "bare":
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-bare",
                           str(port), "--workers", str(args.workers)]
                    proc_env = env
                else:
                    cmd = [sys.executable, "-m", "tracking.server", "--project", tmp,
                           "--port", str(port), "--workers", str(args.workers)]
                    proc_env = {**env, "REACH_DATABASE_URL": url, "REACH_SECRET_KEY": SECRET,
                                "REACH_API_KEY": "bench"}
                proc = subprocess.Popen(cmd, env=proc_env, cwd=ROOT)
                try:
                    _wait_up(port, proc)
                    time.sleep(0.5)
                    load = (_load_wrk(wrk, port, paths, args, work) if wrk
                            else _load_httpx(port, paths, args))
                    if name == "full":
                        time.sleep(0.5)  # replies in flight when wrk stopped
                        load["server_200"] = _server_200s(port) if args.workers == 1 else -1
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=120)
                results[name] = load
        persisted = _count(url)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    bare, full = results["bare"], results["full"]
    tool = "wrk" if wrk else "httpx"
    print(f"\ntracking pixel benchmark: {args.duration}s each, {args.connections} connections, "
          f"{args.workers} worker(s), load by {tool}, uvloop+httptools")
    print(f"{'':24}{'bare route':>14}{'full route':>14}")
    print(f"{'requests/s':24}{bare['rps']:>14,.0f}{full['rps']:>14,.0f}")
    print(f"{'p99 latency (ms)':24}{bare['p99_ms']:>14.2f}{full['p99_ms']:>14.2f}")
    print(f"{'requests (client)':24}{bare['requests']:>14,}{full['requests']:>14,}")
    print(f"{'non-2xx':24}{bare['non_2xx']:>14,}{full['non_2xx']:>14,}")
    print(f"ratio full/bare: {full['rps'] / bare['rps']:.2f}")
    answered = full.get("server_200", -1)
    if answered >= 0:
        print(f"persisted opens: {persisted:,}; 200 answers counted by the server: "
              f"{answered:,} -> {'OK, none lost' if persisted == answered else 'MISMATCH'}")
    else:
        print(f"persisted opens: {persisted:,}; client-counted answers: {full['requests']:,} "
              "(with several workers each keeps its own counters; wrk does not count replies "
              "in flight when it stops, so persisted may exceed it by up to --connections)")


if __name__ == "__main__":
    main()
