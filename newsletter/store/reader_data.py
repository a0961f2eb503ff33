"""The SQL behind a reader's copy of their data: what was sent to them and what they did.

Only queries live here; newsletter.audience.reader_data shapes the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from newsletter.store.schema import CLICK, OPEN, deliveries, events, issues, links, subscribers


class SentIssue(NamedTuple):
    slug: str
    subject: str
    status: str
    sent_at: datetime | None


class Activity(NamedTuple):
    kind: str
    issue: str | None
    occurred_at: datetime
    url: str | None
    user_agent: str | None
    machine: bool
    detail: Any


def subscriber_row(conn: sa.Connection, subscriber_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).mappings().first()
    return dict(row) if row else None


def issues_sent_to(conn: sa.Connection, subscriber_id: int) -> list[SentIssue]:
    """Every issue in the ledger for the subscriber, oldest first, whatever became of it."""
    query = (
        sa.select(issues.c.slug, issues.c.subject, deliveries.c.status, deliveries.c.sent_at)
        .join(issues, issues.c.id == deliveries.c.issue_id)
        .where(deliveries.c.subscriber_id == subscriber_id)
        .order_by(deliveries.c.id)
    )
    return [SentIssue(*row) for row in conn.execute(query)]


def activity_of(conn: sa.Connection, subscriber_id: int) -> Iterator[Activity]:
    """Every event recorded for the subscriber, oldest first: opens, clicks (with the link's
    address), unsubscribes, confirmations, bounces..."""
    link = links.alias("link")
    query = (
        sa.select(
            events.c.kind,
            issues.c.slug,
            events.c.occurred_at,
            link.c.url,
            events.c.user_agent,
            events.c.machine,
            events.c.detail,
        )
        .select_from(
            events.outerjoin(issues, issues.c.id == events.c.issue_id).outerjoin(
                link, sa.and_(link.c.issue_id == events.c.issue_id, link.c.idx == events.c.link_idx)
            )
        )
        .where(events.c.subscriber_id == subscriber_id)
        .order_by(events.c.occurred_at, events.c.id)
    )
    for row in conn.execute(query):
        yield Activity(*row)


# The kinds `activity_of` returns that are the reader's own reading, kept apart in the file.
READING = (OPEN, CLICK)
