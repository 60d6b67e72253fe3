"""Claimed ledger rows → rendered messages → messenger → marked rows.

The per-contact path does only what must be per contact: Jinja on the compiled template,
one message token, the MIME fill. Templates are loaded once per variant per batch. Rows are
claimed in small chunks so that a crash leaves at most two chunks in ``sending`` (the one
being pushed and the next, claimed and rendered meanwhile); the in-flight journal tells
which of them left, the rest are reported ``unknown``, never resent blindly.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Engine, select

from audiences.audience import contacts_from
from audiences.consent import set_status
from campaigns import ledger
from campaigns.channels.base import (
    Messenger,
    OutcomeUnknownError,
    OutgoingMessage,
    PermanentSendError,
    SendError,
)
from campaigns.channels.errors import ConfigurationSendError
from campaigns.journal import Journal
from reach import clock
from reach.clock import as_utc
from reach.db.bulk import among
from reach.db.schema import BOUNCED, UNSUBSCRIBED, contacts
from reach.settings import Settings

T = TypeVar("T")
CHUNK = 100  # rows claimed at once: a crash can leave two such chunks in 'sending'
LEASED_CHUNK = 250  # rows rendered and marked at once when they were queued claimed


def load_contacts(conn: Any, ids: list[int]) -> dict[int, Any]:
    """The contacts of a chunk of ledger rows, by id, as :class:`audiences.audience.Contact`."""
    result = conn.execute(select(contacts).where(among(conn, contacts.c.id, ids)))
    people = contacts_from(tuple(result.keys()), result.fetchall())
    return {person["id"]: person for person in people}


class Renderers:
    """Templates of a plan, loaded once per (step, variant) per batch (MJML compiled once and
    cached by content hash, so this is cheap even across batches).

    ``plan.variant_for(row)`` gives what a ledger row is rendered with: an object with
    ``channel, from_addr, subject, preheader, template, text_template, body, reply_to``.
    Campaigns and journeys both implement it.
    """

    def __init__(self, settings: Settings, plan: Any) -> None:
        self.settings, self.plan = settings, plan
        self._cache: dict[tuple[str | None, str | None], Any] = {}

    def get(self, row: dict[str, Any]) -> Any:
        key = (row.get("step_id"), row.get("variant"))
        if key not in self._cache:
            variant = self.plan.variant_for(row)
            root = self.settings.project_dir
            if variant.channel == "email":
                from templating.email import EmailTemplate

                self._cache[key] = EmailTemplate.load(
                    root / variant.template, name=variant.template, subject=variant.subject,
                    from_addr=variant.from_addr, preheader=variant.preheader,
                    settings=self.settings, reply_to=variant.reply_to,
                    text_path=root / variant.text_template if variant.text_template else None)
            else:
                from templating.sms import SmsTemplate

                self._cache[key] = SmsTemplate.load(
                    name=variant.template or "inline", body=variant.body,
                    path=root / variant.template if variant.template else None,
                    settings=self.settings)
        return self._cache[key]


def _context(plan: Any, row: dict[str, Any]) -> dict[str, Any]:
    kind = row["source_kind"]
    return {"campaign": plan.name if kind == "campaign" else None,
            "journey": plan.name if kind == "journey" else None,
            "step": row.get("step_id"), "variant": row.get("variant")}


def render_row(renderers: Renderers, plan: Any, row: dict[str, Any],
               contact: dict[str, Any]) -> OutgoingMessage:
    """Render one ledger row for its contact."""
    variant = plan.variant_for(row)
    tpl = renderers.get(row)
    if row.get("source_kind") == "test":
        # A test send: personalised for a real contact, delivered to the tester.
        contact = {**contact, ("email" if row["channel"] == "email" else "phone"):
                   row["to_address"]}
    if row["channel"] == "email":
        out = tpl.render(contact, message_id=row["id"], context=_context(plan, row))
        return OutgoingMessage(ledger_id=row["id"], channel="email", to=contact["email"],
                               sender=variant.from_addr, raw=out.raw,
                               headers={"Subject": out.subject}, wire_clean=out.wire_clean)
    out = tpl.render(contact, context=_context(plan, row))
    return OutgoingMessage(ledger_id=row["id"], channel="sms", to=contact["phone"],
                           sender=variant.from_addr, body=out.body,
                           headers={"encoding": out.measure.encoding,
                                    "segments": str(out.measure.segments)})


async def push_all(messenger: Messenger, items: list[tuple[dict[str, Any], Any]],
                    concurrency: int, per_second: float | None,
                    journal: Journal | None = None) -> list[tuple[str, Any]]:
    sem = asyncio.Semaphore(concurrency)
    # A messenger that knows the exact moment a message's bytes leave (SMTP: the body after
    # DATA) journals the attempt itself; for the others it is journalled before push.
    own_departure = journal is not None and getattr(messenger, "journals_departure", False)
    interval = 1.0 / per_second if per_second else 0.0
    push_many = getattr(messenger, "push_many", None)
    if push_many is not None and not interval:
        return await _push_chunk(messenger, push_many, items, journal)
    start = time.monotonic()

    async def one(i: int, msg: Any) -> tuple[str, Any]:
        if isinstance(msg, Exception):
            return "render_error", msg
        if interval:
            # A throttle: message i may not leave before start + i * interval.
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        async with sem:
            if journal is not None and not own_departure:
                journal.attempt(msg.ledger_id)
            try:
                result = await messenger.push(msg)
            except SendError as exc:
                if journal is not None and not isinstance(exc, OutcomeUnknownError):
                    journal.outcome(msg.ledger_id, delivered=False)
                return "error", exc
            if journal is not None:
                journal.outcome(msg.ledger_id, delivered=True)
            return "sent", result

    results = await asyncio.gather(*(one(i, msg) for i, (_, msg) in enumerate(items)))
    await messenger.flush()
    return list(results)


async def _push_chunk(messenger: Messenger, push_many: Callable[..., Any],
                      items: list[tuple[dict[str, Any], Any]],
                      journal: Journal | None) -> list[tuple[str, Any]]:
    """A messenger that writes locally (the outbox) takes a whole chunk in one call."""
    results: list[tuple[str, Any]] = [("render_error", msg) for _, msg in items]
    todo = [(i, msg) for i, (_, msg) in enumerate(items) if not isinstance(msg, Exception)]
    if journal is not None:
        journal.attempt_many([msg.ledger_id for _, msg in todo])
    try:
        sent = await push_many([msg for _, msg in todo])
    except SendError as exc:
        if journal is not None and not isinstance(exc, OutcomeUnknownError):
            journal.outcome_many([msg.ledger_id for _, msg in todo], delivered=False)
        for i, _ in todo:
            results[i] = ("error", exc)
    else:
        if journal is not None:
            journal.outcome_many([msg.ledger_id for _, msg in todo], delivered=True)
        for (i, _), result in zip(todo, sent, strict=True):
            results[i] = ("sent", result)
    await messenger.flush()
    return results


def send_claimed(settings: Settings, engine: Engine, plan: Any, where: ColumnElement[bool], *,
                 owner: str, progress: Callable[[int], None] | None = None,
                 limit: int | None = None, chunk: int = CHUNK) -> dict[str, Any]:
    """Claim, render, send and mark queued rows matching ``where`` until none are left (or
    ``limit`` rows were claimed), ``chunk`` rows per claim."""
    return run_loop(_send_claimed(settings, engine, plan, where, owner, progress, limit,
                                  min(chunk, CHUNK)))


def send_rows(settings: Settings, engine: Engine, plan: Any, rows: list[dict[str, Any]], *,
              owner: str, journal: Journal | None) -> dict[str, Any]:
    """Render, send and mark rows this owner queued already claimed
    (:func:`campaigns.ledger.enqueue_leased`), under the journal that was open when they
    were queued (the caller closes it)."""
    return run_loop(_send_claimed(settings, engine, plan, None, owner, None, None, LEASED_CHUNK,
                                  leased=rows, journal=journal))


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed (it comes with uvicorn[standard]):
    its transports cut the per-message cost of the SMTP conversation."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _send_claimed(settings: Settings, engine: Engine, plan: Any,
                        where: ColumnElement[bool] | None, owner: str,
                        progress: Callable[[int], None] | None,
                        limit: int | None, chunk: int = CHUNK, *,
                        leased: list[dict[str, Any]] | None = None,
                        journal: Journal | None = None) -> dict[str, Any]:
    from campaigns.channels.registry import open_messenger

    counts = {"sent": 0, "failed": 0, "bounced": 0, "retried": 0}
    renderers = Renderers(settings, plan)
    transport = settings.email_transport if plan.channel == "email" else settings.sms_transport
    messenger = open_messenger(plan.channel, transport, settings)
    own_journal = leased is None
    if own_journal:
        journal = open_journal(settings, owner)
    if journal is not None and hasattr(messenger, "journals_departure"):
        messenger.journal = journal  # type: ignore[attr-defined]
    concurrency = int(getattr(messenger, "concurrency", 8))
    per_second = getattr(plan, "throttle_per_second", None)
    done, waited = 0, 0.0
    # One chunk in flight while the next is claimed and rendered: a local messenger (the
    # outbox) writes chunk N in its thread meanwhile. Chunk N is marked, and the journal
    # settled, before chunk N+1 starts to push, so the journal never holds two chunks.
    inflight: tuple[list[tuple[dict[str, Any], Any]], asyncio.Task[Any]] | None = None

    async def settle() -> None:
        nonlocal inflight
        if inflight is None:
            return
        items, task = inflight
        inflight = None
        results = await task
        stop = mark_results(settings, engine, items, results, counts)
        if journal is not None:
            journal.settled()
        if stop is not None:
            # A misconfigured transport (bad password, TLS, sender) fails every message
            # alike: stop now instead of burning the list; nothing was delivered.
            raise stop.to_reach_error()
        if progress:
            progress(len(items))

    try:
        while limit is None or done < limit:
            size = chunk if limit is None else min(chunk, limit - done)
            if leased is not None:
                rows = leased[done:done + size]
                if rows:
                    with engine.connect() as conn:
                        people = load_contacts(conn, [r["contact_id"] for r in rows])
            else:
                with engine.begin() as conn:
                    rows = ledger.claim(conn, owner=owner, limit=size, where=where)
                    people = load_contacts(conn, [r["contact_id"] for r in rows]) if rows else {}
            if not rows:
                if inflight is not None:
                    await settle()  # its retries may be due now: look again
                    continue
                if where is None:
                    break  # retries of leased rows are queued: the next send finds them
                with engine.connect() as conn:
                    wait = _retry_wait(conn, where, settings, waited)
                if wait is None:
                    break
                waited += wait
                await asyncio.sleep(wait)
                continue
            items: list[tuple[dict[str, Any], Any]] = []
            for row in rows:
                try:
                    items.append((row, render_row(renderers, plan, row, people[row["contact_id"]])))
                except Exception as exc:  # a template failing for one contact fails that message
                    items.append((row, exc))
            await settle()
            inflight = (items, asyncio.create_task(
                push_all(messenger, items, concurrency, per_second, journal)))
            await asyncio.sleep(0)  # let it hand the chunk over before the next claim
            done += len(rows)
        await settle()
    finally:
        if inflight is not None:
            # An error elsewhere: let the chunk on its way finish, unmarked (the journal
            # tells the next run what left), rather than abandon a half-written push.
            await asyncio.gather(inflight[1], return_exceptions=True)
        await messenger.close()
        if journal is not None and own_journal:
            journal.close()
    return counts


def open_journal(settings: Settings, owner: str) -> Journal | None:
    """The in-flight journal of this sender; without one (a read-only project folder) a
    crash reports its whole chunk ``unknown`` instead of only what was on the wire."""
    try:
        return Journal(settings.journal_dir, owner)
    except OSError:
        return None


def _retry_wait(conn: Any, where: ColumnElement[bool], settings: Settings,
                waited: float) -> float | None:
    """Seconds to wait for the next retry to come due, or None to stop the run here.

    Retries due within ``retry_wait_seconds`` are sent in this run; later ones are left to
    the next run or tick. With a fixed clock (REACH_NOW) time does not pass, so never wait.
    """
    if os.environ.get("REACH_NOW"):
        return None
    due = as_utc(ledger.next_due(conn, where))
    if due is None:
        return None
    wait = max(0.05, (due - clock.now()).total_seconds())
    if waited + wait > settings.retry_wait_seconds:
        return None
    return wait


def mark_results(settings: Settings, engine: Engine, items: list[tuple[dict[str, Any], Any]],
          results: list[tuple[str, Any]], counts: dict[str, int]) -> Any:
    """Record each outcome in the ledger; returns a configuration error if one stopped us."""
    stop = None
    sent: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for (row, msg), (kind, value) in zip(items, results, strict=True):
            if isinstance(value, ConfigurationSendError):
                ledger.release(conn, [row["id"]])
                stop = value
            elif kind == "sent":
                sent.append({"ledger_id": row["id"], "provider_id": value.provider_id,
                             "segments": value.segments,
                             "subject": msg.headers.get("Subject") if msg.channel == "email"
                             else None})
                counts["sent"] += 1
            elif isinstance(value, OutcomeUnknownError):
                ledger.mark_unknown(conn, row["id"], str(value))
                counts["unknown"] = counts.get("unknown", 0) + 1
            elif kind == "render_error":
                ledger.mark_failed(conn, row["id"], f"render: {value}")
                counts["failed"] += 1
            elif isinstance(value, PermanentSendError):
                ledger.mark_failed(conn, row["id"], f"{value.code or ''} {value}".strip(),
                                   bounced=value.bounce)
                counts["bounced" if value.bounce else "failed"] += 1
                if value.bounce or value.opt_out:
                    # A hard bounce or an opt-out suppresses the address for every campaign.
                    set_status(conn, row["contact_id"], row["channel"],
                               BOUNCED if value.bounce else UNSUBSCRIBED,
                               source="bounce" if value.bounce else "provider_opt_out",
                               reason=str(value)[:500], message_id=row["id"])
            else:
                retried = ledger.mark_retry(conn, row["id"], f"{value.code or ''} {value}".strip(),
                                            attempts=row["attempts"],
                                            max_attempts=settings.max_attempts,
                                            base=settings.retry_base_seconds)
                counts["retried" if retried else "failed"] += 1
        # One executemany for the common case: a whole chunk marked in one round trip.
        ledger.mark_sent_many(conn, sent)
    return stop
