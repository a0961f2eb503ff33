"""CSV export: subscribers out as a spreadsheet that `csv_import` reads back unchanged.

Columns: email, name, status (the address: active, bounced or complained), then one
`list:SLUG` column per list with the standing there (active, pending, unsubscribed, or
empty when not on it), then one column per attribute key.  Every cell a spreadsheet would
run as a formula gets a `'` in front (newsletter.audience.csv_cells); import removes it.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa

from newsletter.audience.csv_cells import neutralise
from newsletter.audience.csv_import import (
    EMAIL_COLUMNS,
    LIST_COLUMNS,
    LIST_STATUS_PREFIX,
    NAME_COLUMNS,
    STATUS_COLUMNS,
)
from newsletter.audience.subscribers import subscriber_filters
from newsletter.errors import InputError
from newsletter.store import Store
from newsletter.store.memberships import memberships_column, parse_memberships
from newsletter.store.schema import (
    lists,
    memberships,
    subscribers,
)

EXPORT_COLUMNS = ("email", "name", "status")


def export_csv(store: Store, out: TextIO, *, list_slug: str | None = None, status: str | None = None) -> int:
    """Write subscribers as CSV to `out` (opened with newline=""); returns the row count.

    Columns as in the module docstring.  The file imports back with no changes, standings
    on every list and suppressions included.
    """
    dialect = store.dialect
    with store.read() as conn:
        conditions = subscriber_filters(conn, list_slug=list_slug, status=status)
        attribute_keys = _attribute_keys(conn, dialect, conditions)
        slugs = _list_slugs(conn, conditions)
        writer = csv.writer(out)
        header = [*EXPORT_COLUMNS, *(LIST_STATUS_PREFIX + slug for slug in slugs), *attribute_keys]
        writer.writerow([neutralise(cell) for cell in header])
        query = (
            sa.select(
                subscribers.c.email,
                subscribers.c.name,
                subscribers.c.status,
                memberships_column(dialect),
                subscribers.c.attributes,
            )
            .where(*conditions)
            .order_by(subscribers.c.id)
        )
        count = 0
        for email, name, state, standings, attributes in conn.execution_options(yield_per=5_000).execute(query):
            on = parse_memberships(standings)
            row = [email, name, state, *(on.get(slug, "") for slug in slugs)]
            if attribute_keys:
                row.extend(_attribute_text(attributes.get(key)) for key in attribute_keys)
            writer.writerow([neutralise(cell) for cell in row])
            count += 1
    return count


def _list_slugs(conn: sa.Connection, conditions: list) -> list[str]:
    """The lists any exported subscriber is on, by slug: one column each."""
    query = (
        sa.select(lists.c.slug)
        .select_from(lists.join(memberships, memberships.c.list_id == lists.c.id))
        .join(subscribers, subscribers.c.id == memberships.c.subscriber_id)
        .where(*conditions)
        .distinct()
    )
    return sorted(conn.execute(query).scalars())


def _attribute_keys(conn: sa.Connection, dialect: str, conditions: list) -> list[str]:
    if dialect == "sqlite":
        pairs = sa.func.json_each(subscribers.c.attributes).table_valued("key")
        query = sa.select(pairs.c.key).select_from(subscribers).join(pairs, sa.true())
    else:
        query = sa.select(sa.func.jsonb_object_keys(subscribers.c.attributes))
    keys = conn.execute(query.where(*conditions).distinct()).scalars().all()
    reserved = EMAIL_COLUMNS | NAME_COLUMNS | LIST_COLUMNS | STATUS_COLUMNS
    return sorted(key for key in keys if key.lower() not in reserved and not key.lower().startswith(LIST_STATUS_PREFIX))


def _attribute_text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def export_csv_file(store: Store, path: str | Path, *, list_slug: str | None = None, status: str | None = None) -> int:
    """`export_csv` into a file, written whole or not at all.

    UTF-8 with a BOM, because Excel opens a BOM-less CSV as the system code page and shows
    Chinese names as mojibake; import reads the BOM back.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8-sig", newline="") as handle:
            count = export_csv(store, handle, list_slug=list_slug, status=status)
        os.replace(partial, path)
    except OSError as err:
        raise InputError(f"{path}: cannot write: {err.strerror}") from err
    finally:
        partial.unlink(missing_ok=True)
    return count
