"""A reader's standing on each list: the SQL of memberships and their status.

Only queries live here; `newsletter.audience` decides who may change what.  Every change of
a status writes when it happened and through what (schema.BY_*), and a repeated change (a
second click) matches no row, so it changes nothing and reports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from newsletter.store.dialect import insert_ignoring_conflicts
from newsletter.store.schema import (
    ACTIVE,
    PENDING,
    UNSUBSCRIBED,
    issues,
    lists,
    memberships,
    subscribers,
    utcnow,
)


@dataclass(frozen=True)
class Membership:
    list_id: int
    slug: str
    name: str
    status: str
    joined_at: datetime
    changed_at: datetime
    change_source: str


def memberships_of(conn: sa.Connection, subscriber_id: int) -> list[Membership]:
    """Every list the subscriber is on record for, by slug."""
    query = (
        sa.select(
            memberships.c.list_id,
            lists.c.slug,
            lists.c.name,
            memberships.c.status,
            memberships.c.created_at,
            memberships.c.changed_at,
            memberships.c.change_source,
        )
        .join(lists, lists.c.id == memberships.c.list_id)
        .where(memberships.c.subscriber_id == subscriber_id)
        .order_by(lists.c.slug)
    )
    return [Membership(*row) for row in conn.execute(query)]


def membership_status(conn: sa.Connection, subscriber_id: int, list_id: int) -> str | None:
    """The subscriber's status on the list, None when they were never on it."""
    return conn.execute(
        sa.select(memberships.c.status).where(
            memberships.c.subscriber_id == subscriber_id, memberships.c.list_id == list_id
        )
    ).scalar_one_or_none()


def join_list(conn: sa.Connection, subscriber_id: int, list_id: int, status: str, source: str) -> bool:
    """Put the subscriber on the list with `status` if they were never on it; returns
    whether a row was added (a concurrent writer may have added it first)."""
    now = utcnow()
    statement = (
        insert_ignoring_conflicts(conn, memberships)
        .values(
            list_id=list_id,
            subscriber_id=subscriber_id,
            status=status,
            created_at=now,
            changed_at=now,
            change_source=source,
        )
        .on_conflict_do_nothing(index_elements=["list_id", "subscriber_id"])
    )
    return conn.execute(statement.returning(memberships.c.list_id)).first() is not None


def change_status(
    conn: sa.Connection,
    subscriber_id: int,
    status: str,
    source: str,
    *,
    list_ids: Iterable[int] | None = None,
    current: Iterable[str],
    at: datetime | None = None,
) -> list[int]:
    """Move the subscriber's memberships (on `list_ids`, or on every list) whose status is
    one of `current` to `status`; returns the ids of the lists that changed."""
    conditions = [
        memberships.c.subscriber_id == subscriber_id,
        memberships.c.status.in_(tuple(current)),
    ]
    if list_ids is not None:
        wanted = tuple(list_ids)
        if not wanted:
            return []
        conditions.append(memberships.c.list_id.in_(wanted))
    result = conn.execute(
        sa.update(memberships)
        .where(*conditions)
        .values(status=status, changed_at=at or utcnow(), change_source=source)
        .returning(memberships.c.list_id)
    )
    return sorted(result.scalars())


def leave_lists(
    conn: sa.Connection, subscriber_id: int, source: str, *, list_ids: Iterable[int] | None = None
) -> list[int]:
    """Unsubscribe from the lists (every list when None) where the subscriber is active or
    pending; returns the ids of the lists left."""
    return change_status(conn, subscriber_id, UNSUBSCRIBED, source, list_ids=list_ids, current=(ACTIVE, PENDING))


def memberships_column(dialect: str) -> sa.ColumnElement:
    """The subscriber's memberships as `slug:status` pairs joined by commas (slugs hold
    neither), as a correlated subquery: one query lists or exports any number of people."""
    pair = lists.c.slug + sa.literal(":") + memberships.c.status
    aggregate = (
        sa.func.group_concat(pair, ",") if dialect == "sqlite" else sa.func.string_agg(pair, sa.literal_column("','"))
    )
    return (
        sa.select(aggregate)
        .select_from(memberships.join(lists, lists.c.id == memberships.c.list_id))
        .where(memberships.c.subscriber_id == subscribers.c.id)
        .scalar_subquery()
        .label("memberships")
    )


def parse_memberships(text: str | None) -> dict[str, str]:
    """`memberships_column`'s text as {slug: status}, sorted by slug."""
    if not text:
        return {}
    pairs = (item.rpartition(":") for item in text.split(","))
    return dict(sorted((slug, status) for slug, _, status in pairs))


@dataclass(frozen=True)
class ListRef:
    id: int
    slug: str
    name: str


def list_of_issue(conn: sa.Connection, issue_id: int) -> ListRef | None:
    """The list an issue was sent to (the one its unsubscribe links leave), None for an
    issue that is gone or was never sent to one."""
    row = conn.execute(
        sa.select(lists.c.id, lists.c.slug, lists.c.name)
        .join(issues, issues.c.list_id == lists.c.id)
        .where(issues.c.id == issue_id)
    ).first()
    return ListRef(*row) if row else None


def list_ref(conn: sa.Connection, list_id: int) -> ListRef | None:
    row = conn.execute(sa.select(lists.c.id, lists.c.slug, lists.c.name).where(lists.c.id == list_id)).first()
    return ListRef(*row) if row else None


def slugs_of(conn: sa.Connection, list_ids: Iterable[int]) -> list[str]:
    wanted = tuple(list_ids)
    if not wanted:
        return []
    return sorted(conn.execute(sa.select(lists.c.slug).where(lists.c.id.in_(wanted))).scalars())


@dataclass(frozen=True)
class AddressRow:
    id: int
    email: str
    name: str
    status: str


def address_of(conn: sa.Connection, subscriber_id: int) -> AddressRow | None:
    """The subscriber's address, name and the address's status."""
    row = conn.execute(
        sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.status).where(
            subscribers.c.id == subscriber_id
        )
    ).first()
    return AddressRow(*row) if row else None


def membership_changed_at(conn: sa.Connection, subscriber_id: int, list_id: int) -> datetime | None:
    return conn.execute(
        sa.select(memberships.c.changed_at).where(
            memberships.c.subscriber_id == subscriber_id, memberships.c.list_id == list_id
        )
    ).scalar_one_or_none()


def address_by_key(conn: sa.Connection, email_key: str) -> AddressRow | None:
    """The subscriber with this address key (`Address.key`), if any."""
    row = conn.execute(
        sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.status).where(
            subscribers.c.email_key == email_key
        )
    ).first()
    return AddressRow(*row) if row else None


def suppressed_since(conn: sa.Connection, subscriber_id: int) -> datetime | None:
    """When the address bounced or complained (None while it is active)."""
    return conn.execute(
        sa.select(subscribers.c.suppressed_at).where(subscribers.c.id == subscriber_id)
    ).scalar_one_or_none()


def vouch_for_address(conn: sa.Connection, subscriber_id: int, *, name: str | None, now: datetime) -> None:
    """The address proved it is wanted and receives mail (a confirmed double opt-in):
    active again, confirmed now, and named `name` when one was given."""
    values: dict = {"status": ACTIVE, "suppressed_at": None, "confirmed_at": now, "updated_at": now}
    if name:
        values["name"] = name
    conn.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(**values))
