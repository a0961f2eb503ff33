"""Pre-send checks on a rendered issue: what mail clients and receivers would object to.

Each check yields `Finding`s; an `error` fails `newsletter check` and stops `newsletter send`
(unless forced), a `warning` is printed and lets it go on.  A finding about the issue's own
text names its FILE:LINE; one about a template (no lang, a template's bad link) names the
file only.
"""

from __future__ import annotations

import difflib
import html
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from html.parser import HTMLParser

from newsletter.compose.issue.labels import LABEL_NAMES, LABELS
from newsletter.compose.issue.model import Issue
from newsletter.compose.render import Rendered
from newsletter.config import Settings
from newsletter.tokens import sample_links

# Gmail clips a message whose HTML exceeds 102 KB and hides the rest behind "[Message
# clipped]", taking the open pixel and the unsubscribe link (both at the end) with it.
GMAIL_CLIP_BYTES = 102 * 1024
SIZE_WARNING_BYTES = 90 * 1024
# Inbox lists cut a subject off at a width, not at a number of characters, and a CJK
# character takes two columns (Unicode East Asian Width, UAX #11).  78 columns is RFC 5322's
# recommended line length (section 2.1.1); a longer subject is cut in every inbox list, so
# it is worth a warning, not a refusal.
MAX_SUBJECT_COLUMNS = 78
LEFTOVER_SYNTAX = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}|%%nl:")
ALLOWED_SCHEMES = ("http://", "https://", "mailto:")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    check: str
    message: str
    where: str = ""
    # The line of the issue file it comes from; None for what the templates made.
    line: int | None = None

    @property
    def failed(self) -> bool:
        return self.severity == "error"

    @property
    def location(self) -> str:
        return f"{self.where}:{self.line}" if self.where and self.line else self.where

    def __str__(self) -> str:
        prefix = f"{self.location}: " if self.location else ""
        return f"{prefix}{self.severity}: {self.message} [{self.check}]"


def check_rendered(rendered: Rendered, settings: Settings) -> list[Finding]:
    where = rendered.issue.path
    email_html = sized_html(rendered, settings)
    preview_html, preview_text = rendered.preview(settings)
    source = _source_text(where)
    findings = list(_size(email_html, where))
    findings += _subject(rendered.issue.subject, where, _subject_line(source))
    findings += _subject_capitals(rendered.issue.subject, where, _subject_line(source))
    findings += _unknown_labels(rendered.issue)
    findings += _issue_images(rendered.issue)
    findings += _issue_links(rendered.issue)
    findings += _refused_targets(source, where)
    findings += _markup(preview_html, where, issue_urls={url for url, _ in issue_links(rendered.issue)})
    decoded = _decoded(source)
    findings += _leftovers("HTML part", preview_html, decoded, where)
    findings += _leftovers("text part", preview_text, decoded, where)
    findings += _leftovers("web page", rendered.web_html, decoded, where)
    # In the order of the file, as a compiler reports; what the templates made comes first.
    return sorted(findings, key=lambda finding: finding.line or 0)


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
            1,
        )
    elif size > SIZE_WARNING_BYTES:
        yield Finding("warning", "size", f"email HTML is {size / 1024:.1f} KB, close to Gmail's 102 KB clip", where, 1)


def _subject(subject: str, where: str, line: int) -> Iterator[Finding]:
    if not subject.strip():
        yield Finding(
            "error", "subject", "subject is empty; set a title or 'subject:' in the front matter", where, line
        )
    elif (columns := display_width(subject)) > MAX_SUBJECT_COLUMNS:
        yield Finding(
            "warning",
            "subject",
            f"subject is {columns} columns wide (a CJK character takes two); inbox lists cut it after about "
            f"{MAX_SUBJECT_COLUMNS} (set a shorter 'subject:' in the front matter)",
            where,
            line,
        )


