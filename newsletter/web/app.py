"""The application of `newsletter serve`: every public URL the emails point at, the SES
event hook and the editor's stats pages, as one Starlette ASGI app.

    app = create_app(WebContext.create(settings, store))

Routes (by module):
    /o/TOKEN.gif, /c/TOKEN          tracking.py     open pixel (a middleware, before routing), tracked links
    /u/TOKEN                        unsubscribe.py  one-click unsubscribe (RFC 8058) and its page
    /subscribe, /confirm/TOKEN      subscribe.py    double opt-in
    /, /issues/SLUG, /feed.xml      archive.py      the web archive and its Atom feed
    /hooks/ses                      hooks.py        SNS notifications of SES events
    /stats/...                      admin.py        per-issue stats (HTTP basic auth)

Database work never runs on the event loop: endpoints read the request body there and do
the rest in Starlette's threadpool (`run_in_threadpool`), because SQLAlchemy's drivers here
are blocking.  The open pixel does no database work at all on the request path.

Any ASGI server can run the app behind a reverse proxy: see docs/deploy.md and
newsletter/web/asgi.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match

from newsletter.feedback.hits import HitRecorder
from newsletter.web.admin import admin_routes
from newsletter.web.archive import archive_routes
from newsletter.web.context import WebContext
from newsletter.web.deferred import DeferredWork
from newsletter.web.hooks import hook_routes
from newsletter.web.log_lines import web_logger
from newsletter.web.pages import Pages
from newsletter.web.refusals import refuse_unsafe_settings
from newsletter.web.security import FormGuard, RateLimiter, SecurityHeaders
from newsletter.web.subscribe import subscribe_routes
from newsletter.web.tracking import OpenPixel, RecentHits, tracking_routes
from newsletter.web.unsubscribe import unsubscribe_routes

log = web_logger("newsletter.web")


def create_app(context: WebContext) -> Starlette:
    # Here rather than in `newsletter serve`, so that every ASGI server running the app gets it.
    refuse_unsafe_settings(context.settings)
    pages = Pages(context)
    guard = FormGuard(lambda: context.settings.base_url)
    limiter = RateLimiter(context.settings.web.subscribe_rate_per_minute)
    recent = RecentHits()
    # The replay keys' buckets as wide as the sliding window (newsletter.feedback.hits.replay_key).
    recorder = HitRecorder(context.store, replay_seconds=lambda: recent.seconds)
    deferred = DeferredWork()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        recorder.start()
        try:
            yield
        finally:
            # After the last request: every buffered open and click reaches the database
            # before the process ends.
            recorder.stop()
            # Sign-ups answered before shutdown still get their confirmation email.
            deferred.stop()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            moved = _without_trailing_slash(request, context.settings.base_url)
            if moved is not None:
                return RedirectResponse(moved, status_code=308)
            return pages.not_found()
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        words = pages.words()
        return pages.message(words["server_error_title"], words["server_error_body"], status=500, role="alert")

    routes = [
        *tracking_routes(context, pages, recorder, recent),
        *unsubscribe_routes(context, pages, guard),
        *subscribe_routes(context, pages, guard, limiter, deferred),
        *archive_routes(context, pages),
        *hook_routes(context),
        *admin_routes(context),
    ]
    app = Starlette(
        routes=routes,
        # The open pixel first: it answers its own requests before anything else runs.
        middleware=[
            Middleware(OpenPixel, tokens=context.tokens, recorder=recorder, recent=recent),
            Middleware(SecurityHeaders),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    # Starlette's own trailing-slash redirect builds its Location from the Host header, which
    # the client chooses (a link in our domain's name leading to theirs); http_error redirects
    # to base_url instead.
    app.router.redirect_slashes = False
    app.state.context = context
    app.state.recorder = recorder
    app.state.recent_hits = recent
    app.state.deferred = deferred
    app.state.rate_limiter = limiter
    return app


def _without_trailing_slash(request: Request, base_url: str) -> str | None:
    """`base_url` + the path without its trailing slash, when that is one of the app's routes."""
    path = request.url.path
    if path == "/" or not path.endswith("/") or request.method not in ("GET", "HEAD"):
        return None
    scope = {**request.scope, "path": path.rstrip("/")}
    if not any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
        return None
    query = request.url.query
    return base_url + scope["path"] + (f"?{query}" if query else "")
