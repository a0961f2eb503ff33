"""Markdown issue file -> immutable `Issue`.  Pure: reads one file, touches nothing else.

The format is the digest's (see issues/ for an example):

    ---                                  optional YAML front matter
    subject: ...
    ---
    # 🤖 AI行业速递 - 2026年01月22日        title; the date comes from here or the front matter
    ## Entry title                         one `##` per entry
    > **分类：** 市场动态                    category
    > **来源：** [A](https://…) 、 [B](https://…)
    **核心洞察：** one paragraph            key insight
    **内容简介：**                           summary: a list of `label：text` items
    - 标签：text
    ---                                    separators between entries are optional
    ## 其他相关资讯                          related news: a list of links

The front matter and the issue's date are read by front_matter.py, the labels' vocabulary is
labels.py, inline Markdown becomes spans in inline_nodes.py.  Labels are recognised in
Chinese and English with full- or half-width colons.  Whatever
the parser does not recognise inside an entry is kept as ordinary Markdown blocks, so an
editor never loses text silently.  markdown-it runs with `html=False`: raw HTML in the
source stays text and the templates escape it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import markdown_it_pyrs

from newsletter.compose.excerpt import excerpt
from newsletter.compose.issue.front_matter import issue_date, split_front_matter
from newsletter.compose.issue.inline_nodes import InlineNodeReader
from newsletter.compose.issue.labels import (
    CATEGORY,
    COLONS,
    INSIGHT,
    LABEL_NAMES,
    MAX_LABEL_LENGTH,
    RELATED_TITLES,
    SOURCES,
    SUMMARY,
    label_key,
    sources_of,
    split_label,
    split_text_label,
)
from newsletter.compose.issue.markdown_tree import MarkdownPanic, markdown_tree
from newsletter.compose.issue.model import (
    Block,
    CodeBlock,
    Entry,
    Heading,
    Inline,
    Issue,
    IssueWarning,
    LineBreak,
    Link,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Span,
    Strong,
    SummaryItem,
    Text,
    UnknownLabel,
)
from newsletter.compose.issue.spans import blocks_as_inline, join_softly, trim
from newsletter.errors import IssueError

# The renderer marks per-recipient slots with this (see render.py); an issue must not
# contain it, or its text would be taken for a slot.
RESERVED_MARK = "%%nl:"

# Inbox preview lines show about this many columns (a CJK character fills two).
PREHEADER_COLUMNS = 140
SLUG_PATTERN = re.compile(r"[^0-9A-Za-z_-]+")


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

# markdown-it (the Rust port, with the same CommonMark rules and a byte source map) with no
# raw HTML: `<b>` in an issue stays text.  Off on purpose: setext headings (`text` over
# `---` would turn a paragraph into a bogus entry) and indented code (an indented
# continuation line would turn into a code block).
_MARKDOWN_RULES = [
    "blockquote",
    "fence",
    "heading",
    "hr",
    "list",
    "paragraph",
    "reference",
    "autolink",
    "backticks",
    "emphasis",
    "entity",
    "escape",
    "image",
    "link",
    "newline",
]
_markdown = markdown_it_pyrs.MarkdownIt("zero").enable_many(_MARKDOWN_RULES)  # type: ignore[arg-type]

_INLINE_NODES = frozenset(
    {"text", "text_special", "softbreak", "hardbreak", "strong", "em", "code_inline", "link", "autolink", "image"}
)
_LIST_NODES = ("bullet_list", "ordered_list")

_PLUS_ONE = (1).__add__
Node = Any  # markdown_it_pyrs.Node: .name, .meta, .children, .srcmap (byte offsets)


def load_issue(path: str | Path, *, default_language: str = "zh-CN") -> Issue:
    """Read and parse an issue file; every problem is an `IssueError` naming file and line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IssueError("no such issue file; check the path", path=path) from None
    except IsADirectoryError:
        raise IssueError("is a directory; give the issue's .md file", path=path) from None
    except OSError as err:
        raise IssueError(f"cannot read: {err.strerror}", path=path) from err
    try:
        source = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise IssueError("not UTF-8 text; save the file as UTF-8", path=path, line=line) from None
    return parse_issue(source, path=path, default_language=default_language)


