"""Subscribers as the rest of the program sees them, and changes to one subscriber at a time
(add, unsubscribe, remove).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from newsletter.audience.addresses import clean_name, normalize_address
from newsletter.errors import InputError
from newsletter.store import Store
from newsletter.store.dialect import insert_ignoring_conflicts
from newsletter.store.lists import check_list_slug, find_list_id, get_or_create_list
from newsletter.store.schema import (
    ACTIVE,
    STATUSES,
    SUPPRESSED,
    UNCONFIRMED,
    UNSUBSCRIBED,
    lists,
    memberships,
    subscribers,
    utcnow,
)


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: str
    attributes: dict
    source: str
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    lists: tuple[str, ...] = ()

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "lists": list(self.lists),
            "attributes": self.attributes,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "unsubscribed_at": self.unsubscribed_at.isoformat() if self.unsubscribed_at else None,
        }


def lists_column(dialect: str) -> sa.ColumnElement:
    """The subscriber's list slugs joined by commas, as a correlated subquery."""
    join = memberships.join(lists, lists.c.id == memberships.c.list_id)
    aggregate = (
        sa.func.group_concat(lists.c.slug, ",")
        if dialect == "sqlite"
        else sa.func.string_agg(lists.c.slug, sa.literal_column("','"))
    )
    return (
        sa.select(aggregate)
        .select_from(join)
        .where(memberships.c.subscriber_id == subscribers.c.id)
        .scalar_subquery()
        .label("lists")
    )


def _subscriber_query(dialect: str) -> sa.Select:
    return sa.select(subscribers, lists_column(dialect)).order_by(subscribers.c.id)


def _subscriber_from_row(row) -> Subscriber:
    values = row._mapping
    slugs = tuple(sorted(values["lists"].split(","))) if values["lists"] else ()
    return Subscriber(
        id=values["id"],
        email=values["email"],
        name=values["name"],
        status=values["status"],
        attributes=values["attributes"] or {},
        source=values["source"],
        created_at=values["created_at"],
        updated_at=values["updated_at"],
        confirmed_at=values["confirmed_at"],
        unsubscribed_at=values["unsubscribed_at"],
        lists=slugs,
    )


def subscriber_filters(conn: sa.Connection, *, list_slug: str | None, status: str | None) -> list[sa.ColumnElement]:
    conditions = []
    if status is not None:
        if status not in STATUSES:
            raise InputError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        conditions.append(subscribers.c.status == status)
    if list_slug is not None:
        list_id = find_list_id(conn, check_list_slug(list_slug))
        if list_id is None:
            known = conn.execute(sa.select(lists.c.slug).order_by(lists.c.slug)).scalars().all()
            raise InputError(f"no list {list_slug!r} (lists: {', '.join(known) or 'none yet'})")
        conditions.append(
            sa.exists().where(memberships.c.subscriber_id == subscribers.c.id, memberships.c.list_id == list_id)
        )
    return conditions


def get_subscriber(store: Store, email: str) -> Subscriber | None:
    """The subscriber with this address (compared case-insensitively), or None."""
    key = normalize_address(email).key
    with store.read() as conn:
        row = conn.execute(_subscriber_query(store.dialect).where(subscribers.c.email_key == key)).first()
    return _subscriber_from_row(row) if row else None


def iter_subscribers(
    store: Store, *, list_slug: str | None = None, status: str | None = None, batch_size: int = 2_000
) -> Iterator[Subscriber]:
    """Subscribers in the order they were added, streamed from one read snapshot."""
    with store.read() as conn:
        query = _subscriber_query(store.dialect).where(*subscriber_filters(conn, list_slug=list_slug, status=status))
        # yield_per streams (a server-side cursor on PostgreSQL) instead of loading every row.
        for row in conn.execution_options(yield_per=batch_size).execute(query):
            yield _subscriber_from_row(row)


