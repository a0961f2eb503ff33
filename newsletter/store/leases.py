"""Sender leases: who is sending an issue, and which `sending` rows are whose.

Each `newsletter send` of an issue has a row in `senders` that it keeps alive with a
heartbeat; each row it claims carries its id (`deliveries.sender_id`).  Every change of
hands here is one conditional statement, so two processes racing for the same thing (the
issue's lock on SQLite, a dead sender's rows) cannot both win: PostgreSQL re-checks an
UPDATE's WHERE on the row as the winner committed it (READ COMMITTED, "UPDATE ... the
second updater ... re-evaluates its WHERE clause", PostgreSQL docs 13.2.1), and SQLite has
one writer at a time.

Only SQL lives here; `newsletter.sending.senders` decides who is alive and when to call what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from newsletter.store.schema import QUEUED, SENDING, SENT, deliveries, issues, senders, utcnow


@dataclass(frozen=True)
class LeaseRow:
    id: int
    name: str
    heartbeat_at: datetime
    ended_at: datetime | None
    sent: int


@dataclass(frozen=True)
class Holder:
    """Who holds an issue's lock (`issues.sender`) and when it last said so."""

    name: str
    seen_at: datetime | None


# ---- the issue's lock (one sender at a time: SQLite) ----


def take_issue_lock(conn: sa.Connection, issue_id: int, me: str, *, free_before: datetime) -> bool:
    """Become the issue's only sender if nobody is, it is already me, or the holder has been
    silent since `free_before`; in one statement."""
    free = sa.or_(issues.c.sender.is_(None), issues.c.sender == me, issues.c.sender_seen_at < free_before)
    result = conn.execute(
        sa.update(issues).where(issues.c.id == issue_id, free).values(sender=me, sender_seen_at=utcnow())
    )
    return result.rowcount == 1


def take_issue_lock_from(conn: sa.Connection, issue_id: int, me: str, holder: str) -> bool:
    """Take the lock from `holder`, found dead, unless someone else took it first."""
    result = conn.execute(
        sa.update(issues)
        .where(issues.c.id == issue_id, issues.c.sender == holder)
        .values(sender=me, sender_seen_at=utcnow())
    )
    return result.rowcount == 1


def lock_holder(conn: sa.Connection, issue_id: int) -> Holder | None:
    row = conn.execute(sa.select(issues.c.sender, issues.c.sender_seen_at).where(issues.c.id == issue_id)).first()
    if row is None or row.sender is None:
        return None
    return Holder(row.sender, row.sender_seen_at)


def show_sender(conn: sa.Connection, issue_id: int, name: str | None, seen_at: datetime | None = None) -> None:
    """Name `name` as the issue's sender (what `issues` and the schedule read), or nobody."""
    conn.execute(sa.update(issues).where(issues.c.id == issue_id).values(sender=name, sender_seen_at=seen_at))


def release_issue_lock(conn: sa.Connection, issue_id: int, me: str, *, successor: LeaseRow | None = None) -> None:
    """Let go of the issue if I am the one named on it; name `successor` (a sender still
    running) instead of nobody."""
    conn.execute(
        sa.update(issues)
        .where(issues.c.id == issue_id, issues.c.sender == me)
        .values(
            sender=successor.name if successor else None,
            sender_seen_at=successor.heartbeat_at if successor else None,
        )
    )


# ---- leases ----


