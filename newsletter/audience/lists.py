"""Lists: what each is called, who may join it, and its members by standing.

Where a list's name, description and visibility come from, first that says wins:

1. its `[lists.SLUG]` table in the configuration (name, description, public);
2. what `newsletter lists set` stored in the database;
3. the defaults: the list's slug for its name, no description, and private, except the
   configured default list (`[newsletter] list`), which is public, so that a fresh
   installation's subscribe form works.  For readers the default list is called by the
   newsletter's own name unless it was given one.

A public list can be joined from /subscribe and is offered on every reader's preference
page; a private one only by the editor (import, `subscribers add`), and readers see it on
their preference page only while they are on it, to leave it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from newsletter.config import ListSettings, Settings
from newsletter.errors import InputError
from newsletter.store import Store
from newsletter.store.lists import ListRow, check_list_slug, describe_list, list_row, list_rows
from newsletter.store.schema import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    PENDING,
    UNSUBSCRIBED,
    lists,
    memberships,
    subscribers,
)

__all__ = [
    "STANDINGS",
    "ListInfo",
    "ListSummary",
    "check_list_slug",
    "list_catalog",
    "list_summaries",
    "public_list",
    "set_list",
]

# The columns of `newsletter lists`: each member is counted once, under the address's
# suppression if it has one (a bounced address gets no list, whatever it chose), else under
# their standing on the list.
STANDINGS = (ACTIVE, PENDING, UNSUBSCRIBED, BOUNCED, COMPLAINED)


@dataclass(frozen=True)
class ListInfo:
    """A list as readers and the editor see it (the module docstring says from where)."""

    slug: str
    # As readers are shown it.
    title: str
    description: str
    public: bool
    # None for a list only the configuration names, which nobody has joined yet.
    id: int | None = None


def _info(slug: str, row: ListRow | None, configured: ListSettings | None, settings: Settings) -> ListInfo:
    configured = configured or ListSettings()
    default = slug == settings.newsletter.list
    name = configured.name if configured.name is not None else (row.name if row else "")
    if not name or (name == slug and default):
        name = settings.newsletter.name if default else slug
    description = configured.description if configured.description is not None else (row.description if row else "")
    public = configured.public
    if public is None:
        public = row.public if row is not None and row.public is not None else default
    return ListInfo(slug, name, description, public, row.id if row else None)


def list_catalog(store: Store, settings: Settings) -> dict[str, ListInfo]:
    """Every list, in the database or only in the configuration, by slug."""
    with store.read() as conn:
        rows = {row.slug: row for row in list_rows(conn)}
    slugs = sorted(rows.keys() | settings.lists.keys() | {settings.newsletter.list})
    return {slug: _info(slug, rows.get(slug), settings.lists.get(slug), settings) for slug in slugs}


def public_list(store: Store, settings: Settings, slug: str) -> ListInfo | None:
    """The list `slug` if the public may join it, else None: whether it is private or does
    not exist is not told apart, so the answer cannot be used to find list names."""
    try:
        check_list_slug(slug)
    except InputError:  # not a slug: no such list, like any other
        return None
    with store.read() as conn:
        row = list_row(conn, slug)
    if row is None and slug not in settings.lists and slug != settings.newsletter.list:
        return None
    info = _info(slug, row, settings.lists.get(slug), settings)
    return info if info.public else None


@dataclass(frozen=True)
class ListChange:
    """What `set_list` stored, and which of it the configuration overrides."""

    info: ListInfo
    overridden: tuple[str, ...]


def set_list(
    store: Store,
    settings: Settings,
    slug: str,
    *,
    name: str | None = None,
    description: str | None = None,
    public: bool | None = None,
) -> ListChange:
    """Store a list's name, description and visibility (None leaves one as it is), creating
    the list if it does not exist; says which of the values given `[lists.SLUG]` overrides."""
    check_list_slug(slug)
    if name is not None and not name.strip():
        raise InputError("--name must not be empty")
    for label, value in (("--name", name), ("--description", description)):
        if value is not None and any(ch in value for ch in "\r\n"):
            raise InputError(f"{label} must be one line")
    with store.begin() as conn:
        row = describe_list(conn, slug, name=name.strip() if name else None, description=description, public=public)
    configured = settings.lists.get(slug, ListSettings())
    overridden = tuple(
        key
        for key, given, wins in (
            ("name", name, configured.name),
            ("description", description, configured.description),
            ("public", public, configured.public),
        )
        if given is not None and wins is not None
    )
    return ListChange(_info(slug, row, settings.lists.get(slug), settings), overridden)


@dataclass(frozen=True)
class ListSummary:
    slug: str
    name: str
    counts: dict[str, int]
    public: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def list_summaries(store: Store, settings: Settings) -> list[ListSummary]:
    """Every list (configured ones too) with how many of its members are in each standing
    (STANDINGS), named and with the visibility the module docstring describes."""
    standing = sa.case((subscribers.c.status != ACTIVE, subscribers.c.status), else_=memberships.c.status).label(
        "standing"
    )
    query = (
        sa.select(lists.c.slug, lists.c.name, standing, sa.func.count(subscribers.c.id))
        .select_from(
            lists.outerjoin(memberships, memberships.c.list_id == lists.c.id).outerjoin(
                subscribers, subscribers.c.id == memberships.c.subscriber_id
            )
        )
        .group_by(lists.c.id, lists.c.slug, lists.c.name, standing)
        .order_by(lists.c.slug)
    )
    counted: dict[str, dict[str, int]] = {}
    with store.read() as conn:
        for slug, _name, state, count in conn.execute(query):
            counts = counted.setdefault(slug, {s: 0 for s in STANDINGS})
            if state is not None and count:
                counts[state] = count
    catalog: Mapping[str, ListInfo] = list_catalog(store, settings)
    return [
        ListSummary(slug, info.title, counted.get(slug, {s: 0 for s in STANDINGS}), info.public)
        for slug, info in catalog.items()
        if info.id is not None or slug in settings.lists
    ]
