"""A minimal SMTP sink for throughput benchmarks, and the "raw pipe" benchmark (issue 3, a).

    python benchmarks/smtp_sink.py --port 2525            # accept and discard until Ctrl-C
    python benchmarks/smtp_sink.py --bench --count 20000  # start a sink, push 40 KB messages

aiosmtpd tops out near 800 msg/s, so it must not be the sink of a throughput benchmark. This
server does only what a client needs: a greeting, EHLO (PIPELINING, SIZE, 8BITMIME), MAIL,
RCPT, DATA up to the terminating ``CRLF.CRLF``, RSET, NOOP, QUIT. It parses buffers, not
lines, so pipelined commands and large bodies cost little; message bodies are discarded.
``--bench`` runs the sink in its own process and pushes pre-built messages through
``campaigns.channels.smtp.SmtpMessenger`` (the same pool Reach uses), printing msg/s and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import signal
import sys
import time
from pathlib import Path

_EHLO = (b"250-sink\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n250-8BITMIME\r\n"
         b"250 SMTPUTF8\r\n")


class SinkProtocol(asyncio.Protocol):
    """One client connection: a command state machine over a byte buffer."""

    accepted = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = bytearray()
        self.in_data = False
        self.transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        replies: list[bytes] = []
        while buffer:
            if self.in_data:
                # The end marker may straddle two reads: search from 4 bytes back.
                end = buffer.find(b"\r\n.\r\n")
                if end < 0:
                    # Keep only a tail that could begin the marker; drop the body bytes.
                    del buffer[:-4]
                    break
                del buffer[:end + 5]
                self.in_data = False
                SinkProtocol.accepted += 1
                replies.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            eol = buffer.find(b"\r\n")
            if eol < 0:
                break
            verb = bytes(buffer[:4]).upper()
            del buffer[:eol + 2]
            if verb == b"DATA":
                self.in_data = True
                # A body may start with ".\r\n" (empty message): let the marker search see CRLF.
                buffer[:0] = b"\r\n"
                replies.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb in (b"EHLO", b"HELO"):
                replies.append(_EHLO if verb == b"EHLO" else b"250 sink\r\n")
            elif verb == b"QUIT":
                replies.append(b"221 Bye\r\n")
                self.transport.write(b"".join(replies))
                self.transport.close()
                return
            else:  # MAIL, RCPT, RSET, NOOP and anything else: agree
                replies.append(b"250 Ok\r\n")
        if replies:
            self.transport.write(b"".join(replies))


async def serve(host: str, port: int, ready: multiprocessing.synchronize.Event | None = None,
                ) -> None:
    """Run the sink until cancelled or SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, host, port, backlog=1024)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    if ready is not None:
        ready.set()
    started, cpu = time.perf_counter(), time.process_time()
    async with server:
        await stop
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    count = SinkProtocol.accepted
    print(f"sink: {count} messages in {elapsed:.1f} s ({count / max(elapsed, 1e-9):,.0f} msg/s, "
          f"{cpu / max(count, 1) * 1000:.3f} ms CPU/msg)", flush=True)


def run_sink(host: str, port: int, ready: multiprocessing.synchronize.Event | None = None
             ) -> None:
    """Process entry point: uvloop when installed."""
    try:
        import uvloop

        uvloop.run(serve(host, port, ready))
    except ImportError:
        asyncio.run(serve(host, port, ready))


def build_message(index: int, size: int) -> bytes:
    """A realistic ~``size``-byte multipart message with CRLF lines (base64 HTML part)."""
    import base64

    html = (b"<p>Hello reader, here is this week's news with a link "
            b"<a href=\"https://t.acme.test/c/abc\">read more</a>.</p>\n") * (size // 160)
    text = b"Hello reader, here is this week's news.\r\n" * (size // 200)
    b64 = base64.encodebytes(html).replace(b"\n", b"\r\n")
    return (
        b"From: News <news@acme.test>\r\nTo: <user%d@example.test>\r\n" % index
        + b"Subject: Weekly news\r\nMessage-ID: <%d@acme.test>\r\n" % index
        + b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n"
        + b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text
        + b"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64"
        + b"\r\n\r\n" + b64 + b"--b--\r\n"
    )


async def bench(port: int, count: int, size: int, pool: int, concurrency: int) -> dict[str, float]:
    """Push ``count`` pre-built messages through the SMTP messenger's pool."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from campaigns.channels.base import OutgoingMessage
    from campaigns.channels.smtp import SmtpMessenger, SmtpOptions

    messages = [OutgoingMessage(i, "email", f"user{i}@example.test", "bounces@acme.test",
                                raw=build_message(i, size)) for i in range(min(count, 1000))]
    messenger = SmtpMessenger(SmtpOptions(host="127.0.0.1", port=port, starttls=False,
                                          pool=pool, helo="bench"))
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await messenger.push(messages[i % len(messages)])

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await messenger.close()
    return {"messages": count, "bytes": len(messages[0].raw), "seconds": wall,
            "msg_per_s": count / wall, "cpu_ms_per_msg": cpu / count * 1000,
            "connections": messenger.connections_opened}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--bench", action="store_true", help="start a sink and push to it")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--size", type=int, default=40_000, help="approximate message bytes")
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-uvloop", action="store_true", help="client on stock asyncio")
    args = parser.parse_args()
    if not args.bench:
        run_sink(args.host, args.port)
        return
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=run_sink, args=(args.host, args.port, ready))
    sink.start()
    try:
        if not ready.wait(10):
            raise SystemExit("the sink did not start")
        coro = bench(args.port, args.count, args.size, args.pool, args.concurrency)
        try:
            import uvloop
        except ImportError:
            args.no_uvloop = True
        result = asyncio.run(coro) if args.no_uvloop else uvloop.run(coro)
    finally:
        os.kill(sink.pid, signal.SIGTERM)
        sink.join(10)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"raw pipe: {result['messages']:,} x {result['bytes']:,} B through pool={args.pool} "
          f"(concurrency {args.concurrency}, {'asyncio' if args.no_uvloop else 'uvloop'}): "
          f"{result['msg_per_s']:,.0f} msg/s, {result['cpu_ms_per_msg']:.3f} ms CPU/msg "
          f"(client), {result['connections']} connections, peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