def parse_issue(source: str, *, path: str | Path = "<issue>", default_language: str = "zh-CN") -> Issue:
    return _IssueParser(source, Path(path), default_language).parse()


class _IssueParser(InlineNodeReader):
    def __init__(self, source: str, path: Path, default_language: str) -> None:
        self.source = source.replace("\r\n", "\n").replace("\r", "\n")
        self.path = path
        self.default_language = default_language
        self.warnings: list[IssueWarning] = []
        self.unknown_labels: list[UnknownLabel] = []
        self.line_offset = 0
        # Byte offset where each line of the body starts (the source map counts bytes).
        self.line_starts: list[int] = [0]

    # -- locations and errors -----------------------------------------------

    def error(self, message: str, line: int | None) -> IssueError:
        return IssueError(message, path=self.path, line=line)

    def line_of(self, node: Node) -> int:
        """1-based line in the file of a node's first byte."""
        start = node.srcmap[0] if node.srcmap else 0
        return bisect.bisect_right(self.line_starts, start) + self.line_offset

    # -- the whole file -----------------------------------------------------

    def parse(self) -> Issue:
        front, body, self.line_offset = split_front_matter(self.source, self.error)
        # The front matter too: its subject and preheader reach the templates.
        if RESERVED_MARK in self.source:
            line = self.source[: self.source.index(RESERVED_MARK)].count("\n") + 1
            raise self.error(f"{RESERVED_MARK!r} is reserved for the renderer; write it differently", line)
        encoded = body.encode("utf-8")
        self.line_starts = list(itertools.accumulate(map(_PLUS_ONE, map(len, encoded.split(b"\n"))), initial=0))
        try:
            tree = markdown_tree(_markdown, body)
        except MarkdownPanic as panic:
            raise self.error(
                "the Markdown parser cannot read this line (a '[' before a ` that never closes?); "
                "close the code span or write \\[",
                panic.line + self.line_offset,
            ) from None
        nodes = [node for node in tree.children if node.name != "definition"]
        title, title_line, rest = self.read_title(nodes)
        entries: list[Entry] = []
        related: tuple[Link, ...] = ()
        related_title = ""
        for heading, children in self.sections(rest):
            name = self.inline(heading.children).plain
            line = self.line_of(heading)
            if name.lower().rstrip(COLONS) in RELATED_TITLES:
                related_title = name
                related = self.read_related(children, line)
            else:
                entries.append(self.read_entry(name, line, children))
        if not entries:
            raise self.error("no entries; start each entry with a '## ' heading", title_line)

        date = issue_date(front, title, title_line, source=self.source, stem=self.path.stem, error=self.error)
        subject = str(front.get("subject") or title)
        preheader = str(front.get("preheader") or "") or _default_preheader(entries)
        list_slug = front.get("list")
        return Issue(
            path=str(self.path),
            slug=_slug(self.path, date),
            title=title,
            date=date,
            subject=" ".join(subject.split()),
            preheader=" ".join(preheader.split()),
            language=str(front.get("language") or self.default_language).strip(),
            list=str(list_slug) if list_slug else None,
            entries=tuple(entries),
            related=related,
            related_title=related_title,
            warnings=tuple(self.warnings),
        )

    def read_title(self, nodes: list[Node]) -> tuple[str, int, list[Node]]:
        if not nodes:
            raise self.error("no '# ' title; the first line should be '# <issue title>'", 1)
        first = nodes[0]
        line = self.line_of(first)
        if first.name != "heading" or first.meta.get("level") != 1:
            if first.name == "heading":
                raise self.error("the issue must start with a '# ' title line before any '## ' entry", line)
            if first.name == "hr" and len(nodes) > 1:
                return self.read_title(nodes[1:])
            raise self.error("text before the '# ' title; the file must start with '# Title'", line)
        title = self.inline(first.children).plain
        if not title:
            raise self.error("the '# ' title is empty; write the issue's title after '# '", line)
        return title, line, nodes[1:]

    def sections(self, nodes: list[Node]) -> Iterator[tuple[Node, list[Node]]]:
        """Split the blocks after the title into (## heading, its blocks) pairs."""
        heading: Node | None = None
        children: list[Node] = []
        for node in nodes:
            level = node.meta.get("level") if node.name == "heading" else None
            if level == 1:
                raise self.error("a second '# ' title; start entries with '## '", self.line_of(node))
            if level == 2:
                if heading is not None:
                    yield heading, children
                heading, children = node, []
            elif heading is not None:
                children.append(node)
            elif node.name != "hr":
                raise self.error(
                    "text before the first '## ' entry; put it inside an entry or into the front matter 'preheader'",
                    self.line_of(node),
                )
        if heading is not None:
            yield heading, children

    # -- one entry ----------------------------------------------------------

    def read_entry(self, title: str, line: int, nodes: list[Node]) -> Entry:
        if not title:
            raise self.error("an entry's '## ' title is empty; write it after '## '", line)
        fields: dict[str, _EntryField] = {}
        field_lines: dict[str, int] = {}
        lead: list[Block] = []
        after: list[Block] = []
        pending_summary: int | None = None  # line of a summary label still waiting for its list
        self.unknown_labels = []

        def target() -> list[Block]:
            return after if (INSIGHT in fields or SUMMARY in fields) else lead

        def assign(key: str, value: _EntryField, at: int) -> None:
            if key in fields:
                raise self.error(
                    f"second {LABEL_NAMES[key]} in this entry (the first is on line {field_lines[key]}); keep one", at
                )
            fields[key] = value
            field_lines[key] = at

        for node in nodes:
            if pending_summary is not None:
                if node.name in _LIST_NODES:
                    assign(SUMMARY, self.summary_items(node), pending_summary)
                    pending_summary = None
                    continue
                raise self.error(
                    f"{LABEL_NAMES[SUMMARY]} has nothing after it; follow it with a '- label：text' list",
                    pending_summary,
                )
            if node.name == "hr":
                continue
            if node.name == "paragraph":
                blocks = target()
                leftover, pending_summary = self.labelled_lines(node, assign)
                if leftover:
                    blocks.append(Paragraph(leftover))
            elif node.name == "blockquote":
                blocks = target()
                kept: list[Block] = []
                for inner in node.children:
                    if inner.name != "paragraph":
                        kept.append(self.block(inner))
                        continue
                    leftover, summary_line = self.labelled_lines(inner, assign)
                    if summary_line is not None:
                        raise self.error(
                            f"{LABEL_NAMES[SUMMARY]} inside a '>' quote; put it and its list after the quote",
                            summary_line,
                        )
                    if leftover:
                        kept.append(Paragraph(leftover))
                if kept:
                    blocks.append(Quote(tuple(kept)))
            else:
                target().append(self.block(node))
        if pending_summary is not None:
            raise self.error(
                f"{LABEL_NAMES[SUMMARY]} has nothing after it; follow it with a '- label：text' list", pending_summary
            )
        for key in (CATEGORY, SOURCES):
            if key not in fields:
                self.warnings.append(IssueWarning(str(self.path), line, f"entry {title!r} has no {LABEL_NAMES[key]}"))
        return Entry(
            title=title,
            line=line,
            category=_field(fields, CATEGORY, str, ""),
            sources=_field(fields, SOURCES, tuple, ()),
            insight=_field(fields, INSIGHT, Inline, Inline()),
            summary=_field(fields, SUMMARY, tuple, ()),
            lead_blocks=tuple(lead),
            blocks=tuple(after),
            unknown_labels=tuple(self.unknown_labels),
        )

    def labelled_lines(self, paragraph: Node, assign) -> tuple[Inline, int | None]:
        """Take the `**label：** value` lines out of a paragraph.

        Returns the lines without a known label (joined back into one Inline) and, when the
        paragraph ends with a summary label, that label's line: its list follows the paragraph.
        Lines after an insight label continue the insight until the next label.
        """
        leftover: list[Span] = []
        insight: list[Span] | None = None
        insight_line = 0
        summary_line: int | None = None

        def finish_insight() -> None:
            nonlocal insight
            if insight is not None:
                value = Inline(trim(insight))
                if not value:
                    raise self.error(
                        f"{LABEL_NAMES[INSIGHT]} has nothing after it; write the insight on the same line", insight_line
                    )
                assign(INSIGHT, value, insight_line)
                insight = None

        for line, spans in self.lines(paragraph):
            label, rest = split_label(spans)
            key = label_key(label) if label else None
            if key is None:
                if label and isinstance(spans[0], Strong):
                    self.unknown_labels.append(UnknownLabel(line, label))
                if summary_line is not None:
                    raise self.error(
                        f"text after {LABEL_NAMES[SUMMARY]}; the summary label must be followed directly by its list",
                        line,
                    )
                join_softly(insight if insight is not None else leftover, spans)
                continue
            finish_insight()
            if key == INSIGHT:
                insight, insight_line = rest, line  # untrimmed: keeps a hard break at its end
                continue
            value = Inline(trim(rest))
            if key == CATEGORY:
                if not value:
                    raise self.error(f"{LABEL_NAMES[CATEGORY]} has nothing after it; name the category", line)
                assign(CATEGORY, value.plain, line)
            elif key == SOURCES:
                sources = sources_of(value)
                if not sources:
                    raise self.error(f"{LABEL_NAMES[SOURCES]} has nothing after it; list the sources as links", line)
                assign(SOURCES, sources, line)
            else:
                if value:
                    raise self.error(
                        f"text after {LABEL_NAMES[SUMMARY]} on the same line; put the summary in a '- label：text' list below it",
                        line,
                    )
                summary_line = line
        finish_insight()
        return Inline(trim(leftover)), summary_line

    def summary_items(self, list_node: Node) -> tuple[SummaryItem, ...]:
        items = []
        for item in list_node.children:
            text: list[Span] = []
            children: tuple[SummaryItem, ...] = ()
            extra: list[Block] = []
            nodes = item.children
            if len(nodes) == 1 and nodes[0].name == "text":
                # One run of text, the usual summary line (`- 标签：text`): what `inline`
                # makes of it (a trimmed Text, or nothing), without its walk.
                content = str(nodes[0].meta.get("content", "")).strip()
                found = split_text_label(content) if content else None
                if found is not None:
                    # What split_label and trim below make of it: the label's pattern takes
                    # the spaces after the colon, and the content is trimmed already.
                    label, after = found
                    if not after:
                        raise self.error(
                            f"summary item '{label}' has nothing after its colon; write the text after it",
                            self.line_of(item),
                        )
                    items.append(SummaryItem(label, Inline((Text(after),))))
                    continue
                text = [Text(content)] if content else []
                nodes = []
            elif all(node.name in _INLINE_NODES for node in nodes):
                # A tight item of inline Markdown alone: what the loop below makes of it,
                # without the blocks in between.
                text = self.inline_spans(nodes)
                nodes = []
            for block in self.item_blocks(item) if nodes else ():
                if isinstance(block, Paragraph) and not text and not children:
                    text = list(block.inline.spans)
                elif isinstance(block, _NestedList) and not children:
                    children = self.summary_items(block.node)
                else:
                    extra.append(block.block if isinstance(block, _NestedList) else block)
            if extra:
                # Something unusual inside a bullet (a code block, a quote): keep it as a child.
                children += (SummaryItem("", blocks_as_inline(extra)),)
            label, rest = split_label(text)
            if label and len(label) > MAX_LABEL_LENGTH:
                label, rest = "", text
            body = trim(rest)
            if label and not body:
                raise self.error(
                    f"summary item '{label}' has nothing after its colon; write the text after it", self.line_of(item)
                )
            items.append(SummaryItem(label, Inline(body), children))
        return tuple(items)

    def read_related(self, nodes: list[Node], line: int) -> tuple[Link, ...]:
        links: list[Link] = []
        for node in nodes:
            if node.name == "hr":
                continue
            if node.name not in _LIST_NODES:
                raise self.error(
                    "the related-news section takes a list of links ('- [title](https://…)'); move other text into an entry",
                    self.line_of(node),
                )
            for item in node.children:
                nodes = item.children
                if all(child.name in _INLINE_NODES for child in nodes):
                    # A tight item (`- [title](url) note`): its one paragraph as the loop
                    # below would join and trim it, without the blocks in between.
                    inline = self.inline(nodes)
                else:
                    spans: list[Span] = []
                    for block in self.item_blocks(item):
                        if isinstance(block, Paragraph):
                            join_softly(spans, block.inline.spans)
                    inline = Inline(trim(tuple(spans)))
                anchor = next(inline.links(), None)
                if anchor is not None:
                    words = Inline(anchor.children).plain
                    note = inline.plain.replace(words, "", 1).strip(" -—–:：|·")
                    links.append(Link(words or anchor.url, anchor.url, note, line=anchor.line))
                elif inline.plain:
                    links.append(Link(inline.plain, None, line=self.line_of(item)))
        if not links:
            raise self.error(
                "the related-news section is empty; list links as '- [title](https://…)' or remove it", line
            )
        return tuple(links)

    # -- generic Markdown ---------------------------------------------------

    def block(self, node: Node) -> Block:
        name = node.name
        if name == "paragraph":
            return Paragraph(self.inline(node.children))
        if name == "heading":
            return Heading(int(node.meta.get("level", 3)), self.inline(node.children))
        if name in ("fence", "code_block"):
            info = str(node.meta.get("info") or "").strip()
            return CodeBlock(str(node.meta.get("content", "")).rstrip("\n"), info.split(" ")[0])
        if name == "blockquote":
            return Quote(tuple(self.block(inner) for inner in node.children))
        if name in _LIST_NODES:
            items = tuple(
                tuple(b.block if isinstance(b, _NestedList) else b for b in self.item_blocks(item))
                for item in node.children
            )
            return ListBlock(name == "ordered_list", items, int(node.meta.get("start", 1) or 1))
        if name == "hr":
            return Rule()
        # Anything this parser does not know yet is kept as its text, never dropped.
        return Paragraph(
            self.inline(node.children) if node.children else Inline((Text(str(node.meta.get("content", ""))),))
        )

    def item_blocks(self, item: Node) -> list[Block | _NestedList]:
        """A list item's content as blocks; a tight list item holds its inline nodes directly."""
        blocks: list[Block | _NestedList] = []
        run: list[Node] = []
        for child in item.children:
            if child.name in _INLINE_NODES:
                run.append(child)
                continue
            if run:
                blocks.append(Paragraph(self.inline(run)))
                run = []
            if child.name in _LIST_NODES:
                blocks.append(_NestedList(child, self.block(child)))
            else:
                blocks.append(self.block(child))
        if run:
            blocks.append(Paragraph(self.inline(run)))
        return blocks

    def lines(self, paragraph: Node) -> Iterator[tuple[int, list[Span]]]:
        """A paragraph's source lines, each as spans, with its line number."""
        run: list[Node] = []
        for child in paragraph.children:
            if child.name in ("softbreak", "hardbreak"):
                if run:
                    # A hard break (two trailing spaces or a backslash) stays a line break.
                    spans = self.inline_spans(run)
                    if child.name == "hardbreak":
                        spans.append(LineBreak())
                    yield self.line_of(run[0]), spans
                run = []
            else:
                run.append(child)
        if run:
            yield self.line_of(run[0]), self.inline_spans(run)


@dataclass(frozen=True)
class _NestedList:
    """A list inside a list item: summary items read it as children, other lists as a block."""

    node: Node
    block: Block


# What a label of an entry holds: the category's text, the sources, the insight, the summary.
_EntryField = str | tuple[Link, ...] | Inline | tuple[SummaryItem, ...]
_F = TypeVar("_F")


def _field(fields: dict[str, _EntryField], key: str, kind: type[_F], default: _F) -> _F:
    value = fields.get(key, default)
    assert isinstance(value, kind), (key, value)  # `assign` stores each label's own type
    return value


def _default_preheader(entries: list[Entry]) -> str:
    """Inbox preview text: the entry titles say more than the first words of the body; cut
    at a word or ideograph boundary with an ellipsis, never mid-word."""
    return excerpt(" · ".join(entry.title for entry in entries), PREHEADER_COLUMNS)


def _slug(path: Path, date: dt.date) -> str:
    slug = SLUG_PATTERN.sub("-", path.stem).strip("-")
    return slug if slug and path.suffix else date.isoformat()
