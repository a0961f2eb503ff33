"""Subscribers as the rest of the program sees them, and changes to one subscriber at a time
(add, unsubscribe, remove).

A subscriber's `status` is about the address (active, bounced, complained); their standing
on each list (active, pending, unsubscribed) is in `memberships`.  Someone receives a list
when both say active (DESIGN.md "Rules of outcome").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from newsletter.audience.addresses import clean_name, normalize_address
from newsletter.audience.erasure import ErasureCheck, refuse_if_erased
from newsletter.errors import InputError
from newsletter.store import Store
from newsletter.store.lists import check_list_slug, find_list_id, get_or_create_list
from newsletter.store.memberships import (
    change_status,
    join_list,
    leave_lists,
    membership_changed_at,
    membership_status,
    memberships_column,
    parse_memberships,
)
from newsletter.store.schema import (
    ACTIVE,
    ADDRESS_STATUSES,
    BY_CLI,
    MEMBERSHIP_STATUSES,
    PENDING,
    SUPPRESSIONS,
    UNSUBSCRIBED,
    lists,
    memberships,
    subscribers,
    utcnow,
)
from newsletter.tokens import AddressDigests

# What `subscribers list/export --status` accepts: a standing on a list, or an address's.
STATUS_FILTERS = (*MEMBERSHIP_STATUSES, *(s for s in ADDRESS_STATUSES if s != ACTIVE))


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    # ADDRESS_STATUSES: bounced and complained stop every list.
    status: str
    attributes: dict
    source: str
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None
    suppressed_at: datetime | None
    # {list slug: active | pending | unsubscribed}, by slug.
    memberships: Mapping[str, str] = field(default_factory=dict)

    @property
    def lists(self) -> tuple[str, ...]:
        """The slugs of every list they are on record for, whatever their standing there."""
        return tuple(self.memberships)

    def receives(self, list_slug: str) -> bool:
        return self.status == ACTIVE and self.memberships.get(list_slug) == ACTIVE

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "memberships": dict(self.memberships),
            "lists": list(self.lists),
            "attributes": self.attributes,
            "source": self.source,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "confirmed_at": self.confirmed_at.isoformat() if self.confirmed_at else None,
            "suppressed_at": self.suppressed_at.isoformat() if self.suppressed_at else None,
        }

    def memberships_text(self) -> str:
        """`daily:active,weekly:unsubscribed`, as `subscribers list` prints it."""
        return ",".join(f"{slug}:{status}" for slug, status in self.memberships.items())


def _subscriber_query(dialect: str) -> sa.Select:
    return sa.select(subscribers, memberships_column(dialect)).order_by(subscribers.c.id)


def _subscriber_from_row(row) -> Subscriber:
    values = row._mapping
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
        suppressed_at=values["suppressed_at"],
        memberships=parse_memberships(values["memberships"]),
    )


def subscriber_filters(conn: sa.Connection, *, list_slug: str | None, status: str | None) -> list[sa.ColumnElement]:
    """Conditions on `subscribers` for members of `list_slug` with `status` there.

    A bounced or complained address counts as that whatever its memberships say (it gets no
    list); `active`, `pending` and `unsubscribed` are standings on the list (on any list
    without one) of an address that is itself active.
    """
    conditions: list[sa.ColumnElement] = []
    if status is not None and status not in STATUS_FILTERS:
        raise InputError(f"status {status!r} is not one of {', '.join(STATUS_FILTERS)}")
    # An alias, so the condition also works in queries that join memberships themselves
    # (the export's list of columns), which would otherwise correlate it away.
    member = memberships.alias("member_of")
    on_list: list[sa.ColumnElement] = [member.c.subscriber_id == subscribers.c.id]
    if list_slug is not None:
        list_id = find_list_id(conn, check_list_slug(list_slug))
        if list_id is None:
            known = conn.execute(sa.select(lists.c.slug).order_by(lists.c.slug)).scalars().all()
            raise InputError(f"no list {list_slug!r} (lists: {', '.join(known) or 'none yet'})")
        on_list.append(member.c.list_id == list_id)
    if status in SUPPRESSIONS:
        conditions.append(subscribers.c.status == status)
    elif status is not None:
        conditions.append(subscribers.c.status == ACTIVE)
        on_list.append(member.c.status == status)
    if list_slug is not None or status in MEMBERSHIP_STATUSES:
        conditions.append(sa.exists().where(*on_list))
    return conditions


def get_subscriber(store: Store, email: str) -> Subscriber | None:
    """The subscriber with this address (compared case-insensitively), or None."""
    key = normalize_address(email).key
    with store.read() as conn:
        row = conn.execute(_subscriber_query(store.dialect).where(subscribers.c.email_key == key)).first()
    return _subscriber_from_row(row) if row else None


def subscriber_by_id(conn: sa.Connection, subscriber_id: int) -> Subscriber | None:
    row = conn.execute(_subscriber_query(conn.dialect.name).where(subscribers.c.id == subscriber_id)).first()
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
    change_source: str = BY_CLI,
    resubscribe: bool = False,
    digests: AddressDigests | None = None,
) -> tuple[Subscriber, bool]:
    """Add `email` to `list_slug` as `status` (active, or pending a double opt-in); returns
    the subscriber and whether they are new.

    An existing subscriber joins the list, and a non-empty `name` or `attributes` update
    theirs.  Someone who left this list, or whose address bounced or complained, is refused
    unless `resubscribe=True` (then they get `status` on this list, and only this list).
    An active member asked to be pending (a repeated web sign-up) stays active.
    `source` says where a new subscriber came from, `change_source` (schema.BY_*) what
    changed their standing on the list.  An address that was erased is refused unless
    `resubscribe` (newsletter.audience.erasure; `digests` under the configured secret).
    """
    if status not in (ACTIVE, PENDING):
        raise InputError(f"a new subscription is {ACTIVE} or {PENDING}, not {status!r}")
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
            refuse_if_erased(conn, ErasureCheck(conn, digests), address.key, address.email, resubscribe=resubscribe)
            inserted = conn.execute(
                subscribers.insert().values(
                    email=address.email,
                    email_key=address.key,
                    name=name,
                    status=ACTIVE,
                    attributes=dict(attributes or {}),
                    source=source,
                    created_at=now,
                    updated_at=now,
                    confirmed_at=now if status == ACTIVE else None,
                )
            )
            assert inserted.inserted_primary_key is not None  # an INSERT of one row
            subscriber_id = inserted.inserted_primary_key[0]
            join_list(conn, subscriber_id, list_id, status, change_source)
            created = True
        else:
            subscriber_id = existing.id
            created = False
            _rejoin(conn, existing, list_id, list_slug, status, change_source, resubscribe=resubscribe, now=now)
            changes: dict = {}
            if existing.status in SUPPRESSIONS:
                # _rejoin refused unless resubscribe: the address is vouched for again.
                changes.update(status=ACTIVE, suppressed_at=None)
                if status == ACTIVE:
                    changes["confirmed_at"] = now
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
        subscriber = subscriber_by_id(conn, subscriber_id)
    assert subscriber is not None  # written in this transaction
    return subscriber, created


def _rejoin(
    conn: sa.Connection,
    existing,
    list_id: int,
    list_slug: str,
    status: str,
    change_source: str,
    *,
    resubscribe: bool,
    now: datetime,
) -> None:
    """Put an existing subscriber on the list as `status`, refusing (InputError) what only
    `resubscribe` may undo: leaving this list, a bounce, a complaint."""
    if existing.status in SUPPRESSIONS and not resubscribe:
        raise InputError(
            f"{existing.email} is {existing.status}{since_text(existing.suppressed_at)}; "
            "add --resubscribe only if they asked to come back"
        )
    current = membership_status(conn, existing.id, list_id)
    if current is None:
        join_list(conn, existing.id, list_id, status, change_source)
    elif current == UNSUBSCRIBED:
        if not resubscribe:
            left_at = membership_changed_at(conn, existing.id, list_id)
            raise InputError(
                f"{existing.email} unsubscribed from {list_slug}{since_text(left_at)}; "
                "add --resubscribe only if they asked to come back"
            )
        change_status(conn, existing.id, status, change_source, list_ids=[list_id], current=[UNSUBSCRIBED], at=now)
    elif current == PENDING and status == ACTIVE:
        change_status(conn, existing.id, ACTIVE, change_source, list_ids=[list_id], current=[PENDING], at=now)


def since_text(moment: datetime | None) -> str:
    return f" since {moment:%Y-%m-%d}" if moment else ""


def unsubscribe(
    store: Store,
    email: str | None = None,
    *,
    subscriber_id: int | None = None,
    list_slug: str | None = None,
    source: str = BY_CLI,
) -> tuple[Subscriber, bool]:
    """Take a subscriber, found by address or id, off `list_slug` (off every list when
    None); returns them and whether anything changed.  Their other lists, and a bounce or
    complaint on the address, stay as they are."""
    if (email is None) == (subscriber_id is None):
        raise TypeError("pass exactly one of email or subscriber_id")
    if email is not None:
        condition = subscribers.c.email_key == normalize_address(email).key
        who = email
    else:
        condition = subscribers.c.id == subscriber_id
        who = f"subscriber #{subscriber_id}"
    with store.begin() as conn:
        found = conn.execute(sa.select(subscribers.c.id).where(condition)).scalar_one_or_none()
        if found is None:
            raise InputError(f"no subscriber {who}")
        list_ids = None
        if list_slug is not None:
            list_id = find_list_id(conn, check_list_slug(list_slug))
            if list_id is None or membership_status(conn, found, list_id) is None:
                raise InputError(f"{who} is not on list {list_slug!r}")
            list_ids = [list_id]
        # Only active and pending memberships change, so a repeated unsubscribe (a second
        # click) is a no-op.
        changed = leave_lists(conn, found, source, list_ids=list_ids)
        subscriber = subscriber_by_id(conn, found)
    assert subscriber is not None
    return subscriber, bool(changed)