def add_subscriber(
    store: Store,
    email: str,
    *,
    name: str = "",
    list_slug: str = "default",
    status: str = ACTIVE,
    attributes: dict | None = None,
    source: str = "cli",
    resubscribe: bool = False,
) -> tuple[Subscriber, bool]:
    """Add `email` to `list_slug`; returns the subscriber and whether they are new.

    An existing subscriber joins the list, and a non-empty `name` or `attributes` update
    theirs.  Someone who unsubscribed, bounced or complained is refused unless
    `resubscribe=True` (then they get `status`).  An active subscriber asked to be
    `unconfirmed` (a repeated web sign-up) stays active.
    """
    if status not in (ACTIVE, UNCONFIRMED):
        raise InputError(f"a new subscription is {ACTIVE} or {UNCONFIRMED}, not {status!r}")
    # Import reads every attribute back as text; anything else would not survive an
    # export and re-import unchanged.
    if attributes and not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
        raise InputError("attributes must map names to text")
    address = normalize_address(email)
    check_list_slug(list_slug)
    name = clean_name(name)
    now = utcnow()
    with store.begin() as conn:
        list_id = get_or_create_list(conn, list_slug)
        existing = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == address.key)).first()
        if existing is None:
            inserted = conn.execute(
                subscribers.insert().values(
                    email=address.email,
                    email_key=address.key,
                    name=name,
                    status=status,
                    attributes=dict(attributes or {}),
                    source=source,
                    created_at=now,
                    updated_at=now,
                    confirmed_at=now if status == ACTIVE else None,
                )
            )
            assert inserted.inserted_primary_key is not None  # an INSERT of one row
            subscriber_id = inserted.inserted_primary_key[0]
            created = True
        else:
            subscriber_id = existing.id
            created = False
            changes: dict = {}
            if existing.status in SUPPRESSED:
                if not resubscribe:
                    raise InputError(
                        f"{existing.email} is {existing.status}"
                        f"{since_text(existing.unsubscribed_at)}; add --resubscribe only if they asked to come back"
                    )
                changes.update(status=status, unsubscribed_at=None)
                if status == ACTIVE:
                    changes["confirmed_at"] = now
            elif existing.status == UNCONFIRMED and status == ACTIVE:
                changes.update(status=ACTIVE, confirmed_at=now)
            if name and name != existing.name:
                changes["name"] = name
            if attributes:
                merged = {**existing.attributes, **attributes}
                if merged != existing.attributes:
                    changes["attributes"] = merged
            if changes:
                conn.execute(
                    subscribers.update().where(subscribers.c.id == subscriber_id).values(updated_at=now, **changes)
                )
        conn.execute(
            insert_ignoring_conflicts(conn, memberships)
            .values(list_id=list_id, subscriber_id=subscriber_id, created_at=now)
            .on_conflict_do_nothing()
        )
        row = conn.execute(_subscriber_query(store.dialect).where(subscribers.c.id == subscriber_id)).one()
    return _subscriber_from_row(row), created


def since_text(moment: datetime | None) -> str:
    return f" since {moment:%Y-%m-%d}" if moment else ""


def unsubscribe(store: Store, email: str | None = None, *, subscriber_id: int | None = None) -> tuple[Subscriber, bool]:
    """Stop all mail to a subscriber, found by address or id; returns them and whether
    anything changed.  Someone already suppressed (unsubscribed, bounced, complained)
    keeps that status."""
    if (email is None) == (subscriber_id is None):
        raise TypeError("pass exactly one of email or subscriber_id")
    if email is not None:
        condition = subscribers.c.email_key == normalize_address(email).key
        who = email
    else:
        condition = subscribers.c.id == subscriber_id
        who = f"subscriber #{subscriber_id}"
    now = utcnow()
    with store.begin() as conn:
        # The WHERE on status makes a repeated unsubscribe (a second click) a no-op.
        changed = conn.execute(
            subscribers.update()
            .where(condition, subscribers.c.status.not_in(SUPPRESSED))
            .values(status=UNSUBSCRIBED, unsubscribed_at=now, updated_at=now)
        ).rowcount
        row = conn.execute(_subscriber_query(store.dialect).where(condition)).first()
    if row is None:
        raise InputError(f"no subscriber {who}")
    return _subscriber_from_row(row), bool(changed)


def remove_subscriber(store: Store, email: str) -> Subscriber:
    """Erase a subscriber and everything stored about them (memberships, and whatever later
    tables attach to them with ON DELETE CASCADE); returns what was erased.

    Unlike unsubscribing this forgets the address, so a later import can add it again.
    """
    key = normalize_address(email).key
    with store.begin() as conn:
        row = conn.execute(_subscriber_query(store.dialect).where(subscribers.c.email_key == key)).first()
        if row is None:
            raise InputError(f"no subscriber {email}")
        conn.execute(subscribers.delete().where(subscribers.c.id == row.id))
    return _subscriber_from_row(row)
