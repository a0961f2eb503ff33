"""The open pixel (`/o/TOKEN.gif`) and tracked links (`/c/TOKEN`).

The pixel answers every request with the same 1x1 GIF, whether or not its token verifies:
a mail client shows a broken image for anything else, and the answer must not tell a
prober which tokens are good.  Only hits with a valid token are recorded, through the
HitRecorder (buffered; see newsletter.web.recorder for why).

A click redirects only to the URL stored for that link of that issue when it was rendered
(`links` table): the token names an index, never a URL, so the endpoint cannot be turned
into an open redirect.  An invalid token, or an index the issue does not have, gets the 404
page and no redirect.

Subscriber 0 is a test send (newsletter.send.send_test): its clicks redirect, so the editor
can try the links, but nothing is recorded.
"""

from __future__ import annotations

import base64

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from newsletter.errors import TokenError
from newsletter.render import TRACKABLE_SCHEMES
from newsletter.store.hits import Hit
from newsletter.store.ledger import link_url
from newsletter.store.schema import CLICK, OPEN, utcnow
from newsletter.tracking import Purpose
from newsletter.web.context import WebContext
from newsletter.web.pages import Pages
from newsletter.web.recorder import HitRecorder

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

# Capped before storing: a user agent is a few hundred characters; a megabyte is an attack.
USER_AGENT_LIMIT = 1000


def tracking_routes(context: WebContext, pages: Pages, recorder: HitRecorder) -> list[Route]:
    tokens = context.tokens

    async def pixel(request: Request) -> Response:
        name: str = request.path_params["name"]
        token = name[:-4] if name.endswith(".gif") else name
        try:
            claim = tokens.verify(token, Purpose.OPEN)
        except TokenError:
            claim = None
        if claim is not None and claim.subscriber_id:
            recorder.add(
                Hit(
                    kind=OPEN,
                    issue_id=claim.issue_id,
                    subscriber_id=claim.subscriber_id,
                    occurred_at=utcnow(),
                    user_agent=_user_agent(request),
                    method=request.method,
                )
            )
        return Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)

    def stored_link(issue_id: int, index: int) -> str | None:
        with context.store.read() as conn:
            url = link_url(conn, issue_id, index)
        # Only web links are ever tracked (render.TRACKABLE_SCHEMES); anything else in the
        # table would be a bug, and a redirect to javascript: a dangerous one.
        return url if url and url.lower().startswith(TRACKABLE_SCHEMES) else None

    async def click(request: Request) -> Response:
        try:
            claim = tokens.verify(request.path_params["token"], Purpose.CLICK)
        except TokenError:
            return await run_in_threadpool(pages.not_found)
        url = await run_in_threadpool(stored_link, claim.issue_id, claim.link or 0)
        if url is None:
            return await run_in_threadpool(pages.not_found)
        if claim.subscriber_id:
            recorder.add(
                Hit(
                    kind=CLICK,
                    issue_id=claim.issue_id,
                    subscriber_id=claim.subscriber_id,
                    occurred_at=utcnow(),
                    user_agent=_user_agent(request),
                    method=request.method,
                    link_idx=claim.link,
                )
            )
        # 302, not 301: a permanent redirect would be cached, and the next click by the
        # same reader would never reach us.
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})

    return [
        Route("/o/{name}", pixel, methods=["GET"]),
        Route("/c/{token}", click, methods=["GET"]),
    ]


def _user_agent(request: Request) -> str | None:
    agent = request.headers.get("user-agent")
    return agent[:USER_AGENT_LIMIT] if agent else None
