"""Recording open and click hits in batches: a few statements per batch, not per hit.

The open pixel is the busiest URL of `newsletter serve` (every open of every message), so its
hits are buffered in memory and written here, a batch at a time, by one writer thread
(`newsletter.feedback.hits`).  A batch looks up what it needs in three queries, then inserts
every event in one executemany, skipping those whose replay key is stored already (the
events' unique `dedupe_key`: the same hit written by another process).

Only SQL lives here; whether a hit was a machine's is decided by the caller's `judge`, and
which hits are the same by its `replay_key`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from newsletter.store.dialect import insert_ignoring_conflicts
from newsletter.store.schema import deliveries, events, issues, subscribers, utcnow


@dataclass(frozen=True)
class Hit:
    """One request for a tracking URL with a valid token."""

    kind: str  # schema.OPEN or schema.CLICK
    issue_id: int
    subscriber_id: int
    # time.time() when the request came: a float is what the busiest request path can
    # afford (a timezone-aware datetime per hit costs more); it becomes one when stored.
    at: float
    user_agent: str | None
    method: str = "GET"
    link_idx: int | None = None

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)


# judge(hit, sent_at) -> (machine, detail)
Judge = Callable[[Hit, "datetime | None"], "tuple[bool, dict | None]"]
# replay_key(hit) -> the events' dedupe_key: hits with the same key are one (None: no key).
ReplayKey = Callable[[Hit], "str | None"]


# The columns written per hit, in the order rows are built.
_COLUMNS = (
    "kind",
    "issue_id",
    "subscriber_id",
    "delivery_id",
    "link_idx",
    "user_agent",
    "machine",
    "detail",
    "occurred_at",
    "recorded_at",
    "dedupe_key",
)


class _EventInsert:
    """The events INSERT compiled once per dialect and run through the driver's
    executemany.  SQLAlchemy's per-row parameter processing (type processors, JSON, the
    UtcDateTime decorator) measured ~60 us a hit here, more than the database took; the
    same conversions done once per value below cost a fraction of that."""

    def __init__(self, conn: sa.Connection) -> None:
        dialect = conn.dialect
        # ON CONFLICT (dedupe_key) DO NOTHING: on PostgreSQL a key inserted by another
        # process's transaction still open makes this one wait for it to end, then skip the
        # row; nothing is written twice and nothing fails (PostgreSQL documentation, INSERT,
        # "ON CONFLICT Clause").
        statement = insert_ignoring_conflicts(conn, events).on_conflict_do_nothing(index_elements=["dedupe_key"])
        compiled = statement.compile(dialect=dialect, column_keys=list(_COLUMNS))
        self.sql = compiled.string
        self.positional = compiled.positional
        if self.positional:
            self.order = [_COLUMNS.index(name) for name in compiled.positiontup or ()]
        self.time = _driver_form(events.c.occurred_at, dialect)
        self.boolean = _driver_form(events.c.machine, dialect)
        self.json = _driver_form(events.c.detail, dialect)

    def execute(self, conn: sa.Connection, rows: list[tuple]) -> int:
        """Insert `rows`; returns how many were new (the drivers' executemany rowcount is
        the sum over the rows, 0 for a skipped one)."""
        params: list[tuple] | list[dict[str, Any]]
        if self.positional:
            order = self.order
            params = [tuple(row[i] for i in order) for row in rows]
        else:
            params = [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
        return conn.exec_driver_sql(self.sql, params).rowcount


def _driver_form(column: sa.Column, dialect: sa.Dialect) -> Callable:
    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    return processor or (lambda value: value)


_inserts: dict[str, _EventInsert] = {}


def _key_order(row: tuple) -> str:
    return row[-1] or ""


def record_hits(conn: sa.Connection, hits: Sequence[Hit], judge: Judge, replay_key: ReplayKey) -> int:
    """Store `hits` as events; returns how many were stored.

    A hit whose issue or subscriber no longer exists (erased since the mail went out) is
    dropped: the foreign keys would refuse it, and there is nobody left to count.  So is one
    whose `replay_key` an event already has.
    """
    if not hits:
        return 0
    insert = _inserts.get(conn.dialect.name)
    if insert is None:
        insert = _inserts[conn.dialect.name] = _EventInsert(conn)
    issue_ids = sorted({hit.issue_id for hit in hits})
    subscriber_ids = sorted({hit.subscriber_id for hit in hits})
    known_issues = set(conn.execute(sa.select(issues.c.id).where(issues.c.id.in_(issue_ids))).scalars())
    known_subscribers = set(
        conn.execute(sa.select(subscribers.c.id).where(subscribers.c.id.in_(subscriber_ids))).scalars()
    )
    ledger = {
        (issue_id, subscriber_id): (delivery_id, sent_at)
        for delivery_id, issue_id, subscriber_id, sent_at in conn.execute(
            sa.select(deliveries.c.id, deliveries.c.issue_id, deliveries.c.subscriber_id, deliveries.c.sent_at).where(
                deliveries.c.issue_id.in_(issue_ids), deliveries.c.subscriber_id.in_(subscriber_ids)
            )
        )
    }
    recorded_at = insert.time(utcnow())
    to_time, to_boolean, to_json = insert.time, insert.boolean, insert.json
    rows = []
    for hit in hits:
        if hit.issue_id not in known_issues or hit.subscriber_id not in known_subscribers:
            continue
        delivery_id, sent_at = ledger.get((hit.issue_id, hit.subscriber_id), (None, None))
        machine, detail = judge(hit, sent_at)
        rows.append(
            (
                hit.kind,
                hit.issue_id,
                hit.subscriber_id,
                delivery_id,
                hit.link_idx,
                hit.user_agent,
                to_boolean(machine),
                # SQL NULL, not JSON null, when there is nothing to say.
                to_json(detail) if detail is not None else None,
                to_time(hit.occurred_at),
                recorded_at,
                replay_key(hit),
            )
        )
    if not rows:
        return 0
    # In key order: two processes inserting overlapping batches then wait for each other's
    # keys in the same order, so neither can hold a key the other waits for while waiting
    # for one the other holds (a deadlock, which PostgreSQL would end by failing a batch).
    rows.sort(key=_key_order)
    return insert.execute(conn, rows)
