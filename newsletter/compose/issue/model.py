"""The issue as the rest of the tool sees it: frozen data, made by `parse.py`.

An `Issue` holds its entries (`Entry`: title, category, sources, key insight, summary
items and any other Markdown as `Block`s) and the related-news links.  Inline Markdown is a
tuple of spans (`Inline`); the renderer turns both into HTML and text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Strong:
    children: tuple[Span, ...]


@dataclass(frozen=True)
class Emphasis:
    children: tuple[Span, ...]


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Anchor:
    url: str
    children: tuple[Span, ...]
    # Where it stands in the issue file, for checks that name FILE:LINE; not part of what
    # the link is, so two equal links on different lines compare equal.
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Image:
    src: str
    alt: str
    title: str = ""
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class LineBreak:
    pass


Span = Text | Strong | Emphasis | Code | Anchor | Image | LineBreak


@dataclass(frozen=True)
class Inline:
    """A run of inline Markdown: text with emphasis, code, links and images."""

    spans: tuple[Span, ...] = ()

    @property
    def plain(self) -> str:
        """The words without markup, e.g. for a subject line or an alt attribute."""
        spans = self.spans
        if len(spans) == 1 and type(spans[0]) is Text:
            return spans[0].text.strip()
        return "".join([span_text(span) for span in spans]).strip()

    def __bool__(self) -> bool:
        return bool(self.plain) or any(isinstance(s, Image) for s in _walk(self.spans))

    def links(self) -> Iterator[Anchor]:
        spans = self.spans
        if len(spans) == 1 and type(spans[0]) is Text:
            # Text alone, most summary lines: nothing to walk (asked for every inline of an
            # issue when its links' origins are gathered).
            return iter(())
        return (span for span in _walk(spans) if isinstance(span, Anchor))

    def images(self) -> Iterator[Image]:
        return (span for span in _walk(self.spans) if isinstance(span, Image))


def _walk(spans: Sequence[Span]) -> Iterator[Span]:
    for span in spans:
        yield span
        if isinstance(span, (Strong, Emphasis, Anchor)):
            yield from _walk(span.children)


def span_text(span: Span) -> str:
    """The words of one span without markup."""
    if type(span) is Text:  # the usual span, tested first
        return span.text
    if isinstance(span, (Text, Code)):
        return span.text
    if isinstance(span, Image):
        return span.alt
    if isinstance(span, LineBreak):
        return "\n"
    return "".join(span_text(child) for child in span.children)


@dataclass(frozen=True)
class Link:
    """A source or related-news item.  `url` is None for a source named without a link."""

    text: str
    url: str | None
    note: str = ""
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Paragraph:
    inline: Inline


@dataclass(frozen=True)
class Heading:
    level: int
    inline: Inline


@dataclass(frozen=True)
class CodeBlock:
    code: str
    language: str = ""


@dataclass(frozen=True)
class Quote:
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class ListBlock:
    ordered: bool
    items: tuple[tuple[Block, ...], ...]
    start: int = 1


@dataclass(frozen=True)
class Rule:
    pass


Block = Paragraph | Heading | CodeBlock | Quote | ListBlock | Rule


@dataclass(frozen=True)
class SummaryItem:
    """One `label：text` bullet of an entry's summary; `label` is empty when there is none."""

    label: str
    text: Inline
    children: tuple[SummaryItem, ...] = ()


@dataclass(frozen=True)
class Entry:
    title: str
    line: int
    category: str = ""
    sources: tuple[Link, ...] = ()
    insight: Inline = field(default_factory=Inline)
    summary: tuple[SummaryItem, ...] = ()
    # Unrecognised Markdown, in source order: `lead_blocks` stood before the insight and the
    # summary (a lead image, say), `blocks` after them.
    lead_blocks: tuple[Block, ...] = ()
    blocks: tuple[Block, ...] = ()
    # Bold words ending in a colon at the start of a line that are no label of the format
    # (`**核心洞查：**`): kept as text, and reported by the checks, since a typo in a label
    # silently turns its box into an ordinary paragraph.
    unknown_labels: tuple[UnknownLabel, ...] = ()

    def inlines(self) -> Iterator[Inline]:
        """Every run of inline Markdown of the entry, in reading order (not its title)."""
        yield self.insight
        yield from _summary_inlines(self.summary)
        for block in self.lead_blocks + self.blocks:
            yield from block_inlines(block)


@dataclass(frozen=True)
class UnknownLabel:
    line: int
    label: str


def _summary_inlines(items: Sequence[SummaryItem]) -> Iterator[Inline]:
    for item in items:
        yield item.text
        yield from _summary_inlines(item.children)


def block_inlines(block: Block) -> Iterator[Inline]:
    if isinstance(block, (Paragraph, Heading)):
        yield block.inline
    elif isinstance(block, Quote):
        for inner in block.blocks:
            yield from block_inlines(inner)
    elif isinstance(block, ListBlock):
        for item in block.items:
            for inner in item:
                yield from block_inlines(inner)


@dataclass(frozen=True)
class IssueWarning:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: warning: {self.message}"


@dataclass(frozen=True)
class Issue:
    path: str
    slug: str
    title: str
    date: dt.date
    subject: str
    preheader: str
    language: str
    list: str | None
    entries: tuple[Entry, ...]
    related: tuple[Link, ...] = ()
    related_title: str = ""
    warnings: tuple[IssueWarning, ...] = ()

    @property
    def categories(self) -> tuple[tuple[str, int], ...]:
        """Each category with its number of entries, in order of first appearance."""
        counts: dict[str, int] = {}
        for entry in self.entries:
            if entry.category:
                counts[entry.category] = counts.get(entry.category, 0) + 1
        return tuple(counts.items())
