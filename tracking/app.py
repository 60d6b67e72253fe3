"""The tracking server as a Starlette application (PRODUCT.md §9).

``create_app(settings, engine)`` wires the routes to one :class:`~tracking.http.Context`;
the lifespan starts the batch flusher and, on shutdown (uvicorn's graceful exit on
SIGTERM, after in-flight requests are answered), flushes every queued event.

Routes: ``/o/{token}.gif`` (open pixel, answered by :mod:`tracking.edge` before the router),
``/c/{mtoken}/{utoken}`` (click), ``/u/{token}``
(unsubscribe page and POST, RFC 8058 one-click), ``/v/{token}`` (view in browser),
``POST /events`` (API key), ``POST /webhooks/sms/status``, ``POST /webhooks/email/bounce``
(API key), ``GET /reports/{name}`` (API key), ``GET /health``, ``GET /metrics``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Literal
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from reach.errors import ReachError
from reach.settings import Settings
from tracking import metrics as metrics_mod
from tracking import writer as writer_mod
from tracking.classify import Classifier
from tracking.edge import EdgeMiddleware
from tracking.http import Context, api_key_error, bearer_error, json_error
from tracking.metrics import Metrics
from tracking.queue import BatchStore, EventQueue
from tracking.routes import EngagementRoutes
from tracking.spool import SPOOL_DIR_NAME
from tracking.store import EngagementStore
from tracking.tokens import Signer
from tracking.webhooks import WebhookRoutes

log = logging.getLogger("reach.tracking")

HEALTH_TIMEOUT = 2.0


def twilio_auth_token(sms_transport: str) -> str | None:
    """The auth token of a ``twilio://SID:TOKEN@host`` transport, for callback signatures."""
    if not sms_transport.startswith("twilio://"):
        return None
    return urlsplit(sms_transport).password or None


def create_app(
    settings: Settings,
    engine: Engine,
    *,
    view_renderer: Callable[[int], str | None] | None = None,
    queue_options: dict[str, float] | None = None,
    writer: Literal["auto", "process", "thread"] = "thread",
) -> Starlette:
    """The tracking server for one project; ``engine`` must be migrated (``reach.db.connect``).

    ``view_renderer(message_id)`` returns a message's HTML for ``/v/{token}`` (None: 404).
    ``queue_options`` tunes the batch queue (``batch_size``, ``interval``, ``max_pending``,
    ``shutdown_timeout``); the defaults flush every 100 ms or 500 events. ``writer``:
    ``thread`` writes batches from a thread of this process, ``process`` from a child
    process (:mod:`tracking.writer`), ``auto`` the child unless the database is SQLite.
    """
    if not settings.signing_keys:
        raise ReachError("C601", "secret_key is empty: tracking tokens cannot be verified",
                         hint="set secret_key in reach.toml (reach init writes one) or "
                         "REACH_SECRET_KEY")
    store: BatchStore
    if writer == "process" or (writer == "auto" and writer_mod.can_use(engine)):
        store = writer_mod.ProcessStore(engine)
    else:
        store = EngagementStore(engine)
    spool_dir = settings.project_dir / SPOOL_DIR_NAME
    queue = EventQueue(store, spool_dir, **(queue_options or {}))  # type: ignore[arg-type]
    ctx = Context(
        settings=settings, engine=engine, signer=Signer(settings.signing_keys), queue=queue,
        classifier=Classifier(), metrics=Metrics(), view_renderer=view_renderer,
        twilio_token=twilio_auth_token(settings.sms_transport),
    )
    if not ctx.twilio_token and not settings.api_key:
        log.warning("POST /webhooks/sms/status accepts unauthenticated callbacks: set "
                    "api_key or a twilio:// sms_transport to protect it")
    engaged = EngagementRoutes(ctx)
    hooks = WebhookRoutes(ctx)

    async def health(request: Request) -> Response:
        """Liveness and a quick database check: 200 ok, or 503 with the reason."""
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            with anyio.fail_after(HEALTH_TIMEOUT):
                await anyio.to_thread.run_sync(ping, abandon_on_cancel=True)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__,
                                 "queue_depth": queue.depth}, status_code=503)
        return JSONResponse({"status": "ok", "queue_depth": queue.depth})

    async def metrics(request: Request) -> Response:
        """Prometheus text exposition of this process's counters (``metrics_token``)."""
        refused = bearer_error(settings.metrics_token, request)
        if refused is not None:
            return refused
        spool_waiting = await anyio.to_thread.run_sync(queue.spool.count)
        body = metrics_mod.render(
            ctx.metrics, queue_depth=queue.depth, written=dict(store.written),
            flush_errors=queue.flush_errors, spooled=queue.spool.spooled,
            spool_waiting=spool_waiting, orphans=store.orphans,
        )
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def report(request: Request) -> Response:
        """The HTML report of one campaign or journey (API key: header X-Reach-Key)."""
        refused = api_key_error(settings, request)
        if refused is not None:
            return refused
        from reports.html import report_page

        name = request.path_params["name"]
        try:
            page = await anyio.to_thread.run_sync(report_page, engine, name)
        except ReachError as exc:
            return json_error(404, exc.code, exc.message)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await queue.start()
        try:
            yield
        finally:
            await queue.close()

    routes = [
        Route("/c/{mtoken}/{utoken}", engaged.click, methods=["GET", "HEAD"]),
        Route("/u/{token}", engaged.unsubscribe_page, methods=["GET", "HEAD"]),
        Route("/u/{token}", engaged.unsubscribe, methods=["POST"]),
        Route("/v/{token}", engaged.view, methods=["GET", "HEAD"]),
        Route("/events", hooks.events, methods=["POST"]),
        Route("/webhooks/sms/status", hooks.sms_status, methods=["POST"]),
        Route("/webhooks/email/bounce", hooks.email_bounce, methods=["POST"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/reports/{name}", report, methods=["GET"]),
    ]
    app = TrackingApp(routes=routes, lifespan=lifespan)
    app.state.tracking = ctx
    return app


class TrackingApp(Starlette):
    """Starlette with :class:`EdgeMiddleware` outside its own middleware stack, so the
    pixel skips exception handling and routing (see :mod:`tracking.edge`)."""

    def build_middleware_stack(self):  # type: ignore[no-untyped-def]
        ctx: Context = self.state.tracking
        return EdgeMiddleware(super().build_middleware_stack(), ctx.metrics, ctx.signer,
                              ctx.queue)
