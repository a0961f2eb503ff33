"""Issue -> Rendered: the email HTML and text with per-recipient slots, and the web page.

Rendering runs once per issue: Jinja2 -> MJML (mjml-python) -> CSS inlining (css-inline).
Whatever differs per recipient (unsubscribe URL, view-in-browser URL, open pixel, each
tracked link) is left as a *slot* marker `%%nl:NAME%%` in the output.  Sending then only
fills slots (`SlottedText.fill`), which is string joining, never templating.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from markupsafe import Markup, escape

from newsletter.compose.issue import model
from newsletter.compose.link_origins import LinkOrigin, link_origins
from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.i18n import format_date, wording_for

EMAIL_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
WEB_TEMPLATE = "digest.html.j2"
INLINE_CSS = "inline.css"

# Slot names.  Link slots are `link:N`, N indexing `Rendered.links`.
UNSUBSCRIBE_URL = "unsubscribe_url"
VIEW_URL = "view_url"
OPEN_PIXEL = "open_pixel"
LINK_PREFIX = "link:"
# ASCII on purpose: MRML drops private-use characters from text and mangles them in
# attributes, while this survives MJML and css-inline unchanged (checked in the tests).
#
# Two spellings.  While an issue renders, the renderer's own slots carry a random nonce
# (`%%nl-NONCE:NAME%%`): the editor's text reaches the output decoded (an entity `&#37;`,
# a backslash escape `\%`), so no spelling can be refused up front, but nobody can write a
# nonce they never saw.  Stored (`SlottedText.marked`, read back by `parse`) a slot is
# `%%nl:NAME%%`, and a `%%nl:` of the editor's text is written `%%nl:literal%%nl:`, which
# `parse` turns back into text.
SLOT_MARK = "%%nl:{}%%"
SLOT_PATTERN = re.compile(r"%%nl:([a-z_]+(?::\d+)?)%%")
_RENDER_MARK = "%%nl-{nonce}:{name}%%"
_RENDER_NAME = re.compile(r"([a-z_]+(?::\d+)?)%%")
_LITERAL = "literal"
_MARK_START = "%%nl:"
_ESCAPED_MARK_START = SLOT_MARK.format(_LITERAL) + "nl:"

TRACKABLE_SCHEMES = ("http://", "https://")


def packaged_templates_dir() -> Path:
    """The default templates: inside the installed package, or at the top of a checkout
    (an editable install runs from the source tree, where they live in ./templates)."""
    package = Path(__file__).resolve().parents[1]  # newsletter/
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


@dataclass(frozen=True)
class SlottedText:
    """Text split at its slots: `parts[0] slot[0] parts[1] slot[1] ... parts[-1]`."""

    parts: tuple[str, ...]
    slots: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> SlottedText:
        """Stored text (`marked`) back into parts and slots."""
        pieces = SLOT_PATTERN.split(text)
        if _ESCAPED_MARK_START not in text:
            return cls(tuple(pieces[0::2]), tuple(pieces[1::2]))
        parts, slots = [pieces[0]], []
        for name, part in zip(pieces[1::2], pieces[2::2], strict=True):
            if name == _LITERAL:
                parts[-1] += "%%" + part
            else:
                slots.append(name)
                parts.append(part)
        return cls(tuple(parts), tuple(slots))

    @classmethod
    def rendered(cls, text: str, nonce: str) -> SlottedText:
        """The renderer's output split at its own slots (those carrying `nonce`) only."""
        # The leftmost `%%nl-NONCE:` followed by a name is the next slot, as a pattern with
        # the nonce in it would find, without compiling a pattern for each render's nonce.
        start_mark = _RENDER_MARK.format(nonce=nonce, name="")[:-2]
        parts: list[str] = []
        slots: list[str] = []
        part_start = search_from = 0
        while (at := text.find(start_mark, search_from)) >= 0:
            named = _RENDER_NAME.match(text, at + len(start_mark))
            if named is None:
                search_from = at + 1
                continue
            parts.append(text[part_start:at])
            slots.append(named[1])
            part_start = search_from = named.end()
        parts.append(text[part_start:])
        return cls(tuple(parts), tuple(slots))

    def marked(self) -> str:
        """The text with its slot markers, for storing; `parse` reads it back as it was."""
        parts = [part.replace(_MARK_START, _ESCAPED_MARK_START) for part in self.parts]
        return parts[0] + "".join(
            SLOT_MARK.format(name) + part for name, part in zip(self.slots, parts[1:], strict=True)
        )

    def fill(self, values: Mapping[str, str]) -> str:
        """The text with every slot replaced by its value (already escaped as needed)."""
        out = [self.parts[0]]
        for name, part in zip(self.slots, self.parts[1:], strict=True):
            out.append(values[name])
            out.append(part)
        return "".join(out)

    @cached_property
    def encoded_parts(self) -> tuple[bytes, ...]:
        """The literal parts as UTF-8, encoded once per issue instead of once per recipient."""
        return tuple(part.encode("utf-8") for part in self.parts)

    def fill_bytes(self, values: Mapping[str, bytes]) -> bytes:
        parts = self.encoded_parts
        out = [parts[0]]
        for name, part in zip(self.slots, parts[1:], strict=True):
            out.append(values[name])
            out.append(part)
        return b"".join(out)


