"""The SQL behind applying SES feedback (bounces, complaints, deliveries...) to the store.

Only queries live here; `newsletter.feedback.apply` decides what an event means.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from newsletter.store.events import DeliveryRef
from newsletter.store.memberships import leave_lists
from newsletter.store.schema import (
    ACTIVE,
    BOUNCE,
    BOUNCED,
    BY_SES,
    COMPLAINED,
    UNSUBSCRIBED,
    deliveries,
    events,
    links,
    subscribers,
    utcnow,
)

# How strong an address's standing is as a reason not to mail it.  A suppression only ever
# replaces a weaker one: a late bounce never turns a complaint back into a bounce.
_STANDING = {ACTIVE: 0, BOUNCED: 2, COMPLAINED: 3}


def delivery_by_message_id(
    conn: sa.Connection, *, issue_id: int, subscriber_id: int, message_id: str
) -> DeliveryRef | None:
    """The ledger row of (issue, subscriber), if its Message-ID is `message_id`.

    The Message-ID names the issue and subscriber; comparing the stored one as well keeps
    a header from another database (or a guessed one) from landing on a row here.
    """
    row = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.issue_id, deliveries.c.subscriber_id, deliveries.c.sent_at).where(
            deliveries.c.issue_id == issue_id,
            deliveries.c.subscriber_id == subscriber_id,
            deliveries.c.message_id == message_id,
        )
    ).first()
    return DeliveryRef(*row) if row else None


def mailed_since(conn: sa.Connection, subscriber_id: int, since: datetime) -> bool:
    """Whether we sent the subscriber an issue or a confirmation email after `since`."""
    confirmed = conn.execute(
        sa.select(subscribers.c.id).where(
            subscribers.c.id == subscriber_id, subscribers.c.confirmation_sent_at >= since
        )
    ).first()
    if confirmed is not None:
        return True
    sent = conn.execute(
        sa.select(deliveries.c.id)
        .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.sent_at >= since)
        .limit(1)
    ).first()
    return sent is not None


def subscriber_id_for_address(conn: sa.Connection, address: str) -> int | None:
    """The subscriber with this address (as sent, so compared case-insensitively)."""
    key = address.strip().lower()
    return conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email_key == key)).scalar_one_or_none()


def bounce_details(
    conn: sa.Connection, subscriber_id: int, *, exclude_dedupe_key: str | None = None
) -> list[tuple[datetime, Any]]:
    """(occurred_at, detail) of every bounce recorded for a subscriber.

    Few per subscriber, so the caller filters soft ones from `detail` in Python rather than
    with JSON operators that SQLite and PostgreSQL spell differently.
    """
    query = sa.select(events.c.occurred_at, events.c.detail).where(
        events.c.subscriber_id == subscriber_id, events.c.kind == BOUNCE
    )
    if exclude_dedupe_key is not None:
        query = query.where(sa.or_(events.c.dedupe_key.is_(None), events.c.dedupe_key != exclude_dedupe_key))
    return [(row.occurred_at, row.detail) for row in conn.execute(query)]


def suppress_subscriber(conn: sa.Connection, subscriber_id: int, status: str, *, since: datetime) -> bool:
    """Give the address `status` (bounced or complained) unless it already has an equal or
    stronger one; `unsubscribed` (SES's own list management) leaves every list instead.
    Returns whether anything changed."""
    if status == UNSUBSCRIBED:
        return bool(leave_lists(conn, subscriber_id, BY_SES))
    weaker = [name for name, rank in _STANDING.items() if rank < _STANDING[status]]
    result = conn.execute(
        sa.update(subscribers)
        .where(subscribers.c.id == subscriber_id, subscribers.c.status.in_(weaker))
        .values(status=status, suppressed_at=since, updated_at=utcnow())
    )
    return result.rowcount == 1


def link_index(conn: sa.Connection, issue_id: int, url: str) -> int | None:
    """The index of `url` among the issue's links (the first, if it appears twice)."""
    query = sa.select(sa.func.min(links.c.idx)).where(links.c.issue_id == issue_id, links.c.url == url)
    return conn.execute(query).scalar_one_or_none()
