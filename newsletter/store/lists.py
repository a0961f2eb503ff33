"""Lists: named audiences a subscriber can belong to."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from newsletter.errors import InputError
from newsletter.store.dialect import insert_ignoring_conflicts
from newsletter.store.schema import lists, utcnow

# The same rule as `[newsletter] list` in the configuration: slugs appear in URLs and List-Id.
# fullmatch, not match with `$`: `$` also matches before a final newline, and "daily\n"
# would put a bare LF into List-Id.
_SLUG = re.compile(r"[A-Za-z0-9_-]{1,100}")


def check_list_slug(slug: str) -> str:
    if not _SLUG.fullmatch(slug):
        raise InputError(f"list {slug!r} is not a valid slug (letters, digits, '-' and '_')")
    return slug


def find_list_id(conn: sa.Connection, slug: str) -> int | None:
    return conn.execute(sa.select(lists.c.id).where(lists.c.slug == slug)).scalar_one_or_none()


def get_or_create_list(conn: sa.Connection, slug: str, *, name: str | None = None) -> int:
    """The id of list `slug`, creating it (named `name`, else the slug) if it does not exist.

    Call inside a write transaction (`store.begin()`).
    """
    check_list_slug(slug)
    list_id = find_list_id(conn, slug)
    if list_id is not None:
        return list_id
    insert = insert_ignoring_conflicts(conn, lists).values(slug=slug, name=name or slug, created_at=utcnow())
    conn.execute(insert.on_conflict_do_nothing(index_elements=["slug"]))
    # A concurrent writer on PostgreSQL may have created it between the select and the insert.
    return conn.execute(sa.select(lists.c.id).where(lists.c.slug == slug)).scalar_one()


@dataclass(frozen=True)
class ListRow:
    id: int
    slug: str
    name: str
    description: str
    # None: never set (the default rule applies, newsletter.audience.lists).
    public: bool | None


def list_rows(conn: sa.Connection) -> list[ListRow]:
    query = sa.select(lists.c.id, lists.c.slug, lists.c.name, lists.c.description, lists.c.public).order_by(
        lists.c.slug
    )
    return [ListRow(*row) for row in conn.execute(query)]


def list_row(conn: sa.Connection, slug: str) -> ListRow | None:
    row = conn.execute(
        sa.select(lists.c.id, lists.c.slug, lists.c.name, lists.c.description, lists.c.public).where(
            lists.c.slug == slug
        )
    ).first()
    return ListRow(*row) if row else None


def describe_list(
    conn: sa.Connection, slug: str, *, name: str | None, description: str | None, public: bool | None
) -> ListRow:
    """Create list `slug` if needed and store what is given (None leaves a value as it is)."""
    list_id = get_or_create_list(conn, slug)
    values: dict = {}
    if name is not None:
        values["name"] = name
    if description is not None:
        values["description"] = description
    if public is not None:
        values["public"] = public
    if values:
        conn.execute(sa.update(lists).where(lists.c.id == list_id).values(**values))
    found = list_row(conn, slug)
    assert found is not None  # written in this transaction
    return found
