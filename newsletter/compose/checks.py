"""Pre-send checks on a rendered issue: what mail clients and receivers would object to.

Each check yields `Finding`s; an `error` fails `newsletter check` and stops `newsletter send`
(unless forced), a `warning` is printed and lets it go on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

from newsletter.compose.render import Rendered
from newsletter.config import Settings
from newsletter.tokens import sample_links

# Gmail clips a message whose HTML exceeds 102 KB and hides the rest behind "[Message
# clipped]", taking the open pixel and the unsubscribe link (both at the end) with it.
GMAIL_CLIP_BYTES = 102 * 1024
SIZE_WARNING_BYTES = 90 * 1024
# RFC 5322 recommends lines of at most 78 characters; longer subjects are cut off in most
# inbox lists anyway.
MAX_SUBJECT_CHARACTERS = 78
LEFTOVER_SYNTAX = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}|%%nl:")
ALLOWED_SCHEMES = ("http://", "https://", "mailto:")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    check: str
    message: str
    where: str = ""

    @property
    def failed(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.severity}: {self.message} [{self.check}]"


def check_rendered(rendered: Rendered, settings: Settings) -> list[Finding]:
    where = rendered.issue.path
    email_html = sized_html(rendered, settings)
    preview_html, preview_text = rendered.preview(settings)
    findings = list(_size(email_html, where))
    findings += _subject(rendered.issue.subject, where)
    findings += _markup(preview_html, where)
    source = _source_text(where)
    findings += _leftovers("HTML part", preview_html, source, where)
    findings += _leftovers("text part", preview_text, source, where)
    findings += _leftovers("web page", rendered.web_html, source, where)
    return findings


def sized_html(rendered: Rendered, settings: Settings) -> str:
    """The email HTML as a subscriber receives it, with tracking URLs of their real length:
    tracked links are longer than the originals, and it is the received size Gmail clips."""
    links = sample_links(settings.base_url)
    issue_id, subscriber_id = 2**31, 2**40
    link_urls = (
        [links.click(issue_id, subscriber_id, index) for index in range(len(rendered.links))]
        if settings.tracking.clicks
        else None
    )
    html_values, _ = rendered.slot_values(
        unsubscribe_url=links.unsubscribe(issue_id, subscriber_id),
        view_url=links.issue_page(rendered.issue.slug),
        link_urls=link_urls,
        open_pixel_url=links.open_pixel(issue_id, subscriber_id) if settings.tracking.opens else None,
    )
    return rendered.html.fill(html_values)


def _size(email_html: str, where: str) -> Iterator[Finding]:
    size = len(email_html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        yield Finding(
            "error",
            "size",
            f"email HTML is {size / 1024:.1f} KB; Gmail clips anything over 102 KB, hiding the unsubscribe link "
            "and the open pixel: shorten the issue or split it",
            where,
        )
    elif size > SIZE_WARNING_BYTES:
        yield Finding("warning", "size", f"email HTML is {size / 1024:.1f} KB, close to Gmail's 102 KB clip", where)


def _subject(subject: str, where: str) -> Iterator[Finding]:
    if not subject.strip():
        yield Finding("error", "subject", "subject is empty; set a title or 'subject:' in the front matter", where)
    elif len(subject) > MAX_SUBJECT_CHARACTERS:
        yield Finding(
            "error",
            "subject",
            f"subject is {len(subject)} characters; keep it to {MAX_SUBJECT_CHARACTERS} "
            "(set a shorter 'subject:' in the front matter)",
            where,
        )


class _MarkupScan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.images_without_alt: list[str] = []
        self.bad_links: list[tuple[str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang")
        elif tag == "img" and (
            values.get("alt") is None
            # The renderer always writes alt="…" for an issue's image (class nl-image), so an
            # empty one is `![](…)` in the issue; only a template's decorative image may be empty.
            or ("nl-image" in (values.get("class") or "").split() and not (values.get("alt") or "").strip())
        ):
            self.images_without_alt.append(values.get("src") or "")
        elif tag == "a" and "href" in values:
            href = (values.get("href") or "").strip()
            if not href:
                self.bad_links.append((href, "is empty"))
            elif not href.lower().startswith(ALLOWED_SCHEMES):
                reason = "is relative" if ":" not in href.split("/")[0] else "is neither http(s) nor mailto"
                self.bad_links.append((href, reason))
        elif tag == "script":
            self.scripts += 1


def _markup(html: str, where: str) -> Iterator[Finding]:
    scan = _MarkupScan()
    scan.feed(html)
    scan.close()
    # MJML writes lang="und" (BCP 47 "undetermined") when a template's <mjml> has no lang.
    if not scan.lang or scan.lang.strip().lower() == "und":
        yield Finding("error", "lang", "the <html> element has no lang attribute; screen readers need it", where)
    for src in scan.images_without_alt:
        yield Finding("error", "alt", f"image {src!r} has no alt text; write ![description]({src}) in the issue", where)
    for href, reason in scan.bad_links:
        yield Finding("error", "links", f"link {href!r} {reason}; mail needs absolute https:// or mailto: links", where)
    if scan.scripts:
        yield Finding("error", "script", "the HTML contains <script>; mail clients strip it", where)


def _source_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _leftovers(part: str, text: str, source: str, where: str) -> Iterator[Finding]:
    """Template syntax in the output that the issue itself does not contain (an issue may
    well write about `{{ templates }}`) is a template bug or an unfilled slot."""
    for match in LEFTOVER_SYNTAX.finditer(text):
        if text.count(match.group(0)) <= source.count(match.group(0)):
            continue
        start = max(0, match.start() - 20)
        context = text[start : match.end() + 20].replace("\n", " ")
        name = "unfilled slot" if match.group(0) == "%%nl:" else "leftover template syntax"
        yield Finding("error", "leftovers", f"{name} in the {part}: …{context}…", where)
        return
