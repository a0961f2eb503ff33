"""The SQL behind `newsletter stats` and `/stats/SLUG`: counts over the ledger and events.

Every count is done in the database (one pass over an issue's rows per question, using the
(issue_id, kind, occurred_at) index), so an issue of a million recipients never travels
through Python.  `newsletter.stats` shapes the answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from newsletter.store.schema import (
    CLICK,
    OPEN,
    SES_CLICK,
    SES_OPEN,
    deliveries,
    events,
    issues,
    links,
)

# SES's own open and click tracking counts alongside ours: a reader is a reader whichever
# pixel or redirect saw them.
OPEN_KINDS = (OPEN, SES_OPEN)
CLICK_KINDS = (CLICK, SES_CLICK)


@dataclass(frozen=True)
class IssueRow:
    id: int
    slug: str
    title: str
    subject: str
    language: str
    issue_date: date
    snapshot_at: datetime | None
    completed_at: datetime | None


def issue_row(conn: sa.Connection, slug: str) -> IssueRow | None:
    row = conn.execute(_issue_select().where(issues.c.slug == slug)).first()
    return IssueRow(*row) if row else None


def issue_rows(conn: sa.Connection) -> list[IssueRow]:
    """Every stored issue, newest first."""
    query = _issue_select().order_by(issues.c.issue_date.desc(), issues.c.id.desc())
    return [IssueRow(*row) for row in conn.execute(query)]


def _issue_select() -> sa.Select:
    return sa.select(
        issues.c.id,
        issues.c.slug,
        issues.c.title,
        issues.c.subject,
        issues.c.language,
        issues.c.issue_date,
        issues.c.snapshot_at,
        issues.c.completed_at,
    )


def first_sent_at(conn: sa.Connection, issue_id: int) -> datetime | None:
    query = sa.select(sa.func.min(deliveries.c.sent_at)).where(deliveries.c.issue_id == issue_id)
    return conn.execute(query).scalar_one_or_none()


def recipients_with(conn: sa.Connection, issue_id: int, kinds: tuple[str, ...]) -> int:
    """How many subscribers of the issue have at least one event of these kinds."""
    query = sa.select(sa.func.count(sa.distinct(events.c.subscriber_id))).where(
        events.c.issue_id == issue_id, events.c.kind.in_(kinds), events.c.subscriber_id.is_not(None)
    )
    return conn.execute(query).scalar_one()


def event_details(conn: sa.Connection, issue_id: int, kind: str) -> list[tuple[int | None, dict[str, Any] | None]]:
    """(subscriber id, detail) of each event of one kind: for bounces, whose hard/soft
    reading is in `detail`.  Bounces are a few percent of an issue at most."""
    query = sa.select(events.c.subscriber_id, events.c.detail).where(
        events.c.issue_id == issue_id, events.c.kind == kind
    )
    return [(row.subscriber_id, row.detail) for row in conn.execute(query)]


def people_and_machines(conn: sa.Connection, issue_id: int, kinds: tuple[str, ...]) -> tuple[int, int]:
    """Distinct subscribers with events of these kinds: (people, machines).

    A subscriber counts as a person when at least one of their events was not marked as a
    machine's, else as a machine; so the two add up to everyone with such an event.
    """
    per_subscriber = (
        sa.select(
            events.c.subscriber_id,
            sa.func.max(sa.case((events.c.machine.is_(sa.false()), 1), else_=0)).label("human"),
        )
        .where(events.c.issue_id == issue_id, events.c.kind.in_(kinds), events.c.subscriber_id.is_not(None))
        .group_by(events.c.subscriber_id)
        .subquery()
    )
    query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(per_subscriber.c.human), 0))
    total, people = conn.execute(query).one()
    return int(people), int(total) - int(people)


@dataclass(frozen=True)
class LinkRow:
    idx: int
    url: str
    clicks: int
    machine_clicks: int
    people: int
    text: str | None = None
    entry_idx: int | None = None
    entry: str | None = None
    category: str | None = None


def link_rows(conn: sa.Connection, issue_id: int) -> list[LinkRow]:
    """Every link of the issue with its clicks, including links nobody clicked."""
    is_click = events.c.kind.in_(CLICK_KINDS)
    counted = (
        sa.select(
            events.c.link_idx,
            sa.func.count().label("clicks"),
            sa.func.sum(sa.case((events.c.machine.is_(sa.true()), 1), else_=0)).label("machine_clicks"),
            sa.func.count(sa.distinct(sa.case((events.c.machine.is_(sa.false()), events.c.subscriber_id)))).label(
                "people"
            ),
        )
        .where(events.c.issue_id == issue_id, is_click, events.c.link_idx.is_not(None))
        .group_by(events.c.link_idx)
        .subquery()
    )
    query = (
        sa.select(
            links.c.idx,
            links.c.url,
            sa.func.coalesce(counted.c.clicks, 0),
            sa.func.coalesce(counted.c.machine_clicks, 0),
            sa.func.coalesce(counted.c.people, 0),
            links.c.text,
            links.c.entry_idx,
            links.c.entry,
            links.c.category,
        )
        .select_from(links.outerjoin(counted, counted.c.link_idx == links.c.idx))
        .where(links.c.issue_id == issue_id)
        .order_by(links.c.idx)
    )
    return [
        LinkRow(int(idx), url, int(c), int(m), int(p), text, entry_idx, entry, category)
        for idx, url, c, m, p, text, entry_idx, entry, category in conn.execute(query)
    ]


@dataclass(frozen=True)
class GroupRow:
    """Clicks on the links of one entry (or one category)."""

    key: tuple[Any, ...]
    clicks: int
    machine_clicks: int
    people: int


def entry_clicks(conn: sa.Connection, issue_id: int) -> list[GroupRow]:
    """Clicks per entry: keys (entry position, entry title, category)."""
    return _clicks_by(conn, issue_id, (links.c.entry_idx, links.c.entry, links.c.category))


def category_clicks(conn: sa.Connection, issue_id: int) -> list[GroupRow]:
    """Clicks per category: keys (category,)."""
    return _clicks_by(conn, issue_id, (links.c.category,))


def _clicks_by(conn: sa.Connection, issue_id: int, columns: tuple[sa.Column, ...]) -> list[GroupRow]:
    """Clicks grouped by columns of `links` (its entry, or its category): every group of
    the issue's links, clicked or not.  People are counted once per group, however many of
    its links they clicked, so a group's people are not the sum of its links'."""
    joined = links.outerjoin(
        events,
        (events.c.issue_id == links.c.issue_id) & (events.c.link_idx == links.c.idx) & events.c.kind.in_(CLICK_KINDS),
    )
    query = (
        sa.select(
            *columns,
            sa.func.count(events.c.id),
            sa.func.coalesce(sa.func.sum(sa.case((events.c.machine.is_(sa.true()), 1), else_=0)), 0),
            sa.func.count(sa.distinct(sa.case((events.c.machine.is_(sa.false()), events.c.subscriber_id)))),
        )
        .select_from(joined)
        .where(links.c.issue_id == issue_id)
        .group_by(*columns)
    )
    width = len(columns)
    return [
        GroupRow(tuple(row[:width]), int(row[width]), int(row[width + 1]), int(row[width + 2]))
        for row in conn.execute(query)
    ]


def hourly_activity(conn: sa.Connection, issue_id: int) -> list[tuple[datetime, str, bool, int]]:
    """(hour, kind, machine, events) for opens and clicks, the hour truncated in UTC."""
    hour = _hour(conn, events.c.occurred_at)
    query = (
        sa.select(hour.label("hour"), events.c.kind, events.c.machine, sa.func.count())
        .where(events.c.issue_id == issue_id, events.c.kind.in_(OPEN_KINDS + CLICK_KINDS))
        .group_by(hour, events.c.kind, events.c.machine)
    )
    return [(_as_hour(value), kind, bool(machine), int(number)) for value, kind, machine, number in conn.execute(query)]


def _hour(conn: sa.Connection, column: sa.ColumnElement) -> sa.ColumnElement:
    # Both store UTC: PostgreSQL a timestamptz (the session zone must not shift the
    # truncation, hence the explicit zone), SQLite the UTC wall time as ISO text.
    if conn.dialect.name == "postgresql":
        return sa.func.date_trunc("hour", sa.func.timezone("UTC", column))
    return sa.func.strftime("%Y-%m-%d %H:00:00", column)


def _as_hour(value: datetime | str) -> datetime:
    # SQLite's strftime gives text, PostgreSQL's date_trunc a timestamp.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
