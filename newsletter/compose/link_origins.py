"""Where each link of an issue comes from: its words and the entry (story) it sits in.

Stats by story need it: a digest's links often look alike (28 `mp.weixin.qq.com/s/…`
addresses), so a click is shown with the entry's title and category and the link's text.
A URL that appears in several places belongs to the first; the email links it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from newsletter.compose.issue.model import Inline, Issue


@dataclass(frozen=True)
class LinkOrigin:
    text: str = ""
    # The entry's position in the issue; None for related news and a template's own links.
    entry_idx: int | None = None
    # The entry's title (or the related-news section's); None for a template's links.
    entry: str | None = None
    category: str | None = None

    def as_json(self) -> dict:
        return {"text": self.text, "entry_idx": self.entry_idx, "entry": self.entry, "category": self.category}


# A template's own links (the archive, a logo): one shared value, it is frozen.
_NO_ORIGIN = LinkOrigin()


def link_origins(issue: Issue, urls: Sequence[str]) -> tuple[LinkOrigin, ...]:
    """The origin of each of `urls` (an email's distinct links, in slot order)."""
    first: dict[str, LinkOrigin] = {}
    for index, entry in enumerate(issue.entries):
        category = entry.category or None
        for source in entry.sources:
            if source.url and source.url not in first:
                first[source.url] = LinkOrigin(source.text, index, entry.title, category)
        for inline in entry.inlines():
            for anchor in inline.links():
                if anchor.url not in first:
                    words = Inline(anchor.children).plain or anchor.url
                    first[anchor.url] = LinkOrigin(words, index, entry.title, category)
    for item in issue.related:
        if item.url and item.url not in first:
            first[item.url] = LinkOrigin(item.text, None, issue.related_title or None, None)
    return tuple(first.get(url, _NO_ORIGIN) for url in urls)
