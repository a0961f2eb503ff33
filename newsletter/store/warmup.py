"""The ledger read as a warm-up needs it: when sending began, and how much went out in a
window of time, over every issue (a receiver judges the domain, not one issue)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from newsletter.store.schema import SENT, deliveries


def first_sent_at(conn: sa.Connection) -> datetime | None:
    """When the first message of any issue was sent, or None before the first."""
    return conn.execute(sa.select(sa.func.min(deliveries.c.sent_at)).where(deliveries.c.status == SENT)).scalar_one()


def sent_between(conn: sa.Connection, start: datetime, end: datetime) -> int:
    """Messages of every issue sent in [start, end)."""
    return conn.execute(
        sa.select(sa.func.count())
        .select_from(deliveries)
        .where(deliveries.c.status == SENT, deliveries.c.sent_at >= start, deliveries.c.sent_at < end)
    ).scalar_one()
