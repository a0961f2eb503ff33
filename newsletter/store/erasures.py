"""The SQL of the erasure list: keyed digests of the addresses of people who were erased.

Only queries live here; newsletter.audience.erasure decides when to look and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from newsletter.store.dialect import insert_ignoring_conflicts, keys_condition
from newsletter.store.schema import erasures, subscribers


def record_erasure(conn: sa.Connection, digest: str, *, key_id: str, source: str, at: datetime) -> None:
    """Remember an erased address's digest (once: erasing the same address again keeps the
    first time)."""
    conn.execute(
        insert_ignoring_conflicts(conn, erasures)
        .values(digest=digest, key_id=key_id, erased_at=at, source=source)
        .on_conflict_do_nothing(index_elements=["digest"])
    )


def erased_at(conn: sa.Connection, digests: Sequence[str]) -> dict[str, datetime]:
    """{digest: when it was erased} for those of `digests` on the list."""
    if not digests:
        return {}
    # One parameter for any number of digests (see store.dialect.keys_condition).
    many = json.dumps(list(digests)) if conn.dialect.name == "sqlite" else list(digests)
    query = sa.select(erasures.c.digest, erasures.c.erased_at).where(
        keys_condition(erasures.c.digest, conn.dialect.name)
    )
    return dict(conn.execute(query, {"keys": many}).all())


def forget_erasures(conn: sa.Connection, digests: Sequence[str]) -> None:
    """Take digests off the list: the person asked to come back (`--resubscribe`)."""
    if digests:
        conn.execute(erasures.delete().where(erasures.c.digest.in_(tuple(digests))))


def erasure_count(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(erasures)).scalar_one()


def delete_subscriber(conn: sa.Connection, subscriber_id: int) -> str | None:
    """Delete the subscriber and, by ON DELETE CASCADE, everything that hangs on them;
    returns their address key (None if there was nobody)."""
    return conn.execute(
        subscribers.delete().where(subscribers.c.id == subscriber_id).returning(subscribers.c.email_key)
    ).scalar_one_or_none()
