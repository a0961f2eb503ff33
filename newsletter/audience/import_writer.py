"""Writing a CSV import's rows to the store, a batch per transaction: who is new, who
changes, who stays as they are, and which row of the file came first.

Standings per list: a row puts its subscriber on each list it names with the standing it
gives (csv_import's docstring).  What only `--resubscribe` may undo is refused per list:
leaving a list (the row's other lists still apply), and a bounce or complaint on the address
(which refuses the whole row, as it stops every list).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from newsletter.audience.erasure import ErasureCheck, erased_message
from newsletter.audience.subscribers import since_text
from newsletter.store.dialect import (
    CopyInsert,
    bulk_insert,
    driver_form,
    keys_condition,
)
from newsletter.store.lists import find_list_id, get_or_create_list
from newsletter.store.schema import (
    ACTIVE,
    BY_IMPORT,
    PENDING,
    SUPPRESSIONS,
    UNSUBSCRIBED,
    memberships,
    subscribers,
    utcnow,
)
from newsletter.tokens import AddressDigests

if TYPE_CHECKING:  # pragma: no cover - the reader's types, for annotations only
    from newsletter.audience.csv_import import ImportReport, ImportRow

# How the first row wins, within the memory limit.  Holding every address of a million-row
# file in a Python set costs over 100 MB.  Every address that reaches the database has a
# subscriber id, and ids are small dense integers, so an array indexed by id holding the row
# that first used it costs 4 bytes per subscriber and is exact.  A dry run writes no rows
# and so gets no ids for new addresses; it records the addresses it has seen in a temporary
# table on its connection instead (on disk, not in memory).
_dry_run_seen = sa.Table(
    "newsletter_import_seen",
    sa.MetaData(),
    sa.Column("email_key", sa.String(320), primary_key=True),
    sa.Column("row_number", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)

# Column order of the tuples the writer builds for new subscribers.
_NEW_SUBSCRIBER_COLUMNS = (
    "email",
    "email_key",
    "name",
    "status",
    "attributes",
    "source",
    "created_at",
    "updated_at",
    "confirmed_at",
    "suppressed_at",
)
# In the table's own order: sqlite3 then takes the tuples as they are (DriverInsert would
# otherwise reorder each of a million rows).
_MEMBERSHIP_COLUMNS = ("list_id", "subscriber_id", "created_at", "status", "changed_at", "change_source")


class BatchWriter:
    """Applies batches of rows, one transaction each, on one connection.

    New rows go to the database in bulk with values already in the driver's form (each
    column type's own bind processor, applied once per batch where the value is shared):
    SQLAlchemy's per-row parameter processing cost ~25 us a row here, more than everything
    else together.  SQLite gets sqlite3's executemany (`DriverInsert`), PostgreSQL a COPY
    (`CopyInsert`).  Look-ups pass a batch's keys as one parameter (a JSON array on
    SQLite, an array on PostgreSQL) so their statements compile once.
    """

    def __init__(
        self,
        conn: sa.Connection,
        report: ImportReport,
        problem: Callable[..., None],
        *,
        dry_run: bool,
        resubscribe: bool,
        source: str,
        digests: AddressDigests | None = None,
    ) -> None:
        self.conn = conn
        self.report = report
        self.problem = problem
        self.dry_run = dry_run
        self.resubscribe = resubscribe
        self.source = source
        self.list_ids: dict[str, int | None] = {}
        # first_row[subscriber id] = the row that first used that subscriber, 0 if none yet.
        self.first_row = array("I")
        dialect = conn.dialect
        self.many = json.dumps if dialect.name == "sqlite" else list
        self.select_existing = sa.select(
            subscribers.c.id,
            subscribers.c.email_key,
            subscribers.c.name,
            subscribers.c.status,
            subscribers.c.attributes,
            subscribers.c.confirmed_at,
            subscribers.c.suppressed_at,
        ).where(keys_condition(subscribers.c.email_key, dialect.name))
        self.select_ids = sa.select(subscribers.c.email_key, subscribers.c.id).where(
            keys_condition(subscribers.c.email_key, dialect.name)
        )
        self.select_memberships = sa.select(
            memberships.c.subscriber_id, memberships.c.list_id, memberships.c.status, memberships.c.changed_at
        ).where(keys_condition(memberships.c.subscriber_id, dialect.name, "ids"))
        self.insert_subscribers = bulk_insert(conn, subscribers, _NEW_SUBSCRIBER_COLUMNS, conflict=("email_key",))
        self.insert_memberships = bulk_insert(conn, memberships, _MEMBERSHIP_COLUMNS)
        self.update_membership = (
            memberships.update()
            .where(
                memberships.c.subscriber_id == sa.bindparam("member_id"),
                memberships.c.list_id == sa.bindparam("member_list_id"),
            )
            .values(
                status=sa.bindparam("new_status"),
                changed_at=sa.bindparam("new_changed_at", type_=memberships.c.changed_at.type),
                change_source=BY_IMPORT,
            )
        )
        self.driver_time = driver_form(subscribers.c.created_at, dialect)
        self.driver_attributes = driver_form(subscribers.c.attributes, dialect)
        self.no_attributes = self.driver_attributes({})
        self.update_subscriber = (
            subscribers.update()
            .where(subscribers.c.id == sa.bindparam("subscriber_id"))
            .values(
                name=sa.bindparam("new_name"),
                status=sa.bindparam("new_status"),
                attributes=sa.bindparam("new_attributes", type_=subscribers.c.attributes.type),
                confirmed_at=sa.bindparam("new_confirmed_at", type_=subscribers.c.confirmed_at.type),
                suppressed_at=sa.bindparam("new_suppressed_at", type_=subscribers.c.suppressed_at.type),
                updated_at=sa.bindparam("new_updated_at", type_=subscribers.c.updated_at.type),
            )
        )
        with conn.begin():
            self.erasures = ErasureCheck(conn, digests)
        if dry_run:
            self.select_seen = sa.select(_dry_run_seen.c.email_key, _dry_run_seen.c.row_number).where(
                keys_condition(_dry_run_seen.c.email_key, dialect.name)
            )
            with conn.begin():
                _dry_run_seen.create(conn, checkfirst=True)
                conn.execute(_dry_run_seen.delete())
            self.insert_seen = bulk_insert(conn, _dry_run_seen, ("email_key", "row_number"), conflict=None)

    def close(self) -> None:
        # Temporary tables live as long as the pooled connection, not the import.
        try:
            for insert in (self.insert_subscribers, self.insert_memberships, getattr(self, "insert_seen", None)):
                if isinstance(insert, CopyInsert):
                    insert.close(self.conn)
            if self.dry_run:
                with self.conn.begin():
                    _dry_run_seen.drop(self.conn, checkfirst=True)
        except sa.exc.DBAPIError:  # pragma: no cover - the connection is gone; so are the tables
            pass

    def write(self, batch: list[ImportRow]) -> None:
        conn = self.conn
        report = self.report
        with conn.begin():
            rows = self._first_in_batch(batch)
            if self.dry_run:
                rows = self._not_seen_in_dry_run(rows)
            keys = self.many([row.address.key for row in rows])
            existing = {record.email_key: record for record in conn.execute(self.select_existing, {"keys": keys})}
            if not self.dry_run:
                rows = self._not_claimed(rows, existing)
            # (subscriber id, list id) -> (status, changed_at) of the batch's existing subscribers.
            current: dict[tuple[int, int], tuple[str, datetime]] = {}
            if existing:
                ids = [record.id for record in existing.values()]
                current = {
                    (subscriber_id, list_id): (status, changed_at)
                    for subscriber_id, list_id, status, changed_at in conn.execute(
                        self.select_memberships, {"ids": self.many(ids)}
                    )
                }
            list_ids = self._list_ids({slug for row in rows for slug, _ in row.lists})

            now = utcnow()
            new_rows: list[ImportRow] = []
            updates: list[dict] = []
            standing_changes: list[dict] = []
            joins: list[tuple[int, int | None, str]] = []  # (subscriber id, list id, status) of existing subscribers
            for row in rows:
                record = existing.get(row.address.key)
                if record is None:
                    new_rows.append(row)
                    report.imported += 1
                    continue
                if record.status in SUPPRESSIONS and row.status not in SUPPRESSIONS and not self.resubscribe:
                    # The address stops every list: nothing of the row applies.
                    self.problem(
                        row.number,
                        f"{row.address.email} is {record.status}{since_text(record.suppressed_at)}; "
                        "not resubscribed (pass --resubscribe if they asked to come back)",
                    )
                    continue
                refused: list[str] = []
                changed_lists = 0
                activated = False
                for slug, status in row.lists:
                    list_id = list_ids[slug]
                    stored = current.get((record.id, list_id)) if list_id is not None else None
                    if stored is None:
                        joins.append((record.id, list_id, status))
                        changed_lists += 1
                        activated = activated or status == ACTIVE
                        continue
                    new_status = self._standing(stored[0], status)
                    if new_status is None:
                        refused.append(f"{slug}{since_text(stored[1])}")
                    elif new_status != stored[0]:
                        standing_changes.append(
                            {
                                "member_id": record.id,
                                "member_list_id": list_id,
                                "new_status": new_status,
                                "new_changed_at": now,
                            }
                        )
                        changed_lists += 1
                        activated = activated or new_status == ACTIVE
                change = self._change(row, record, now, activated=activated)
                if change or changed_lists:
                    report.updated += 1
                elif not refused:
                    report.unchanged += 1
                if refused:
                    self.problem(
                        row.number,
                        f"{row.address.email} unsubscribed from {', '.join(refused)}; not resubscribed there "
                        "(pass --resubscribe if they asked to come back)",
                        skipped=not (change or changed_lists),
                    )
                if change:
                    updates.append(change)

            new_rows = self._not_erased(new_rows)
            if self.dry_run:
                return
            driver_now = self.driver_time(now)
            if new_rows:
                self.insert_subscribers.execute(conn, [self._new_subscriber(row, driver_now) for row in new_rows])
                new_keys = self.many([row.address.key for row in new_rows])
                new_ids = dict(conn.execute(self.select_ids, {"keys": new_keys}).all())
                first_row = self.first_row
                for row in new_rows:
                    subscriber_id = new_ids[row.address.key]
                    self._grow_to(subscriber_id)
                    first_row[subscriber_id] = row.number
                    joins.extend((subscriber_id, list_ids[slug], status) for slug, status in row.lists)
            if updates:
                conn.execute(self.update_subscriber, updates)
            if standing_changes:
                conn.execute(self.update_membership, standing_changes)
            if joins:
                self.insert_memberships.execute(
                    conn, [(l, s, driver_now, status, driver_now, BY_IMPORT) for s, l, status in joins]
                )

    def _not_erased(self, rows: list[ImportRow]) -> list[ImportRow]:
        """New rows whose address was not erased, or is being let back in by resubscribe."""
        erased = self.erasures.erased(self.conn, [row.address.key for row in rows])
        if not erased:
            return rows
        if self.resubscribe:
            if not self.dry_run:
                self.erasures.lift(self.conn, list(erased))
            return rows
        kept = []
        for row in rows:
            moment = erased.get(row.address.key)
            if moment is None:
                kept.append(row)
            else:
                self.report.imported -= 1
                self.problem(row.number, erased_message(row.address.email, moment))
        return kept

    def _first_in_batch(self, batch: list[ImportRow]) -> list[ImportRow]:
        first: dict[str, ImportRow] = {}
        for row in batch:
            earlier = first.get(row.address.key)
            if earlier is None:
                first[row.address.key] = row
            else:
                self._duplicate(row, earlier.number)
        return list(first.values())

    def _not_claimed(self, rows: list[ImportRow], existing: dict) -> list[ImportRow]:
        """Rows whose subscriber no earlier batch of this file has used; marks them used."""
        first_row = self.first_row
        kept = []
        for row in rows:
            record = existing.get(row.address.key)
            if record is None:
                kept.append(row)
                continue
            self._grow_to(record.id)
            if first_row[record.id]:
                self._duplicate(row, first_row[record.id])
                existing.pop(row.address.key)
            else:
                first_row[record.id] = row.number
                kept.append(row)
        return kept

    def _not_seen_in_dry_run(self, rows: list[ImportRow]) -> list[ImportRow]:
        if not rows:
            return rows
        keys = self.many([row.address.key for row in rows])
        seen_before = dict(self.conn.execute(self.select_seen, {"keys": keys}).all())
        kept = []
        for row in rows:
            earlier = seen_before.get(row.address.key)
            if earlier is None:
                kept.append(row)
            else:
                self._duplicate(row, earlier)
        self.insert_seen.execute(self.conn, [(row.address.key, row.number) for row in kept])
        return kept

    def _duplicate(self, row: ImportRow, earlier: int) -> None:
        self.problem(row.number, f"{row.address.email} repeats row {earlier} (the first row wins)")

    def _grow_to(self, subscriber_id: int) -> None:
        missing = subscriber_id + 1 - len(self.first_row)
        if missing > 0:
            # Grow geometrically so a million new ids cost a few dozen reallocations.
            self.first_row.frombytes(bytes(4 * max(missing, len(self.first_row))))

    def _list_ids(self, slugs: set[str]) -> dict[str, int | None]:
        for slug in slugs - self.list_ids.keys():
            # A dry run creates nothing: a list that does not exist yet has no id and no members.
            self.list_ids[slug] = find_list_id(self.conn, slug) if self.dry_run else get_or_create_list(self.conn, slug)
        return self.list_ids

    def _new_subscriber(self, row: ImportRow, driver_now) -> tuple:
        status = row.status
        vouched = status == ACTIVE and any(standing == ACTIVE for _, standing in row.lists)
        return (
            row.address.email,
            row.address.key,
            row.name,
            status,
            self.driver_attributes(row.attributes) if row.attributes else self.no_attributes,
            self.source,
            driver_now,
            driver_now,
            # An editor importing a list vouches for the consent of its active rows.
            driver_now if vouched else None,
            driver_now if status in SUPPRESSIONS else None,
        )

    def _standing(self, stored: str, row: str) -> str | None:
        """The new standing on a list the subscriber is on, or None when the row would put
        back someone who left it (refused unless resubscribe)."""
        if stored == UNSUBSCRIBED and row != UNSUBSCRIBED:
            return row if self.resubscribe else None
        if stored == ACTIVE and row == PENDING:
            return ACTIVE  # a pending row does not take back a subscription already confirmed
        return row

    def _change(self, row: ImportRow, record, now: datetime, *, activated: bool) -> dict:
        """The new values for an existing subscriber ({} when nothing changes); `activated`:
        the row makes them active on a list they were not active on."""
        status = record.status
        confirmed_at = record.confirmed_at
        suppressed_at = record.suppressed_at
        if record.status in SUPPRESSIONS:
            if row.status not in SUPPRESSIONS:  # with --resubscribe (write() refused it otherwise)
                status, suppressed_at, confirmed_at = ACTIVE, None, now
            # A suppressed row for a suppressed subscriber keeps the stored reason.
        elif row.status in SUPPRESSIONS:
            status, suppressed_at = row.status, now
        elif activated:
            # An editor importing a list vouches for the consent of its active rows.
            confirmed_at = now
        name = row.name if row.name else record.name
        attributes = record.attributes
        if row.attributes:
            merged = {**record.attributes, **row.attributes}
            if merged != record.attributes:
                attributes = merged
        if (
            status == record.status
            and name == record.name
            and attributes is record.attributes
            and confirmed_at == record.confirmed_at
        ):
            return {}
        return {
            "subscriber_id": record.id,
            "new_name": name,
            "new_status": status,
            "new_attributes": attributes,
            "new_confirmed_at": confirmed_at,
            "new_suppressed_at": suppressed_at,
            "new_updated_at": now,
        }
