"""Recording what happened after sending: opens, clicks, unsubscribes, SES notifications.

Only SQL lives here; the web app and the SES event handling decide what to record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from newsletter.store.dialect import insert_ignoring_conflicts
from newsletter.store.schema import deliveries, events, issues, utcnow


@dataclass(frozen=True)
class DeliveryRef:
    """The ledger row a provider message id belongs to."""

    delivery_id: int
    issue_id: int
    subscriber_id: int
    sent_at: datetime | None


def record_event(
    conn: sa.Connection,
    *,
    kind: str,
    issue_id: int | None,
    subscriber_id: int | None,
    delivery_id: int | None = None,
    link_idx: int | None = None,
    user_agent: str | None = None,
    machine: bool = False,
    detail: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Store one event; False when an event with the same `dedupe_key` is already stored."""
    now = utcnow()
    statement = insert_ignoring_conflicts(conn, events).values(
        kind=kind,
        issue_id=issue_id,
        subscriber_id=subscriber_id,
        delivery_id=delivery_id,
        link_idx=link_idx,
        user_agent=user_agent,
        machine=machine,
        detail=detail,
        occurred_at=occurred_at or now,
        recorded_at=now,
        dedupe_key=dedupe_key,
    )
    if dedupe_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["dedupe_key"])
    # RETURNING rather than rowcount: psycopg reports rowcount -1 for an INSERT that
    # SQLAlchemy runs with RETURNING, so a rowcount test called every event a duplicate on
    # PostgreSQL.  A row comes back exactly when one was inserted (SQLite >= 3.35 too).
    return conn.execute(statement.returning(events.c.id)).first() is not None


def delivery_for(conn: sa.Connection, *, issue_id: int, subscriber_id: int) -> DeliveryRef | None:
    row = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.issue_id, deliveries.c.subscriber_id, deliveries.c.sent_at).where(
            deliveries.c.issue_id == issue_id, deliveries.c.subscriber_id == subscriber_id
        )
    ).first()
    return DeliveryRef(*row) if row else None


def delivery_by_provider_id(conn: sa.Connection, provider_message_id: str) -> DeliveryRef | None:
    """The ledger row of an SES message id (recorded when SES accepted the message)."""
    row = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.issue_id, deliveries.c.subscriber_id, deliveries.c.sent_at).where(
            deliveries.c.provider_message_id == provider_message_id
        )
    ).first()
    return DeliveryRef(*row) if row else None


def record_reader_event(
    conn: sa.Connection,
    kind: str,
    *,
    issue_id: int | None,
    subscriber_id: int,
    user_agent: str | None,
    detail: dict[str, Any],
) -> None:
    """Record a reader's own change (unsubscribe, resubscribe, confirm...), on the ledger
    row of the message whose link they used when there is one."""
    delivery = None
    if issue_id is not None:
        if conn.execute(sa.select(issues.c.id).where(issues.c.id == issue_id)).first() is None:
            issue_id = None  # the issue was deleted; the event still counts for the subscriber
        else:
            delivery = delivery_for(conn, issue_id=issue_id, subscriber_id=subscriber_id)
    record_event(
        conn,
        kind=kind,
        issue_id=issue_id,
        subscriber_id=subscriber_id,
        delivery_id=delivery.delivery_id if delivery else None,
        user_agent=user_agent,
        detail=detail,
    )