@dataclass(frozen=True)
class Rendered:
    issue: model.Issue
    html: SlottedText
    text: SlottedText
    web_html: str
    # Distinct link targets of the email HTML, in order of first appearance; slot `link:N`
    # stands for links[N].
    links: tuple[str, ...]
    # Where each of `links` sits in the issue (its words, entry, category), for stats.
    link_origins: tuple[LinkOrigin, ...] = ()

    def slot_values(
        self,
        *,
        unsubscribe_url: str,
        view_url: str,
        link_urls: Sequence[str] | None = None,
        open_pixel_url: str | None = None,
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Slot values for the HTML part (escaped) and the text part (as is).

        `link_urls` defaults to the original links (no click tracking); no `open_pixel_url`
        means no pixel.
        """
        urls = self.links if link_urls is None else link_urls
        text_values = {UNSUBSCRIBE_URL: unsubscribe_url, VIEW_URL: view_url, OPEN_PIXEL: ""}
        html_values = {name: html.escape(value) for name, value in text_values.items()}
        html_values[OPEN_PIXEL] = open_pixel_tag(open_pixel_url) if open_pixel_url else ""
        for index, url in enumerate(urls):
            html_values[f"{LINK_PREFIX}{index}"] = html.escape(url)
        return html_values, text_values

    def preview(self, settings: Settings) -> tuple[str, str]:
        """HTML and text with slots filled by harmless preview values (build, preview, check)."""
        html_values, text_values = self.slot_values(
            unsubscribe_url=f"{settings.base_url}/u/preview",
            view_url=f"{settings.base_url}/issues/{self.issue.slug}",
        )
        return self.html.fill(html_values), self.text.fill(text_values)


def open_pixel_tag(url: str) -> str:
    # Styled inline because it is filled in after CSS inlining; alt="" keeps it out of
    # screen readers and out of the alt-text check.
    return (
        f'<img src="{html.escape(url)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;" />'
    )


class Renderer:
    """Holds the template environment; `render` an issue as often as needed."""

    def __init__(self, settings: Settings, templates_dir: Path | None = None) -> None:
        import jinja2

        self.settings = settings
        custom = templates_dir or settings.templates_dir
        if custom is not None and not custom.is_dir():
            raise RenderError(f"{custom}: templates directory does not exist")
        search = [str(custom)] if custom is not None else []
        search.append(str(packaged_templates_dir()))
        self.search_path = search
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            # MJML is XML: a bare `<` from article text would break its parser.
            autoescape=lambda name: name is not None and name.endswith((".mjml.j2", ".html.j2")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    @cached_property
    def inliner(self):
        import css_inline

        # css-inline's defaults drop every <style> block, and with it the media queries that
        # make the layout responsive; MJML's own <style> must stay as it is (DESIGN.md).
        return css_inline.CSSInliner(
            inline_style_tags=False,
            keep_style_tags=True,
            load_remote_stylesheets=False,
            extra_css=self._read(INLINE_CSS),
        )

    def _read(self, name: str) -> str:
        for directory in self.search_path:
            path = Path(directory) / name
            if path.is_file():
                return path.read_text(encoding="utf-8")
        raise RenderError(f"template {name!r} not found in {', '.join(self.search_path)}")

    def render(self, issue: model.Issue) -> Rendered:
        # Fresh for every render, so no text of the issue can spell one of its slots.
        nonce = secrets.token_hex(8)
        email_links = _LinkRegistry(track=True, nonce=nonce)
        email_html = self._inline(
            main_landmark(self._mjml(self._template(EMAIL_TEMPLATE, issue, email_links, nonce)), issue.title)
        )
        plain = _LinkRegistry(track=False, nonce=nonce)
        text = self._template(TEXT_TEMPLATE, issue, plain, nonce)
        # The web version is a plain page, not the email: browsers need no tables, no
        # inlined styles and no MSO fallbacks (and skipping MJML halves the render time).
        web_html = self._template(WEB_TEMPLATE, issue, plain, nonce)
        slotted_html, slotted_text = SlottedText.rendered(email_html, nonce), SlottedText.rendered(text, nonce)
        # A slot nobody fills (an editor's slot('unsubscribe')) would fail at fill time, per
        # recipient, with a KeyError; say so now, once, naming the template.
        known = {UNSUBSCRIBE_URL, VIEW_URL, OPEN_PIXEL} | {f"{LINK_PREFIX}{i}" for i in range(len(email_links.urls))}
        for name, slotted in ((EMAIL_TEMPLATE, slotted_html), (TEXT_TEMPLATE, slotted_text)):
            unknown = sorted(set(slotted.slots) - known)
            if unknown:
                raise RenderError(
                    f"{name}: unknown slot {unknown[0]!r}; slot() takes {UNSUBSCRIBE_URL!r}, {VIEW_URL!r} or {OPEN_PIXEL!r}"
                )
        return Rendered(
            issue=issue,
            html=slotted_html,
            text=slotted_text,
            web_html=web_html,
            links=tuple(email_links.urls),
            link_origins=link_origins(issue, email_links.urls),
        )

    # -- stages -------------------------------------------------------------

    def page_context(self, language: str | None = None) -> dict:
        """What every template may use: the newsletter's name, words, archive URL."""
        settings = self.settings
        language = language or settings.newsletter.language
        words = wording_for(language)
        return {
            "newsletter": settings.newsletter,
            "name": settings.newsletter.name,
            "language": language,
            "t": _Words(words),
            "archive_url": settings.base_url + "/",
            "reason": settings.newsletter.reason or words["reason"].format(name=settings.newsletter.name),
        }

    def render_page(self, name: str, **context) -> str:
        """A web page from the templates (archive, unsubscribe, ...), with the page context."""
        values = self.page_context(context.pop("language", None))
        values.update(context)
        return self._render(name, values)

    def _template(self, name: str, issue: model.Issue, links: _LinkRegistry, nonce: str) -> str:
        to_html = _InlineHtml(links.href)
        context = self.page_context(issue.language)
        context.update(
            issue=issue,
            date=format_date(issue.date, issue.language),
            link=links.href,
            slot=lambda slot_name: Markup(_RENDER_MARK.format(nonce=nonce, name=slot_name)),
            inline=to_html.inline,
            blocks=to_html.blocks,
            inline_text=_inline_text,
            blocks_text=_blocks_text,
        )
        return self._render(name, context)

    def _render(self, name: str, context: dict) -> str:
        import jinja2

        try:
            return self.env.get_template(name).render(context)
        except jinja2.TemplateSyntaxError as err:
            raise RenderError(f"{err.filename or err.name}:{err.lineno}: template syntax error: {err.message}") from err
        except jinja2.TemplateNotFound as err:
            raise RenderError(f"template {err.name!r} not found in {', '.join(self.search_path)}") from err
        except jinja2.UndefinedError as err:
            raise RenderError(f"{self._template_line(err) or name}: {err.message}") from err

    def _template_line(self, err: Exception) -> str | None:
        """`FILE:LINE` of the template line that failed: Jinja rewrites the traceback so that
        each template line it ran appears as a frame of that template file."""
        import traceback

        directories = tuple(str(Path(d).resolve()) + "/" for d in self.search_path)
        for frame in reversed(traceback.extract_tb(err.__traceback__)):
            if str(Path(frame.filename).resolve()).startswith(directories):
                return f"{frame.filename}:{frame.lineno}"
        return None

    def _mjml(self, source: str) -> str:
        import mjml

        try:
            # fonts={}: MJML otherwise adds a Google Fonts @import whenever the font stack
            # names Roboto, Lato, etc.: a third-party request on every open that the CJK-first
            # stack does not need.  An explicit <mj-font> in a template still works.
            return mjml.mjml2html(source, fonts={})
        except ValueError as err:
            raise RenderError(f"{EMAIL_TEMPLATE}: MJML did not compile: {_mjml_context(str(err), source)}") from err

    def _inline(self, document: str) -> str:
        try:
            return self.inliner.inline(document)
        except ValueError as err:  # css_inline.InlineError subclasses ValueError
            raise RenderError(f"{INLINE_CSS}: CSS inlining failed: {err}") from err


class _Words(dict):
    """The wording as templates read it (`t.colon`).  Jinja looks `t.colon` up as an
    attribute first and only then as a key: on a plain dict every lookup went through a
    raised AttributeError, dozens of times per entry (bench/bench_build.py)."""

    def __getattr__(self, name: str) -> str:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_ARTICLE = re.compile(r'<div\b[^>]*\brole="article"[^>]*>')
_BODY_END = "</body>"


def main_landmark(document: str, label: str) -> str:
    """The email's content inside a `role="main"` landmark labelled with the issue's title.

    MJML wraps the body in `<div role="article" aria-roledescription="email">` (what webmail
    screen readers announce), which is not a landmark: opened on its own the email then has
    none, and axe-core reports its content as outside every landmark.  The main goes around
    the article (axe-core's `region` rule still finds content outside any landmark when the
    main sits inside an article); a template that MJML renders some other way is left as it is.
    """
    # The regex alone scans every <div>'s attributes (a quarter of a millisecond for the
    # seed); no match can start before the last '>' ahead of the first role="article".
    first = document.find('role="article"')
    found = _ARTICLE.search(document, document.rfind(">", 0, first) + 1) if first != -1 else None
    end = document.rfind(_BODY_END)
    if found is None or end < found.end():
        return document
    opening = f'<div role="main" aria-label="{html.escape(label)}">'
    # One join, not four concatenations: an emoji in the title makes every character of the
    # document four bytes wide (PEP 393), and each `+` would copy all of it again.
    return "".join((document[: found.start()], opening, document[found.start() : end], "</div>", document[end:]))


class _LinkRegistry:
    """Gives each distinct trackable URL a slot, in order of first use."""

    def __init__(self, *, track: bool, nonce: str) -> None:
        self.track = track
        self.nonce = nonce
        self.urls: list[str] = []
        self._index: dict[str, int] = {}

    def href(self, url: str | None) -> str:
        url = (url or "").strip()
        if not self.track or not url.lower().startswith(TRACKABLE_SCHEMES):
            return url
        if url not in self._index:
            self._index[url] = len(self.urls)
            self.urls.append(url)
        return _RENDER_MARK.format(nonce=self.nonce, name=f"{LINK_PREFIX}{self._index[url]}")


class _InlineHtml:
    """The issue model's inline spans and blocks as (escaped) HTML for the email."""

    def __init__(self, href: Callable[[str], str]) -> None:
        self.href = href

    def inline(self, value: model.Inline) -> Markup:
        spans = value.spans
        if len(spans) == 1 and type(spans[0]) is model.Text:
            return escape(spans[0].text)  # most summary items and insights: one run of text
        return Markup("".join([self._span(span) for span in spans]))

    def _span(self, span: model.Span) -> str:
        if isinstance(span, model.Text):
            return str(escape(span.text))
        if isinstance(span, model.Strong):
            return f"<strong>{self._spans(span.children)}</strong>"
        if isinstance(span, model.Emphasis):
            return f"<em>{self._spans(span.children)}</em>"
        if isinstance(span, model.Code):
            return f'<code class="nl-code">{escape(span.text)}</code>'
        if isinstance(span, model.Anchor):
            return f'<a href="{escape(self.href(span.url))}" class="nl-link">{self._spans(span.children)}</a>'
        if isinstance(span, model.Image):
            title = f' title="{escape(span.title)}"' if span.title else ""
            return f'<img src="{escape(span.src)}" alt="{escape(span.alt)}"{title} class="nl-image" />'
        if isinstance(span, model.LineBreak):
            return "<br />"
        raise TypeError(f"unknown span {span!r}")

    def _spans(self, spans: Sequence[model.Span]) -> str:
        return "".join(self._span(span) for span in spans)

    def blocks(self, blocks: Sequence[model.Block]) -> Markup:
        return Markup("".join(self._block(block) for block in blocks))

    def _block(self, block: model.Block) -> str:
        if isinstance(block, model.Paragraph):
            return f'<p class="nl-p">{self.inline(block.inline)}</p>'
        if isinstance(block, model.Heading):
            level = min(max(block.level, 3), 6)
            return f'<h{level} class="nl-h">{self.inline(block.inline)}</h{level}>'
        if isinstance(block, model.CodeBlock):
            return f'<pre class="nl-pre"><code>{escape(block.code)}</code></pre>'
        if isinstance(block, model.Quote):
            return f'<blockquote class="nl-quote">{self.blocks(block.blocks)}</blockquote>'
        if isinstance(block, model.ListBlock):
            tag = "ol" if block.ordered else "ul"
            start = f' start="{block.start}"' if block.ordered and block.start != 1 else ""
            items = "".join(f'<li class="nl-li">{self._item(item)}</li>' for item in block.items)
            return f'<{tag} class="nl-list"{start}>{items}</{tag}>'
        if isinstance(block, model.Rule):
            return '<hr class="nl-hr" />'
        raise TypeError(f"unknown block {block!r}")

    def _item(self, blocks: Sequence[model.Block]) -> str:
        # A list item of one paragraph renders without <p> margins, as Markdown's tight lists do.
        if len(blocks) == 1 and isinstance(blocks[0], model.Paragraph):
            return str(self.inline(blocks[0].inline))
        return str(self.blocks(blocks))


def _inline_text(value: model.Inline) -> str:
    """Inline spans as plain text; a link shows its address after its words."""
    out = []
    for span in value.spans:
        if isinstance(span, model.Anchor):
            words = model.Inline(span.children).plain
            out.append(span.url if words in ("", span.url) else f"{words} ({span.url})")
        elif isinstance(span, (model.Strong, model.Emphasis)):
            out.append(_inline_text(model.Inline(span.children)))
        elif isinstance(span, model.Image):
            out.append(f"[{span.alt or 'image'}: {span.src}]")
        elif isinstance(span, model.Code):
            out.append(f"`{span.text}`")
        elif isinstance(span, model.Text):
            out.append(span.text)
        elif isinstance(span, model.LineBreak):
            out.append("\n")
    return "".join(out)


def _blocks_text(blocks: Sequence[model.Block], indent: str = "") -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, model.Paragraph):
            lines.append(indent + _inline_text(block.inline).replace("\n", "\n" + indent))
        elif isinstance(block, model.Heading):
            lines.append(indent + _inline_text(block.inline))
        elif isinstance(block, model.CodeBlock):
            lines.append("\n".join(indent + "    " + line for line in block.code.split("\n")))
        elif isinstance(block, model.Quote):
            lines.append(_blocks_text(block.blocks, indent + "> "))
        elif isinstance(block, model.ListBlock):
            items = []
            for number, item in enumerate(block.items, start=block.start):
                marker = f"{number}. " if block.ordered else "- "
                items.append(indent + marker + _blocks_text(item, indent + " " * len(marker)).lstrip())
            lines.append("\n".join(items))
        elif isinstance(block, model.Rule):
            lines.append(indent + "----")
    return "\n\n".join(lines)


def _mjml_context(message: str, source: str) -> str:
    """MRML reports a byte span (`... at position 123..130`); show the line and the text there."""
    match = re.search(r"(\d+)\.\.(\d+)", message)
    if not match:
        return message
    raw = source.encode("utf-8")
    start = int(match.group(1))
    line = raw[:start].count(b"\n") + 1
    snippet = raw[start : int(match.group(2))].decode("utf-8", "replace")[:60]
    return f"{message} (generated MJML line {line}, near {snippet!r})"
