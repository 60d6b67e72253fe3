"""The routes people's mail clients hit: click, unsubscribe, view in browser.

(The open pixel is answered before Starlette, in :mod:`tracking.edge`.) The click route
does no I/O: it verifies both tokens (one HMAC each), classifies the request and queues the
click. The unsubscribe route writes at once, because the page
it answers with promises the change is made.
"""

from __future__ import annotations

import logging

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from reach import clock
from tracking import ledger, pages
from tracking.classify import HONEYPOT_URL, clean_user_agent, request_reason
from tracking.http import MAX_FORM_BODY, BodyTooLarge, Context, client_ip, read_body
from tracking.store import burst_op, engagement_op
from tracking.tokens import BadToken

log = logging.getLogger("reach.tracking")

_NO_STORE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}
_PAGE_HEADERS = {**_NO_STORE, "x-frame-options": "DENY",
                 "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                 "form-action 'self'; frame-ancestors 'none'"}


def _bad_link() -> HTMLResponse:
    return HTMLResponse(
        pages.error_page("This link is not valid",
                         "The link may have been cut short or changed. Please use the link "
                         "exactly as it appears in the message."),
        status_code=400, headers=_PAGE_HEADERS)


class EngagementRoutes:
    """Handlers bound to the server's :class:`Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.signer = ctx.signer
        self.queue = ctx.queue

    async def click(self, request: Request) -> Response:
        """GET|HEAD /c/{mtoken}/{utoken}: queue the click, 302 to the sealed URL."""
        try:
            message_id = self.signer.verify_message(request.path_params["mtoken"])
            url = self.signer.verify_url(request.path_params["utoken"])
        except BadToken:
            return _bad_link()
        if not url.isprintable():  # never let a sealed URL split the Location header
            return _bad_link()
        now = clock.now()
        user_agent = request.headers.get("user-agent")
        ua, ip = clean_user_agent(user_agent), client_ip(request)
        if url == HONEYPOT_URL:
            self.queue.put(engagement_op(message_id, "click", now, url=url, reason="honeypot",
                                         user_agent=ua, ip=ip))
            return Response(status_code=204, headers=_NO_STORE)
        reason = request_reason(request.method, user_agent)
        burst, first_of_burst = self.ctx.classifier.click_reason(message_id, url, now)
        if first_of_burst:
            since = self.ctx.classifier.burst_start(message_id) or now
            self.queue.put(burst_op(message_id, since))
        self.queue.put(engagement_op(message_id, "click", now, url=url, reason=reason or burst,
                                     user_agent=ua, ip=ip))
        return RedirectResponse(url, status_code=302, headers=_NO_STORE)

    async def unsubscribe_page(self, request: Request) -> Response:
        """GET /u/{token}: which address, and a button to confirm."""
        try:
            message_id = self.signer.verify_message(request.path_params["token"])
        except BadToken:
            return _bad_link()
        try:
            who = await anyio.to_thread.run_sync(ledger.find_recipient, self.ctx.engine,
                                                 message_id)
        except Exception:
            log.exception("unsubscribe page: database error")
            return _unavailable()
        if who is None:
            return _not_found()
        return HTMLResponse(pages.unsubscribe_form(who.address, who.channel, request.url.path),
                            headers=_PAGE_HEADERS)

    async def unsubscribe(self, request: Request) -> Response:
        """POST /u/{token}: unsubscribe now; RFC 8058 one-click bodies answer in plain text."""
        try:
            message_id = self.signer.verify_message(request.path_params["token"])
        except BadToken:
            return _bad_link()
        try:
            await read_body(request, MAX_FORM_BODY)
            form = await request.form(max_files=0, max_fields=20)
        except BodyTooLarge:
            return PlainTextResponse("request body too large\n", status_code=413)
        except Exception:  # a malformed multipart body: still a POST to our own URL
            form = None
        one_click = form is not None and form.get("List-Unsubscribe") == "One-Click"
        try:
            who, changed = await anyio.to_thread.run_sync(
                lambda: ledger.unsubscribe(
                    self.ctx.engine, message_id, one_click=one_click,
                    user_agent=clean_user_agent(request.headers.get("user-agent")),
                    ip=client_ip(request)))
        except Exception:
            log.exception("unsubscribe: database error")
            if one_click:  # the mailbox provider retries on 5xx
                return PlainTextResponse("temporarily unavailable\n", status_code=503)
            return _unavailable()
        if who is None:
            if one_click:
                return PlainTextResponse("unknown message\n", status_code=404)
            return _not_found()
        if one_click:
            return PlainTextResponse("unsubscribed\n", headers=_NO_STORE)
        return HTMLResponse(pages.unsubscribed(who.address, who.channel, changed),
                            headers=_PAGE_HEADERS)

    async def view(self, request: Request) -> Response:
        """GET /v/{token}: the message as a web page, rendered by ``view_renderer``."""
        try:
            message_id = self.signer.verify_message(request.path_params["token"])
        except BadToken:
            return _bad_link()
        renderer = self.ctx.view_renderer
        html = None
        if renderer is not None:
            try:
                html = await anyio.to_thread.run_sync(renderer, message_id)
            except Exception:
                log.exception("view in browser: renderer failed for message %s", message_id)
                return _unavailable()
        if html is None:
            return HTMLResponse(pages.view_page_missing(), status_code=404, headers=_NO_STORE)
        # The mail's own HTML: may load its images, must not be framed or run scripts.
        return HTMLResponse(html, headers={
            **_NO_STORE, "x-frame-options": "DENY",
            "content-security-policy": "script-src 'none'; frame-ancestors 'none'"})


def _not_found() -> HTMLResponse:
    return HTMLResponse(
        pages.error_page("Message not found",
                         "We could not find the message this link belongs to."),
        status_code=404, headers=_PAGE_HEADERS)


def _unavailable() -> HTMLResponse:
    return HTMLResponse(
        pages.error_page("Please try again",
                         "We could not complete this right now. Please try again in a minute."),
        status_code=503, headers={**_PAGE_HEADERS, "retry-after": "60"})
