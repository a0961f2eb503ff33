"""The public archive: `/` lists the sent issues, `/issues/SLUG` shows one, `/feed.xml` is
their Atom feed (RFC 4287).

An issue page is the web version stored when the send began (`issues.web_html`): rendered
from the issue alone, with plain links and no slots, so it holds nothing about any
subscriber and is the same for everyone who opens "view in browser".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, time, tzinfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.archive import SentIssue, sent_issue, sent_issues
from newsletter.compose.excerpt import excerpt
from newsletter.i18n import format_date
from newsletter.sending.schedule import resolve_zone
from newsletter.web.conditional import conditional
from newsletter.web.context import WebContext
from newsletter.web.pages import Pages

ATOM = "http://www.w3.org/2005/Atom"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
FEED_ENTRIES = 20
# A feed reader's list shows a line or two of summary; the content holds the whole issue.
FEED_SUMMARY_COLUMNS = 280
# Public and the same for everyone: short caching spares the database without delaying a
# new issue for long.
PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}
HTML = "text/html; charset=utf-8"
FEED = "application/atom+xml; charset=utf-8"

_MAIN = re.compile(r"<main[^>]*>(.*)</main>", re.DOTALL | re.IGNORECASE)
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.DOTALL | re.IGNORECASE)


def archive_routes(context: WebContext, pages: Pages) -> list[Route]:
    store = context.store

    def index_page(request: Request) -> Response:
        found = sent_issues(store)
        items = [
            {
                "title": issue.title,
                "url": context.links.issue_page(issue.slug),
                "date": format_date(issue.issue_date, issue.language),
                "iso_date": issue.issue_date.isoformat(),
                "language": issue.language,
            }
            for issue in found
        ]
        page = pages.render("web/archive.html.j2", headers=PUBLIC_CACHE, issues=items)
        newest = max((issue.updated_at for issue in found), default=None)
        return conditional(request, bytes(page.body), media_type=HTML, last_modified=newest, headers=PUBLIC_CACHE)

    def issue_page(request: Request, slug: str) -> Response:
        found = sent_issue(store, slug)
        if found is None:
            return pages.not_found()
        # The stored web version is written once, when the send began.
        body = (found.web_html or "").encode("utf-8")
        return conditional(request, body, media_type=HTML, last_modified=found.snapshot_at, headers=PUBLIC_CACHE)

    def feed(request: Request) -> Response:
        found = sent_issues(store, limit=FEED_ENTRIES, with_content=True)
        body = atom_feed(context, found)
        newest = max((issue.updated_at for issue in found), default=None)
        return conditional(request, body, media_type=FEED, last_modified=newest, headers=PUBLIC_CACHE)

    async def index(request: Request) -> Response:
        return await run_in_threadpool(index_page, request)

    async def issue(request: Request) -> Response:
        return await run_in_threadpool(issue_page, request, request.path_params["slug"])

    async def atom(request: Request) -> Response:
        return await run_in_threadpool(feed, request)

    return [
        Route("/", index, methods=["GET"]),
        Route("/issues/{slug}", issue, methods=["GET"]),
        Route("/feed.xml", atom, methods=["GET"]),
    ]


def atom_feed(context: WebContext, found: list[SentIssue]) -> bytes:
    """An Atom 1.0 document (RFC 4287) of `found`, newest first, with each issue's full web
    version as its content.  ElementTree escapes every text and attribute."""
    settings = context.settings
    base = settings.base_url
    zone, _ = resolve_zone(settings, None)
    ET.register_namespace("", ATOM)

    def element(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
        node = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
        if text is not None:
            node.text = text
        return node

    feed = ET.Element(f"{{{ATOM}}}feed", {f"{{{XML_NAMESPACE}}}lang": settings.newsletter.language})
    element(feed, "title", settings.newsletter.name)
    # RFC 4287 section 4.2.6: an id never changes, so it is the archive's URL, not the host's.
    element(feed, "id", f"{base}/")
    element(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feed.xml")
    element(feed, "link", rel="alternate", type="text/html", href=f"{base}/")
    # 4.2.15: the last time the feed changed significantly: its newest entry.
    newest = max((issue.updated_at for issue in found), default=None)
    element(feed, "updated", _rfc3339(newest or datetime(1970, 1, 1, tzinfo=UTC)))
    author = element(feed, "author")
    element(author, "name", settings.newsletter.name)
    element(feed, "generator", "newsletter")
    for issue in found:
        url = context.links.issue_page(issue.slug)
        entry = element(feed, "entry", **{f"{{{XML_NAMESPACE}}}lang": issue.language})
        element(entry, "id", url)
        element(entry, "title", issue.title)
        element(entry, "link", rel="alternate", type="text/html", href=url)
        element(entry, "published", _rfc3339(published_at(issue, zone)))
        element(entry, "updated", _rfc3339(issue.updated_at))
        if issue.preheader:
            element(entry, "summary", excerpt(issue.preheader, FEED_SUMMARY_COLUMNS))
        # 4.1.3.3: type="html" content is escaped HTML (ElementTree does the escaping).
        element(entry, "content", page_content(issue.web_html or ""), type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def published_at(issue: SentIssue, zone: tzinfo | None) -> datetime:
    """When the feed says an issue came out: the day the archive shows (the issue's date), at
    the time its send began when that was on the same day in the newsletter's time zone, else
    at the start of that day — a digest dated the 7th and sent late on the 8th is still the
    7th's, in the feed as on the archive page."""
    began = issue.snapshot_at.astimezone(zone)
    if began.date() == issue.issue_date:
        return issue.snapshot_at
    start = datetime.combine(issue.issue_date, time(0, 0))
    return start.replace(tzinfo=zone) if zone is not None else start.astimezone()


def page_content(web_html: str) -> str:
    """The article part of a stored web page: what a feed reader should show, without the
    page's <head>, styles and navigation."""
    for pattern in (_MAIN, _BODY):
        found = pattern.search(web_html)
        if found:
            return found.group(1).strip()
    return web_html


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
