"""The public archive's queries: issues that were sent, newest first.

An issue is public once its send began (`snapshot_at` set): before that it is a draft that
only its editor and their test sends have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from newsletter.store.schema import issues


@dataclass(frozen=True)
class SentIssue:
    slug: str
    title: str
    subject: str
    preheader: str
    issue_date: date
    language: str
    snapshot_at: datetime
    completed_at: datetime | None
    web_html: str | None = None

    @property
    def updated_at(self) -> datetime:
        return self.completed_at or self.snapshot_at


_SUMMARY_COLUMNS = (
    issues.c.slug,
    issues.c.title,
    issues.c.subject,
    issues.c.preheader,
    issues.c.issue_date,
    issues.c.language,
    issues.c.snapshot_at,
    issues.c.completed_at,
)
_NEWEST_FIRST = (issues.c.issue_date.desc(), issues.c.snapshot_at.desc(), issues.c.id.desc())


def sent_issues(conn: sa.Connection, *, limit: int | None = None, with_content: bool = False) -> list[SentIssue]:
    columns = (*_SUMMARY_COLUMNS, issues.c.web_html) if with_content else _SUMMARY_COLUMNS
    query = sa.select(*columns).where(issues.c.snapshot_at.is_not(None)).order_by(*_NEWEST_FIRST)
    if limit is not None:
        query = query.limit(limit)
    return [SentIssue(*row) for row in conn.execute(query)]


def sent_issue(conn: sa.Connection, slug: str) -> SentIssue | None:
    row = conn.execute(
        sa.select(*_SUMMARY_COLUMNS, issues.c.web_html).where(issues.c.slug == slug, issues.c.snapshot_at.is_not(None))
    ).first()
    return SentIssue(*row) if row else None


def issue_language(conn: sa.Connection, issue_id: int) -> str | None:
    return conn.execute(sa.select(issues.c.language).where(issues.c.id == issue_id)).scalar_one_or_none()
