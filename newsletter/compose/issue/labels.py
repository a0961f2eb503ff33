"""The labels of the digest format: which bold words start which part of an entry, in
Chinese and English, and how a label is cut from the text after it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from newsletter.compose.issue.model import Anchor, Inline, Link, Span, Strong, Text, span_text

CATEGORY, SOURCES, INSIGHT, SUMMARY = "category", "sources", "insight", "summary"

LABELS = {
    "分类": CATEGORY,
    "category": CATEGORY,
    "来源": SOURCES,
    "source": SOURCES,
    "sources": SOURCES,
    "核心洞察": INSIGHT,
    "insight": INSIGHT,
    "key insight": INSIGHT,
    "内容简介": SUMMARY,
    "summary": SUMMARY,
    "highlights": SUMMARY,
}
LABEL_NAMES = {
    CATEGORY: "分类 / Category",
    SOURCES: "来源 / Sources",
    INSIGHT: "核心洞察 / Insight",
    SUMMARY: "内容简介 / Summary",
}
RELATED_TITLES = {"其他相关资讯", "相关资讯", "other news", "related", "related news"}

COLONS = ":："
SOURCE_SEPARATORS = re.compile(r"[、,，|｜]")
# A summary label is short text before the first colon; longer text is a sentence that
# happens to contain a colon, not a label.
MAX_LABEL_LENGTH = 40
_LABEL_AT_START = re.compile(rf"\s*([^:：]{{1,{MAX_LABEL_LENGTH}}}?)\s*[:：]\s*")


def label_key(text: str) -> str | None:
    return LABELS.get(text.strip().rstrip(COLONS).strip().lower())


def split_label(spans: Sequence[Span]) -> tuple[str, list[Span]]:
    """`**分类：** x`, `**分类**：x` or `分类：x` -> ("分类", spans of x); no label -> ("", spans)."""
    spans = [span for span in spans if type(span) is not Text or span.text]
    if not spans:
        return "", spans
    first = spans[0]
    if type(first) is Strong and all(type(child) is Text for child in first.children):
        # What Inline(first.children).plain gives for text alone.
        label = "".join([span_text(child) for child in first.children]).strip()
        rest = spans[1:]
        if label[-1:] in COLONS:
            return label.rstrip(COLONS).strip(), rest
        if rest and isinstance(rest[0], Text) and rest[0].text.lstrip()[:1] in COLONS:
            return label.strip(), [Text(rest[0].text.lstrip()[1:])] + rest[1:]
        return "", spans
    if type(first) is Text:
        found = split_text_label(first.text)
        if found is not None:
            return found[0], [Text(found[1])] + spans[1:]
    return "", spans


def split_text_label(text: str) -> tuple[str, str] | None:
    """`分类：x` -> ("分类", "x"); None when the text starts with no label."""
    match = _LABEL_AT_START.match(text)
    # A URL's `https://` is not a label.
    if match and not text[match.end() - 1 :].startswith("//") and not text[: match.end()].rstrip().endswith("://"):
        return match.group(1).strip(), text[match.end() :]
    return None


def sources_of(value: Inline) -> tuple[Link, ...]:
    """Links separated by 、 , ， | ; text between them that is not only separators names a
    source without a link."""
    sources: list[Link] = []
    pending = ""

    def flush_text() -> None:
        nonlocal pending
        for part in SOURCE_SEPARATORS.split(pending):
            if part.strip():
                sources.append(Link(part.strip(), None))
        pending = ""

    for span in value.spans:
        if isinstance(span, Anchor):
            flush_text()
            sources.append(Link(Inline(span.children).plain or span.url, span.url, line=span.line))
        else:
            pending += span_text(span)
    flush_text()
    return tuple(sources)
