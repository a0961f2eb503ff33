"""Scheduled sends: the SQL behind `send --at`, `--cancel`, the runner in `newsletter serve` /
`newsletter worker`, and the list of issues with their states.

Claiming a due schedule is one write transaction: on PostgreSQL the candidate row is locked
with `FOR UPDATE SKIP LOCKED`, so two servers on one database never both take it (the
second skips the locked row and finds it claimed afterwards); on SQLite `BEGIN IMMEDIATE`
(store/database.py) serialises the writers.  The send itself is then guarded again by the
issue's sender lock and the ledger, so even a wrongly taken-over schedule sends nobody twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from newsletter.store.schema import (
    CANCELLED,
    RUNNING,
    SCHEDULED,
    issues,
    schedules,
    utcnow,
)


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    issue_id: int
    slug: str
    send_at: datetime
    timezone: str
    state: str
    force: bool
    list_slug: str
    source_path: str
    source: str
    email_html: str
    email_text: str
    web_html: str
    links: list[dict[str, Any]]
    created_at: datetime
    next_try_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    claimed_by: str | None
    claimed_at: datetime | None
    note: str | None


def _select() -> sa.Select:
    return sa.select(schedules, issues.c.slug).join(issues, issues.c.id == schedules.c.issue_id)


def _row(mapping) -> ScheduleRow:
    values = dict(mapping)
    values["links"] = list(values["links"] or [])
    return ScheduleRow(**values)


def schedule_of(conn: sa.Connection, issue_id: int) -> ScheduleRow | None:
    row = conn.execute(_select().where(schedules.c.issue_id == issue_id)).mappings().first()
    return _row(row) if row else None


def all_schedules(conn: sa.Connection) -> dict[int, ScheduleRow]:
    """Every schedule, by issue id."""
    return {row.issue_id: row for row in (_row(m) for m in conn.execute(_select()).mappings())}


def save_schedule(conn: sa.Connection, issue_id: int, **values: Any) -> ScheduleRow:
    """Record (or replace) the issue's schedule; the caller has checked it is not running."""
    conn.execute(sa.delete(schedules).where(schedules.c.issue_id == issue_id))
    conn.execute(
        schedules.insert().values(
            issue_id=issue_id,
            state=SCHEDULED,
            created_at=utcnow(),
            **values,
        )
    )
    saved = schedule_of(conn, issue_id)
    assert saved is not None
    return saved


def cancel_schedule(conn: sa.Connection, issue_id: int) -> ScheduleRow | None:
    """Withdraw a schedule that has not started; returns it as it was, None if there was none
    waiting."""
    current = schedule_of(conn, issue_id)
    if current is None or current.state != SCHEDULED:
        return current
    conn.execute(
        sa.update(schedules)
        .where(schedules.c.id == current.id, schedules.c.state == SCHEDULED)
        .values(state=CANCELLED, finished_at=utcnow(), note="cancelled")
    )
    return current


def anything_due(conn: sa.Connection, now: datetime) -> bool:
    """Whether `claim_due` may find work: read-only, so the runner's poll does not take
    SQLite's write lock every second."""
    due = sa.func.coalesce(schedules.c.next_try_at, schedules.c.send_at)
    query = sa.select(schedules.c.id).where(
        ((schedules.c.state == SCHEDULED) & (due <= now)) | (schedules.c.state == RUNNING)
    )
    return conn.execute(query.limit(1)).first() is not None


def claim_due(
    conn: sa.Connection, now: datetime, me: str, holder_alive: Callable[[str, datetime | None], bool]
) -> ScheduleRow | None:
    """Take the earliest schedule that is due, or running under a process that is gone;
    mark it running under `me`.  None when there is nothing to do."""
    due = sa.func.coalesce(schedules.c.next_try_at, schedules.c.send_at)
    waiting = (schedules.c.state == SCHEDULED) & (due <= now)
    query = sa.select(schedules.c.id, schedules.c.state, schedules.c.claimed_by, schedules.c.claimed_at).where(
        waiting | (schedules.c.state == RUNNING)
    )
    query = query.order_by(schedules.c.send_at, schedules.c.id).limit(20)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    for row in conn.execute(query).all():
        if row.state == RUNNING and (row.claimed_by == me or holder_alive(row.claimed_by or "", row.claimed_at)):
            continue
        conn.execute(
            sa.update(schedules)
            .where(schedules.c.id == row.id)
            .values(
                state=RUNNING,
                claimed_by=me,
                claimed_at=now,
                started_at=sa.func.coalesce(schedules.c.started_at, now),
            )
        )
        claimed = conn.execute(_select().where(schedules.c.id == row.id)).mappings().one()
        return _row(claimed)
    return None


def heartbeat(conn: sa.Connection, schedule_id: int, me: str) -> None:
    conn.execute(
        sa.update(schedules)
        .where(schedules.c.id == schedule_id, schedules.c.claimed_by == me)
        .values(claimed_at=utcnow())
    )


def release(
    conn: sa.Connection,
    schedule_id: int,
    me: str,
    *,
    state: str,
    note: str | None = None,
    next_try_at: datetime | None = None,
) -> None:
    """Hand the schedule back: finished (done, refused) or waiting again (scheduled)."""
    finished = None if state == SCHEDULED else utcnow()
    conn.execute(
        sa.update(schedules)
        .where(schedules.c.id == schedule_id, schedules.c.claimed_by == me)
        .values(state=state, note=note, next_try_at=next_try_at, finished_at=finished, claimed_by=None, claimed_at=None)
    )


@dataclass(frozen=True)
class IssueOverviewRow:
    id: int
    slug: str
    title: str
    issue_date: date
    snapshot_at: datetime | None
    completed_at: datetime | None
    sender: str | None
    sender_seen_at: datetime | None


def issue_overview_rows(conn: sa.Connection) -> list[IssueOverviewRow]:
    query = sa.select(
        issues.c.id,
        issues.c.slug,
        issues.c.title,
        issues.c.issue_date,
        issues.c.snapshot_at,
        issues.c.completed_at,
        issues.c.sender,
        issues.c.sender_seen_at,
    )
    return [IssueOverviewRow(*row) for row in conn.execute(query)]
