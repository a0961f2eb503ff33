"""Tidying runs of inline spans: trimmed ends, and lines joined the way the text wants (no
space between CJK characters, one between Latin words).
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.compose.issue.model import (
    Block,
    Code,
    CodeBlock,
    Heading,
    Inline,
    LineBreak,
    ListBlock,
    Paragraph,
    Quote,
    Span,
    Strong,
    Text,
    span_text,
)


def trim(spans: Sequence[Span]) -> tuple[Span, ...]:
    """Drop empty text, and whitespace at both ends of a run of spans."""
    if not spans:
        return ()
    first, last = spans[0], spans[-1]
    if (
        type(first) is Text
        and type(last) is Text
        and first.text
        and last.text
        and not first.text[0].isspace()
        and not last.text[-1].isspace()
        and (len(spans) < 3 or all(type(span) is not Text or span.text for span in spans))
    ):
        # The common case, already trimmed: called a few hundred times per issue.
        return tuple(spans)
    result = [span for span in spans if type(span) is not Text or span.text]
    while result and type(result[0]) in (Text, LineBreak) and not span_text(result[0]).strip():
        del result[0]
    while result and type(result[-1]) in (Text, LineBreak) and not span_text(result[-1]).strip():
        result.pop()
    if result and type(result[0]) is Text and result[0].text[:1].isspace():
        result[0] = Text(result[0].text.lstrip())
    if result and type(result[-1]) is Text and result[-1].text[-1:].isspace():
        result[-1] = Text(result[-1].text.rstrip())
    return tuple(result)


def join_softly(spans: list[Span], more: Sequence[Span]) -> None:
    """Append one source line's spans to the previous line's, joined as a soft break is."""
    if spans and more and not isinstance(spans[-1], LineBreak):
        before = "".join(span_text(span) for span in spans[-1:])[-1:]
        after = span_text(more[0])[:1]
        if not (is_cjk(before) or is_cjk(after)):
            spans.append(Text(" "))
    spans.extend(more)


def is_cjk(char: str) -> bool:
    return bool(char) and (
        "\u2e80" <= char <= "\u9fff"
        or "\uf900" <= char <= "\ufaff"
        or "\uff00" <= char <= "\uffef"
        or "\u3000" <= char <= "\u303f"
    )


def blocks_as_inline(blocks: list[Block]) -> Inline:
    spans: list[Span] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            spans.extend(block.inline.spans)
        elif isinstance(block, CodeBlock):
            spans.append(Code(block.code))
        elif isinstance(block, Heading):
            spans.append(Strong(block.inline.spans))
        elif isinstance(block, Quote):
            spans.extend(blocks_as_inline(list(block.blocks)).spans)
        elif isinstance(block, ListBlock):
            spans.extend(blocks_as_inline([b for item in block.items for b in item]).spans)
        spans.append(LineBreak())
    return Inline(trim(tuple(spans)))