def display_width(text: str) -> int:
    """Columns `text` takes in a fixed-width view: wide and fullwidth characters (CJK, most
    emoji) two, combining marks and joiners none (Unicode UAX #11)."""
    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf") or char in "\ufe0e\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _subject_line(source: str) -> int:
    """The line the subject comes from: front matter `subject:`, else the `# ` title."""
    lines = source.split("\n")
    in_front = bool(lines) and lines[0].strip() == "---"
    for number, text in enumerate(lines, start=1):
        if in_front and number > 1 and text.strip() in ("---", "..."):
            in_front = False
        elif in_front and text.split(":", 1)[0].strip() == "subject":
            return number
    for number, text in enumerate(lines, start=1):
        if text.startswith("# "):
            return number
    return 1


# ---- the issue's own text ----


# http(s) and mailto are all a mail client can follow; a relative link has no page to be
# relative to in an inbox, and file: points into the editor's own disk.
def _unsendable_target(url: str) -> str | None:
    lowered = url.strip().lower()
    if lowered.startswith(ALLOWED_SCHEMES):
        return None
    if lowered.startswith("file:"):
        return "points at a file on this computer"
    if ":" not in lowered.split("/")[0]:
        return "is relative"
    return "is neither http(s) nor mailto"


def issue_links(issue: Issue) -> Iterator[tuple[str, int]]:
    """(url, line) of every link the issue's text holds: sources, links in the text,
    related news; in reading order, repeats included."""
    for entry in issue.entries:
        for source in entry.sources:
            if source.url:
                yield source.url, source.line or entry.line
        for inline in entry.inlines():
            for anchor in inline.links():
                yield anchor.url, anchor.line or entry.line
    for item in issue.related:
        if item.url:
            yield item.url, item.line


def issue_images(issue: Issue) -> Iterator[tuple[str, str, int]]:
    """(src, alt, line) of every image in the issue's text."""
    for entry in issue.entries:
        for inline in entry.inlines():
            for image in inline.images():
                yield image.src, image.alt, image.line or entry.line


def _issue_links(issue: Issue) -> Iterator[Finding]:
    for url, line in issue_links(issue):
        reason = _unsendable_target(url)
        if reason:
            yield Finding(
                "error",
                "links",
                f"link {url!r} {reason}; mail needs absolute https:// or mailto: links",
                issue.path,
                line,
            )


# Markdown (CommonMark's reference parser and ours) refuses to make links of these schemes,
# so `[text](file:///…)` reaches the reader as its raw brackets.
_REFUSED_TARGET = re.compile(r"\]\(\s*<?((?:file|javascript|vbscript|data):[^)\s]*)", re.IGNORECASE)


def _refused_targets(source: str, where: str) -> Iterator[Finding]:
    for number, text in enumerate(source.split("\n"), start=1):
        for match in _REFUSED_TARGET.finditer(text):
            target = match.group(1)
            what = "a file on this computer" if target.lower().startswith("file:") else "a script or inline data"
            yield Finding(
                "error",
                "links",
                f"link or image {target!r} points at {what}; Markdown leaves it as text and mail cannot open it: "
                "use an https:// address",
                where,
                number,
            )


def _issue_images(issue: Issue) -> Iterator[Finding]:
    for src, alt, line in issue_images(issue):
        reason = _unsendable_target(src)
        if reason or src.lower().startswith("mailto:"):
            yield Finding(
                "error",
                "images",
                f"image {src!r} {reason or 'is not an image address'}; the reader's mail client cannot load it: "
                "upload it and use its https:// address",
                issue.path,
                line,
            )
        if not alt.strip():
            yield Finding(
                "error",
                "alt",
                f"image {src!r} has no alt text; write ![description]({src}) in the issue",
                issue.path,
                line,
            )


# Close enough to a label to be a typo of it (difflib's ratio: 核心洞查 to 核心洞察 is 0.75).
LABEL_TYPO_RATIO = 0.5