def open_lease(conn: sa.Connection, issue_id: int, name: str) -> int:
    """A lease of `name` on the issue: the one it has open already if any (a second try
    after a COMMIT whose answer was lost: one process, one lease), else a new one."""
    found = conn.execute(
        sa.select(senders.c.id)
        .where(senders.c.issue_id == issue_id, senders.c.name == name, senders.c.ended_at.is_(None))
        .order_by(senders.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if found is not None:
        return found
    now = utcnow()
    return conn.execute(
        senders.insert().values(issue_id=issue_id, name=name, started_at=now, heartbeat_at=now).returning(senders.c.id)
    ).scalar_one()


def beat(conn: sa.Connection, lease_id: int, *, sent: int) -> bool:
    """Say the lease's sender is alive; False when another sender has declared it dead."""
    result = conn.execute(
        sa.update(senders)
        .where(senders.c.id == lease_id, senders.c.ended_at.is_(None))
        .values(heartbeat_at=utcnow(), sent=sent)
    )
    return result.rowcount == 1


def close_lease(conn: sa.Connection, lease_id: int, *, sent: int) -> None:
    conn.execute(
        sa.update(senders)
        .where(senders.c.id == lease_id)
        .values(ended_at=sa.func.coalesce(senders.c.ended_at, utcnow()), sent=sent)
    )


def open_leases(conn: sa.Connection, issue_id: int) -> list[LeaseRow]:
    """The issue's senders that have not ended (alive, or dead and not yet found out)."""
    query = (
        sa.select(senders.c.id, senders.c.name, senders.c.heartbeat_at, senders.c.ended_at, senders.c.sent)
        .where(senders.c.issue_id == issue_id, senders.c.ended_at.is_(None))
        .order_by(senders.c.id)
    )
    return [LeaseRow(*row) for row in conn.execute(query)]


def end_lost(conn: sa.Connection, lease_ids: Sequence[int]) -> list[int]:
    """Mark leases whose senders were found dead as ended; returns those this call ended
    (another sender may have got to some first)."""
    if not lease_ids:
        return []
    result = conn.execute(
        sa.update(senders)
        .where(senders.c.id.in_(lease_ids), senders.c.ended_at.is_(None))
        .values(ended_at=utcnow(), lost=True)
        .returning(senders.c.id)
    )
    return sorted(result.scalars())


def ended_lease_ids(conn: sa.Connection, issue_id: int) -> list[int]:
    query = sa.select(senders.c.id).where(senders.c.issue_id == issue_id, senders.c.ended_at.is_not(None))
    return list(conn.execute(query).scalars())


def lease_names(conn: sa.Connection, lease_ids: Sequence[int]) -> dict[int, str]:
    if not lease_ids:
        return {}
    return {
        row.id: row.name
        for row in conn.execute(sa.select(senders.c.id, senders.c.name).where(senders.c.id.in_(lease_ids)))
    }


# ---- rows left in `sending` by senders that are gone ----


def _orphaned(issue_id: int, ended: Sequence[int]) -> sa.ColumnElement[bool]:
    """Rows in `sending` whose sender has ended, or that no lease claimed (rows claimed
    before migration 0007, or by a tool of its own)."""
    owner: sa.ColumnElement[bool] = deliveries.c.sender_id.is_(None)
    if ended:
        owner = sa.or_(owner, deliveries.c.sender_id.in_(ended))
    return sa.and_(deliveries.c.issue_id == issue_id, deliveries.c.status == SENDING, owner)


def adopt_orphans(
    conn: sa.Connection, issue_id: int, lease_id: int, ended: Sequence[int]
) -> list[tuple[int, str | None]]:
    """Make the rows left in `sending` by the `ended` senders mine, in one statement, and
    return (row id, message id) of those I got: a row two senders race for goes to one."""
    result = conn.execute(
        sa.update(deliveries)
        .where(_orphaned(issue_id, ended))
        .values(sender_id=lease_id)
        .returning(deliveries.c.id, deliveries.c.message_id)
    )
    return sorted((row.id, row.message_id) for row in result)


def settle_adopted(conn: sa.Connection, lease_id: int, *, arrived: Sequence[int], missing: Sequence[int]) -> None:
    """Adopted rows the transport showed to have arrived become sent; the others go back to
    the queue (the outbox shows they never left)."""
    now = utcnow()
    if arrived:
        conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(arrived), deliveries.c.sender_id == lease_id, deliveries.c.status == SENDING)
            .values(status=SENT, sent_at=now, updated_at=now)
        )
    if missing:
        conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(missing), deliveries.c.sender_id == lease_id, deliveries.c.status == SENDING)
            .values(status=QUEUED, failure=None, error=None, updated_at=now)
        )


def requeue_orphans(conn: sa.Connection, issue_id: int, ended: Sequence[int]) -> int:
    """`--resend-uncertain`: put every row left in `sending` by an ended sender back in the
    queue; never a live sender's."""
    result = conn.execute(
        sa.update(deliveries)
        .where(_orphaned(issue_id, ended))
        .values(status=QUEUED, failure=None, error=None, sender_id=None, updated_at=utcnow())
    )
    return result.rowcount


def sending_by_sender(conn: sa.Connection, issue_id: int) -> dict[int | None, int]:
    """How many rows each sender (None: no lease) holds in `sending`."""
    query = (
        sa.select(deliveries.c.sender_id, sa.func.count())
        .where(deliveries.c.issue_id == issue_id, deliveries.c.status == SENDING)
        .group_by(deliveries.c.sender_id)
    )
    return {sender_id: number for sender_id, number in conn.execute(query)}
