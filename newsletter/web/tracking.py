"""The open pixel (`/o/TOKEN.gif`) and tracked links (`/c/TOKEN`).

The pixel answers every request with the same 1x1 GIF, whether or not its token verifies:
a mail client shows a broken image for anything else, and the answer must not tell a
prober which tokens are good.  Only hits with a valid token are recorded, through the
HitRecorder (buffered; see newsletter.feedback.hits for why).

A click redirects only to the URL stored for that link of that issue when it was rendered
(`links` table): the token names an index, never a URL, so the endpoint cannot be turned
into an open redirect.  An invalid token, or an index the issue does not have, gets the 404
page and no redirect.

Subscriber 0 is a test send (newsletter.sending.probe.send_test): its clicks redirect, so the editor
can try the links, but nothing is recorded.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from newsletter.errors import TokenError
from newsletter.feedback.hits import REPLAY_SECONDS, Hit, HitRecorder, tracked_link
from newsletter.store.schema import CLICK, OPEN
from newsletter.tokens import Purpose, Tokens
from newsletter.web.context import WebContext
from newsletter.web.pages import Pages
from newsletter.web.security import SECURITY_HEADERS

# The smallest transparent 1x1 GIF (GIF89a, one-colour palette, transparency extension).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

# Every open must reach us: a cached pixel is an open we never hear of.  `no-store` for
# HTTP/1.1 caches, `Pragma` and `Expires` for old proxies (RFC 9111 section 5.2.2.5,
# RFC 7234 section 5.4).
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
PIXEL_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL_GIF)).encode("ascii")),
    *((name.lower().encode("ascii"), value.encode("ascii")) for name, value in NO_CACHE.items()),
    *SECURITY_HEADERS,
]

# Capped before storing: a user agent is a few hundred characters; a megabyte is an attack.
USER_AGENT_LIMIT = 1000


# At most this many hits of one pixel or link of one message are recorded within the window,
# told apart by user agent (a scanner, then the reader, then their phone): a replay varying
# its user agent adds no more than that.
REPLAY_AGENTS = 5


class RecentHits:
    """Which hits were recorded in the last REPLAY_SECONDS, per process and bounded (the
    oldest are forgotten first, which errs towards recording).  Used on the event loop only.

    This spares the database the replays one process sees (a loop of requests costs no
    write); a repeat that reaches another process is dropped when its batch is written, by
    its replay key (newsletter.feedback.hits.replay_key)."""

    def __init__(self, seconds: float = REPLAY_SECONDS, *, max_entries: int = 100_000, clock=time.monotonic) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self.clock = clock
        # (kind, issue, subscriber, link, user agent) -> when recorded, oldest first.
        self._seen: OrderedDict[tuple[str, int, int, int | None, str | None], float] = OrderedDict()
        # (kind, issue, subscriber, link) -> how many of `_seen` it has.
        self._agents: dict[tuple[str, int, int, int | None], int] = {}

    def first(
        self, kind: str, issue_id: int, subscriber_id: int, link: int | None = None, agent: str | None = None
    ) -> bool:
        """True for a hit to record; False for a replay within the window."""
        now = self.clock()
        seen = self._seen
        while seen:
            oldest_key, oldest = next(iter(seen.items()))
            if now - oldest < self.seconds and len(seen) < self.max_entries:
                break
            del seen[oldest_key]
            base = oldest_key[:4]
            remaining = self._agents[base] - 1
            if remaining:
                self._agents[base] = remaining
            else:
                del self._agents[base]
        key = (kind, issue_id, subscriber_id, link, agent)
        base_key = (kind, issue_id, subscriber_id, link)
        if key in seen or self._agents.get(base_key, 0) >= REPLAY_AGENTS:
            return False
        seen[key] = now
        self._agents[base_key] = self._agents.get(base_key, 0) + 1
        return True


class OpenPixel:
    """ASGI middleware answering `GET|HEAD /o/...` itself, before Starlette's routing.

    The pixel is requested once per open of every message, so its cost per request decides
    how much one server process takes (bench/bench_pixel.py): answering here, with the
    response headers built once, skips the router, the request and response objects and
    the other middleware.  Everything else passes through untouched.
    """

    PREFIX = "/o/"

    def __init__(self, app: ASGIApp, *, tokens: Tokens, recorder: HitRecorder, recent: RecentHits) -> None:
        self.app = app
        self.verify = tokens.verify
        self.recorder = recorder
        self.recent = recent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith(self.PREFIX)
            or scope["method"] not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        name: str = scope["path"][len(self.PREFIX) :]
        token = name.removesuffix(".gif")
        try:
            claim = self.verify(token, Purpose.OPEN)
        except TokenError:
            claim = None
        if claim is not None and claim.subscriber_id:
            agent = None
            for key, value in scope["headers"]:
                if key == b"user-agent":
                    agent = value[:USER_AGENT_LIMIT].decode("latin-1")
                    break
            if self.recent.first(OPEN, claim.issue_id, claim.subscriber_id, None, agent):
                self.recorder.add(Hit(OPEN, claim.issue_id, claim.subscriber_id, time.time(), agent, scope["method"]))
        await send({"type": "http.response.start", "status": 200, "headers": PIXEL_HEADERS})
        await send({"type": "http.response.body", "body": PIXEL_GIF if scope["method"] == "GET" else b""})


def tracking_routes(context: WebContext, pages: Pages, recorder: HitRecorder, recent: RecentHits) -> list[Route]:
    """`/c/TOKEN`; the pixel is the OpenPixel middleware."""
    tokens = context.tokens

    async def click(request: Request) -> Response:
        try:
            claim = tokens.verify(request.path_params["token"], Purpose.CLICK)
        except TokenError:
            return await run_in_threadpool(pages.not_found)
        url = await run_in_threadpool(tracked_link, context.store, claim.issue_id, claim.link or 0)
        if url is None:
            return await run_in_threadpool(pages.not_found)
        agent = _user_agent(request)
        if claim.subscriber_id and recent.first(CLICK, claim.issue_id, claim.subscriber_id, claim.link, agent):
            recorder.add(
                Hit(
                    kind=CLICK,
                    issue_id=claim.issue_id,
                    subscriber_id=claim.subscriber_id,
                    at=time.time(),
                    user_agent=agent,
                    method=request.method,
                    link_idx=claim.link,
                )
            )
        # 302, not 301: a permanent redirect would be cached, and the next click by the
        # same reader would never reach us.
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})

    return [Route("/c/{token}", click, methods=["GET"])]


def _user_agent(request: Request) -> str | None:
    agent = request.headers.get("user-agent")
    return agent[:USER_AGENT_LIMIT] if agent else None