def _unknown_labels(issue: Issue) -> Iterator[Finding]:
    for entry in issue.entries:
        for unknown in entry.unknown_labels:
            guess = difflib.get_close_matches(unknown.label.lower(), list(LABELS), n=1, cutoff=LABEL_TYPO_RATIO)
            if guess:
                yield Finding(
                    "error",
                    "labels",
                    f"unknown label '{unknown.label}' in entry {entry.title!r}; did you mean '{guess[0]}'? "
                    "(as written it is an ordinary paragraph, not its box)",
                    issue.path,
                    unknown.line,
                )
            else:
                known = ", ".join(LABEL_NAMES.values())
                yield Finding(
                    "warning",
                    "labels",
                    f"bold '{unknown.label}' at the start of a line in entry {entry.title!r} is not a label "
                    f"({known}); it stays an ordinary paragraph",
                    issue.path,
                    unknown.line,
                )


def repeated_links(issue: Issue, earlier: Mapping[str, tuple[str, date]]) -> list[Finding]:
    """Links of this issue already sent in an earlier issue of its list: `earlier` maps a URL
    to the (slug, date) of the issue that first carried it."""
    findings = []
    seen: set[str] = set()
    for url, line in issue_links(issue):
        if url in earlier and url not in seen:
            seen.add(url)
            slug, sent = earlier[url]
            findings.append(
                Finding(
                    "warning",
                    "repeat",
                    f"link {url} was already sent in issue {slug} ({sent.isoformat()}); is the story repeated?",
                    issue.path,
                    line,
                )
            )
    return findings


_LATIN_LETTERS = re.compile(r"[A-Za-z]")


def _subject_capitals(subject: str, where: str, line: int) -> Iterator[Finding]:
    """SpamAssassin's SUBJ_ALL_CAPS (0.5 points) fires when every Latin letter of a subject of
    two or more words and at least 10 bytes is a capital, counting only A-Z: so a Chinese
    subject whose only Latin letters are "AI" trips it (HeaderEval.pm, subject_is_all_caps).
    An editorial choice, so a warning."""
    letters = "".join(_LATIN_LETTERS.findall(subject))
    if not letters or letters != letters.upper() or len(subject.strip().split()) < 2:
        return
    if len(subject.strip().encode("utf-8")) < 10:
        return
    yield Finding(
        "warning",
        "subject-capitals",
        f"every Latin letter of the subject is a capital ({letters[:20]}); SpamAssassin scores that as shouting "
        "(SUBJ_ALL_CAPS): add a word with a lowercase letter, or set 'subject:' in the front matter",
        where,
        line,
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
        elif tag == "img" and "nl-image" not in (values.get("class") or "").split():
            # The issue's own images (class nl-image) are checked on the issue, with their
            # line; here only a template's, whose alt may be empty (decorative) but not absent.
            if values.get("alt") is None:
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


def _markup(html: str, where: str, *, issue_urls: set[str]) -> Iterator[Finding]:
    scan = _MarkupScan()
    scan.feed(html)
    scan.close()
    # MJML writes lang="und" (BCP 47 "undetermined") when a template's <mjml> has no lang.
    if not scan.lang or scan.lang.strip().lower() == "und":
        yield Finding("error", "lang", "the <html> element has no lang attribute; screen readers need it", where)
    for src in scan.images_without_alt:
        yield Finding("error", "alt", f'a template\'s image {src!r} has no alt attribute; give it alt="…"', where)
    for href, reason in scan.bad_links:
        if href in issue_urls:
            continue  # the issue's own link, reported with its line
        yield Finding("error", "links", f"link {href!r} {reason}; mail needs absolute https:// or mailto: links", where)
    if scan.scripts:
        yield Finding("error", "script", "the HTML contains <script>; mail clients strip it", where)


def _source_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


# CommonMark's backslash escapes (section 2.4: any ASCII punctuation) and entity references
# (section 2.5) reach the output decoded: `&#123;&#123;` is the issue's own `{{`.
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def _decoded(source: str) -> str:
    """The issue's text as it reaches the output, for comparing counts (`_leftovers`)."""
    return source + "\n" + html.unescape(_BACKSLASH_ESCAPE.sub(r"\1", source))


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
