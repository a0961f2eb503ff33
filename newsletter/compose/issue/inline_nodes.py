"""Markdown inline nodes to spans: text, bold, italic, code, links and images.

The issue parser reads every run of inline Markdown through these methods; they need only
its `error` and `line_of` (a link or image without a target is a FILE:LINE error).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from newsletter.compose.issue.model import (
    Anchor,
    Code,
    Emphasis,
    Image,
    Inline,
    LineBreak,
    Span,
    Strong,
    Text,
    span_text,
)
from newsletter.compose.issue.spans import is_cjk, trim
from newsletter.errors import IssueError

Node = Any  # markdown_it_pyrs.Node: .name, .meta, .children, .srcmap (byte offsets)


class InlineNodeReader(ABC):
    """What the issue parser makes of inline nodes; the parser supplies `error` and `line_of`."""

    @abstractmethod
    def error(self, message: str, line: int | None) -> IssueError: ...

    @abstractmethod
    def line_of(self, node: Node) -> int: ...

    def inline(self, nodes: Sequence[Node]) -> Inline:
        return Inline(tuple(self.inline_spans(nodes)))

    def inline_spans(self, nodes: Sequence[Node]) -> list[Span]:
        """The spans of `inline(nodes)`, as a list of its own."""
        if len(nodes) == 1 and nodes[0].name == "text":
            # One run of plain text (a title, most lines): what `trim` makes of its span.
            content = str(nodes[0].meta.get("content", "")).strip()
            return [Text(content)] if content else []
        return list(trim(self._spans(nodes)))

    def _child_spans(self, nodes: Sequence[Node]) -> tuple[Span, ...]:
        """`_spans` of a bold, italic or link's children, most often one run of text."""
        if len(nodes) == 1 and nodes[0].name == "text":
            content = nodes[0].meta.get("content", "")
            return (Text(content),) if content else ()
        return tuple(self._spans(nodes))

    def _spans(self, nodes: Sequence[Node]) -> list[Span]:
        spans: list[Span] = []
        for index, node in enumerate(nodes):
            name = node.name
            if name in ("text", "text_special"):
                content = node.meta.get("content", "")
                if content:
                    spans.append(Text(content))
            elif name == "softbreak":
                before = span_text(spans[-1])[-1:] if spans else ""
                after = node_text(nodes[index + 1])[:1] if index + 1 < len(nodes) else ""
                # Between Latin words a soft line break is a space; between CJK characters a
                # space would show as a stray gap.
                spans.append(Text("" if is_cjk(before) or is_cjk(after) else " "))
            elif name == "hardbreak":
                spans.append(LineBreak())
            elif name == "strong":
                spans.append(Strong(self._child_spans(node.children)))
            elif name == "em":
                spans.append(Emphasis(self._child_spans(node.children)))
            elif name == "code_inline":
                spans.append(Code("".join(node_text(child) for child in node.children)))
            elif name in ("link", "autolink"):
                url = str(node.meta.get("url", "")).strip()
                children = self._child_spans(node.children)
                if not url:
                    text = Inline(children).plain
                    raise self.error(f"link [{text}]() has no target; write [{text}](https://…)", self.line_of(node))
                spans.append(Anchor(url, children, line=self.line_of(node)))
            elif name == "image":
                src = str(node.meta.get("url", "")).strip()
                if not src:
                    raise self.error(
                        "image ![…]() has no source; write ![description](https://…/image.png)", self.line_of(node)
                    )
                alt = "".join(node_text(child) for child in node.children).strip()
                spans.append(Image(src, alt, str(node.meta.get("title", "") or ""), line=self.line_of(node)))
            else:
                spans.append(Text(node_text(node)))
        return spans


def node_text(node: Node) -> str:
    content = node.meta.get("content")
    if content:
        return str(content)
    return "".join(node_text(child) for child in node.children)
