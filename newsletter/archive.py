"""The public archive: the issues readers may see on the web, newest first.

An issue is public once its send began: before that it is a draft that only its editor and
their test sends have seen.
"""

from __future__ import annotations

from newsletter.store import Store
from newsletter.store import archive as queries
from newsletter.store.archive import SentIssue

__all__ = ["SentIssue", "issue_language", "sent_issue", "sent_issues"]


def sent_issues(store: Store, *, limit: int | None = None, with_content: bool = False) -> list[SentIssue]:
    with store.read() as conn:
        return queries.sent_issues(conn, limit=limit, with_content=with_content)


def sent_issue(store: Store, slug: str) -> SentIssue | None:
    """The issue `slug`, with its web page, if it is public."""
    with store.read() as conn:
        return queries.sent_issue(conn, slug)


def issue_language(store: Store, issue_id: int) -> str | None:
    with store.read() as conn:
        return queries.issue_language(conn, issue_id)
