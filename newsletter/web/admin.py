"""The editor's pages: `/stats/` (every issue) and `/stats/SLUG` (one issue, with a chart).

    routes = admin_routes(context)     # mounted by the serve app

Behind HTTP Basic authentication (RFC 7617) with `web.admin_password` (better set through
NEWSLETTER_ADMIN_PASSWORD); any user name is accepted.  With no password configured the
pages are closed (403) rather than open: an empty password must not mean "no password".
Basic credentials travel in clear text, so deploy behind HTTPS (the README says how).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter.errors import InputError
from newsletter.i18n import format_date, wording_for
from newsletter.stats import issue_stats, issue_summaries
from newsletter.web.chart import timeline_svg
from newsletter.web.security import RateLimiter, client_address

REALM = "newsletter stats"
TEMPLATE = "web/stats.html.j2"
INDEX_TEMPLATE = "web/stats_index.html.j2"
MESSAGE_TEMPLATE = "web/stats_message.html.j2"

# Admin pages are personal to the editor: never cached by a proxy, never indexed.
PRIVATE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer"}
# Wrong passwords one client address may try in a minute (a bucket: five at once, then one
# every 12 s); beyond that every attempt, right or wrong, gets 429 until the bucket refills,
# so guessing runs at 5 a minute however fast the client asks (OWASP Authentication Cheat
# Sheet, "Protect against automated attacks").
FAILED_LOGINS_PER_MINUTE = 5


class StatsPages:
    def __init__(self, context) -> None:
        self.context = context
        self.settings = context.settings
        self.renderer = context.renderer
        self.language = context.settings.newsletter.language
        self.words = wording_for(self.language)
        self.failed_logins = RateLimiter(FAILED_LOGINS_PER_MINUTE)

    async def index(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        summaries = await run_in_threadpool(issue_summaries, self.context.store)
        html = self._page(
            INDEX_TEMPLATE,
            title=self.words["stats_index_title"],
            issues=[{"summary": s, "date": format_date(s.issue_date, self.language)} for s in summaries],
        )
        return HTMLResponse(html, headers=PRIVATE_HEADERS)

    async def issue(self, request: Request) -> Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        slug = request.path_params["slug"]
        try:
            stats = await run_in_threadpool(issue_stats, self.context.store, slug)
        except InputError:
            return self._message(
                404, self.words["not_found_title"], self.words["stats_no_such_issue"].format(slug=slug)
            )
        words = self.words
        chart_words = {
            "chart_title": words["stats_chart_title"],
            "chart_desc": words["stats_chart_desc"],
            "opens": words["stats_opens"],
            "clicks": words["stats_clicks"],
            "people": words["stats_people"],
            "machines": words["stats_machines"],
            "hour_label": words["stats_hour_label"],
            "bar_title": words["stats_bar_title"],
        }
        rows = [
            {"label": words[f"stats_{row.name}"], "value": row.value, "share": _percent(row.share)}
            for row in stats.summary()
        ]
        html = self._page(
            TEMPLATE,
            title=words["stats_title"].format(title=stats.title),
            stats=stats,
            rows=rows,
            date=format_date(stats.issue_date, self.language),
            # Made here from numbers and escaped words only, so it is safe to insert as is.
            chart=Markup(timeline_svg(stats.timeline, chart_words)) if stats.timeline else None,
            index_url=request.url_for("stats_index").path,
        )
        return HTMLResponse(html, headers=PRIVATE_HEADERS)

    async def to_index(self, request: Request) -> Response:
        return RedirectResponse(request.url_for("stats_index").path, status_code=308)

    # ---- authentication ----

    def _refusal(self, request: Request) -> Response | None:
        """None when the request carries the admin password; else the answer to give."""
        password = self.settings.web.admin_password
        if not password:
            return self._message(403, self.words["stats_disabled_title"], self.words["stats_disabled_body"])
        header = request.headers.get("authorization", "")
        address = client_address(request)
        if header and not self.failed_logins.available(address):
            response = self._message(429, self.words["too_many_requests_title"], self.words["too_many_requests"])
            response.headers["Retry-After"] = "60"
            return response
        given = _basic_password(header)
        # compare_digest takes time independent of where the first difference is, so the
        # answer's timing does not leak the password a character at a time.
        if given is not None and hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8")):
            return None
        if header:
            # A request without credentials is a browser asking for the prompt, not a guess.
            self.failed_logins.allow(address)
        response = self._message(401, self.words["stats_login_title"], self.words["stats_login_body"])
        # RFC 7617: the realm names the protection space; charset says credentials are UTF-8.
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        return response

    # ---- rendering ----

    def _page(self, template: str, **values) -> str:
        return self.renderer.render_page(template, language=self.language, **values)

    def _message(self, status: int, title: str, body: str) -> HTMLResponse:
        html = self._page(MESSAGE_TEMPLATE, title=title, message=body)
        return HTMLResponse(html, status_code=status, headers=PRIVATE_HEADERS)


def admin_routes(context) -> list[Route]:
    """`/stats/` and `/stats/SLUG` over the app's `WebContext`."""
    pages = StatsPages(context)
    return [
        Route("/stats", pages.to_index, methods=["GET"]),
        Route("/stats/", pages.index, methods=["GET"], name="stats_index"),
        Route("/stats/{slug}", pages.issue, methods=["GET"], name="stats_issue"),
    ]


def _basic_password(header: str) -> str | None:
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials.strip():
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}%"
