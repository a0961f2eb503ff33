"""The delivery ledger: one row per (issue, subscriber), the truth of a send.

Rows move `queued -> sending -> sent | failed | skipped`.  A row becomes `sending` in a
committed transaction *before* its message leaves, and `sent` after the provider took it,
so whatever the sender's process suffers, a row is never lost and never silently sent
twice: after a crash the rows still in `sending` are exactly the uncertain ones.

Only SQL lives here; `newsletter.sending.campaign` decides when to call what.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from newsletter.store.dialect import insert_ignoring_conflicts
from newsletter.store.schema import (
    ACTIVE,
    FAILED,
    PERMANENT,
    QUEUED,
    SENDING,
    SENT,
    SKIPPED,
    TEMPORARY,
    deliveries,
    issues,
    links,
    lists,
    memberships,
    subscribers,
    utcnow,
)

# A sender that has not said it is alive for this long is taken to be gone.  While it runs it
# beats every HEARTBEAT_SECONDS (5 s, sending/campaign.py); it is silent longer only while
# the database is away, and it rides that out for up to DB_PATIENCE (60 s,
# sending/ride_out.py) before it stops.  After an outage just under that bound its next try
# comes within LONGEST_PAUSE (5 s) of the database's return and its heartbeat within the
# same round of its loop, so it has been silent for at most 5 + 60 + 5 s and that round:
# 90 s leaves 20 s for the round on a loaded machine, and a live sender that rode an outage
# out is never taken for dead by one that did not see it (one started just after).  A
# sender that saw the outage itself counts the others' silence from then (senders.py), which
# also covers the longer wait of a sender recording its outcomes (RECORD_PATIENCE).
SENDER_SILENCE = timedelta(seconds=90)


@dataclass(frozen=True)
class StoredIssue:
    id: int
    slug: str
    uid: str
    subject: str
    list_id: int | None
    email_html: str
    email_text: str
    web_html: str
    source_sha256: str
    snapshot_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True)
class LedgerCounts:
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed_temporary: int = 0
    failed_permanent: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.sending + self.sent + self.failed_temporary + self.failed_permanent + self.skipped


@dataclass(frozen=True)
class Claimed:
    """A row just moved to `sending`, with what is needed to build its message."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    message_id: str
    # Tries of this row so far, this one included.
    attempts: int = 1


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed row."""

    delivery_id: int
    status: str  # SENT, FAILED, SKIPPED, QUEUED (handed back untried) or SENDING (uncertain)
    failure: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    attempts: int = 0
    # For FAILED temporarily: when a later claim may try again.
    next_attempt_at: datetime | None = None


def source_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def this_sender() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---- issues ----


def get_issue(conn: sa.Connection, slug: str) -> StoredIssue | None:
    row = conn.execute(sa.select(issues).where(issues.c.slug == slug)).mappings().first()
    return _stored(row) if row else None


def _stored(row) -> StoredIssue:
    return StoredIssue(
        id=row["id"],
        slug=row["slug"],
        uid=row["uid"],
        subject=row["subject"],
        list_id=row["list_id"],
        email_html=row["email_html"],
        email_text=row["email_text"],
        web_html=row["web_html"],
        source_sha256=row["source_sha256"],
        snapshot_at=row["snapshot_at"],
        completed_at=row["completed_at"],
    )


def save_issue(
    conn: sa.Connection,
    *,
    slug: str,
    title: str,
    subject: str,
    preheader: str,
    issue_date: date,
    language: str,
    list_id: int | None,
    email_html: str,
    email_text: str,
    web_html: str,
    source_sha256: str,
    link_urls: Sequence[str],
    link_origins: Sequence[Mapping[str, Any]] = (),
) -> StoredIssue:
    """Store the rendered issue, or update it while its send has not begun.

    Once the audience is snapshotted the stored render is frozen: every subscriber gets the
    same content and the link indices in tokens already sent keep their meaning.
    """
    values = {
        "title": title,
        "subject": subject,
        "preheader": preheader,
        "issue_date": issue_date,
        "language": language,
        "list_id": list_id,
        "email_html": email_html,
        "email_text": email_text,
        "web_html": web_html,
        "source_sha256": source_sha256,
    }
    if get_issue(conn, slug) is None:
        conn.execute(
            insert_ignoring_conflicts(conn, issues)
            .values(slug=slug, uid=secrets.token_hex(8), created_at=utcnow(), **values)
            .on_conflict_do_nothing(index_elements=["slug"])
        )
    # Senders started together on PostgreSQL each store the issue.  Without the row lock two
    # of them woken by the first one's commit both deleted its links; the one whose DELETE
    # waited for the other's then did not see the links that other had just inserted (its
    # statement's snapshot predates them) and inserted the same indices: pk_links violated.
    # Locked, they take turns and each statement sees the last one's rows.  (SQLite has one
    # writer at a time anyway and ignores FOR UPDATE.)
    conn.execute(sa.select(issues.c.id).where(issues.c.slug == slug).with_for_update())
    stored = get_issue(conn, slug)
    assert stored is not None
    if stored.snapshot_at is not None:
        return stored
    conn.execute(sa.update(issues).where(issues.c.id == stored.id).values(**values))
    conn.execute(sa.delete(links).where(links.c.issue_id == stored.id))
    if link_urls:
        # Each link's words and entry (`compose/link_origins.py`), where known.
        blank = {"text": None, "entry_idx": None, "entry": None, "category": None}
        origins = list(link_origins) + [blank] * (len(link_urls) - len(link_origins))
        conn.execute(
            links.insert(),
            [
                {**blank, **origin, "issue_id": stored.id, "idx": i, "url": url}
                for i, (url, origin) in enumerate(zip(link_urls, origins, strict=True))
            ],
        )
    return stored


def list_slug(conn: sa.Connection, list_id: int) -> str:
    return conn.execute(sa.select(lists.c.slug).where(lists.c.id == list_id)).scalar_one()


def issue_links(conn: sa.Connection, issue_id: int) -> list[str]:
    rows = conn.execute(sa.select(links.c.url).where(links.c.issue_id == issue_id).order_by(links.c.idx))
    return list(rows.scalars())


def link_url(conn: sa.Connection, issue_id: int, index: int) -> str | None:
    query = sa.select(links.c.url).where(links.c.issue_id == issue_id, links.c.idx == index)
    return conn.execute(query).scalar_one_or_none()


# ---- senders (the leases themselves: store/leases.py) ----


def sender_alive(sender: str, seen_at: datetime | None) -> bool:
    """Whether the process named `sender` ("host:pid"), last seen at `seen_at`, still runs."""
    host, _, pid = sender.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        # On this machine the answer is exact: a killed sender's pid is gone.
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return seen_at is not None and utcnow() - seen_at < SENDER_SILENCE


def refresh_sender(conn: sa.Connection, issue_id: int, me: str) -> None:
    conn.execute(
        sa.update(issues).where(issues.c.id == issue_id, issues.c.sender == me).values(sender_seen_at=utcnow())
    )


# ---- the audience ----


def audience_query(list_id: int) -> sa.Select:
    """Who a send goes to: the list's active members whose address is active.  Someone who
    left this list (even if still on others), is pending, bounced or complained is never in
    it (DESIGN.md "Rules of outcome")."""
    return (
        sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.name)
        .join(memberships, memberships.c.subscriber_id == subscribers.c.id)
        .where(memberships.c.list_id == list_id, memberships.c.status == ACTIVE, subscribers.c.status == ACTIVE)
    )


def addresses_to_send(conn: sa.Connection, issue_id: int, list_id: int, *, snapshotted: bool) -> Iterator[str]:
    """The addresses the next run would send to: the list's audience before the snapshot,
    the rows queued or failed temporarily after it."""
    if snapshotted:
        query = (
            sa.select(subscribers.c.email)
            .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
            .where(
                deliveries.c.issue_id == issue_id,
                sa.or_(
                    deliveries.c.status == QUEUED,
                    sa.and_(deliveries.c.status == FAILED, deliveries.c.failure == TEMPORARY),
                ),
            )
        )
    else:
        query = sa.select(audience_query(list_id).subquery().c.email)
    yield from conn.execute(query).scalars()


def count_audience(conn: sa.Connection, list_id: int) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(audience_query(list_id).subquery())).scalar_one()


def snapshot_audience(conn: sa.Connection, issue_id: int, list_id: int) -> int:
    """Write one queued row per active member, once; returns how many rows were added.

    One INSERT ... SELECT inside the database: a million subscribers never pass through
    Python memory.
    """
    now = utcnow()
    audience = audience_query(list_id).add_columns(memberships.c.created_at.label("joined_at")).subquery()
    select = sa.select(
        sa.literal(issue_id),
        audience.c.id,
        sa.literal(QUEUED),
        sa.literal(0),
        sa.literal(now, type_=deliveries.c.queued_at.type),
        sa.literal(now, type_=deliveries.c.updated_at.type),
    ).where(
        # SQLite needs a WHERE in an INSERT ... SELECT ... ON CONFLICT, or it reads the ON
        # as a join constraint (sqlite.org/lang_upsert.html, "parsing ambiguity").
        sa.true()
    )
    # Rows are numbered in the order readers joined the list, and claimed lowest id first:
    # a send cut short (a warm-up cap, a spent SES quota) reaches the longest-standing,
    # most engaged readers first, as warming up a domain wants.
    select = select.order_by(audience.c.joined_at, audience.c.id)
    insert = insert_ignoring_conflicts(conn, deliveries).from_select(
        ["issue_id", "subscriber_id", "status", "attempts", "queued_at", "updated_at"], select
    )
    added = conn.execute(insert.on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])).rowcount
    conn.execute(sa.update(issues).where(issues.c.id == issue_id).values(snapshot_at=now, list_id=list_id))
    return added


# ---- claiming and recording ----


def claim(
    conn: sa.Connection,
    issue_id: int,
    limit: int,
    message_id,
    *,
    now: datetime | None = None,
    sender_id: int | None = None,
) -> tuple[list[Claimed], list[Outcome]]:
    """Move up to `limit` rows to `sending`, lowest ids first, as sender lease `sender_id`'s
    (sending/senders.py): queued ones, and those failed temporarily whose next try is due
    at `now` (newsletter/sending/retry.py).

    Rows whose subscriber stopped being in the audience since the snapshot (they left the
    issue's list, or their address bounced or complained, mid-send) are marked skipped
    instead, with the reason as their failure: checked here, moments before their message
    would leave.  `message_id(subscriber_id)` names each message.
    Returns the claimed rows and the skipped ones.
    """
    now = now or utcnow()
    # Two scans, each down the (issue_id, status, id) index in id order and stopping at
    # `limit`: the due retries, then the queued rows.  One scan for "queued OR due" cannot
    # walk that index in order: PostgreSQL read every queued row of the issue and sorted
    # them for each claim (240 ms at 80,000 queued, so a send of N rows did O(N^2) work).
    rows = _claimable_rows(conn, issue_id, limit, _due_retry(now))
    if len(rows) < limit:
        rows += _claimable_rows(conn, issue_id, limit - len(rows), deliveries.c.status == QUEUED)
    claimed: list[Claimed] = []
    skipped: list[Outcome] = []
    for row in rows:
        if row.status != ACTIVE:
            skipped.append(Outcome(row.id, SKIPPED, failure=row.status))
        elif row.membership != ACTIVE:
            # None: taken off the list altogether (the subscriber was never re-added).
            skipped.append(Outcome(row.id, SKIPPED, failure=row.membership or "not on the list"))
        else:
            claimed.append(
                Claimed(row.id, row.subscriber_id, row.email, row.name, message_id(row.subscriber_id), row.attempts + 1)
            )
    if claimed:
        conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == sa.bindparam("row_id"), _claimable(now))
            .values(
                status=SENDING,
                failure=None,
                next_attempt_at=None,
                claimed_at=now,
                updated_at=now,
                message_id=sa.bindparam("mid"),
                sender_id=sender_id,
                attempts=deliveries.c.attempts + 1,
            ),
            [{"row_id": c.delivery_id, "mid": c.message_id} for c in claimed],
        )
    if skipped:
        record(conn, skipped)
    return claimed, skipped


def _claimable_rows(conn: sa.Connection, issue_id: int, limit: int, condition: sa.ColumnElement[bool]) -> list:
    """Up to `limit` rows of the issue meeting `condition`, lowest ids first, locked (on
    PostgreSQL) for the claim that follows, with what deciding skip-or-send needs."""
    issue_list = sa.select(issues.c.list_id).where(issues.c.id == issue_id).scalar_subquery()
    query = (
        sa.select(
            deliveries.c.id,
            deliveries.c.subscriber_id,
            deliveries.c.attempts,
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.status,
            memberships.c.status.label("membership"),
        )
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .outerjoin(
            memberships,
            sa.and_(memberships.c.subscriber_id == deliveries.c.subscriber_id, memberships.c.list_id == issue_list),
        )
        .where(deliveries.c.issue_id == issue_id, condition)
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        # Senders sharing an issue (sending/senders.py) never claim the same row, and
        # never wait for each other's claims.
        query = query.with_for_update(of=deliveries, skip_locked=True)
    return list(conn.execute(query).all())


def _due_retry(now: datetime) -> sa.ColumnElement[bool]:
    """Failed temporarily with the next try due."""
    return sa.and_(
        deliveries.c.status == FAILED,
        deliveries.c.failure == TEMPORARY,
        sa.or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
    )


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    """Queued, or failed temporarily with the next try due."""
    return sa.or_(deliveries.c.status == QUEUED, _due_retry(now))


def due_retries(conn: sa.Connection, issue_id: int, now: datetime) -> int:
    """Rows failed temporarily whose next try is due at `now`."""
    return conn.execute(
        sa.select(sa.func.count())
        .select_from(deliveries)
        .where(deliveries.c.issue_id == issue_id, deliveries.c.status == FAILED, _claimable(now))
    ).scalar_one()


def next_retry_at(conn: sa.Connection, issue_id: int) -> datetime | None:
    """When the earliest row failed temporarily is due again."""
    return conn.execute(
        sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
            deliveries.c.issue_id == issue_id, deliveries.c.status == FAILED, deliveries.c.failure == TEMPORARY
        )
    ).scalar_one()


def record(conn: sa.Connection, outcomes: Iterable[Outcome]) -> None:
    """Write what happened to claimed rows, in one statement per kind of outcome."""
    now = utcnow()
    by_status: dict[str, list[dict]] = {}
    for outcome in outcomes:
        by_status.setdefault(outcome.status, []).append(
            {
                "row_id": outcome.delivery_id,
                "new_failure": outcome.failure,
                "pid": outcome.provider_message_id,
                "err": outcome.error,
                "extra": outcome.attempts,
                "due": outcome.next_attempt_at,
            }
        )
    for status, params in by_status.items():
        values = {
            "status": status,
            "failure": sa.bindparam("new_failure"),
            "error": sa.bindparam("err"),
            "updated_at": now,
            # Retries inside one claim count as attempts too.
            "attempts": deliveries.c.attempts + sa.bindparam("extra"),
            "next_attempt_at": sa.bindparam("due", type_=deliveries.c.next_attempt_at.type),
        }
        if status == SENT:
            values.update(provider_message_id=sa.bindparam("pid"), sent_at=now)
        conn.execute(sa.update(deliveries).where(deliveries.c.id == sa.bindparam("row_id")).values(**values), params)


def counts(conn: sa.Connection, issue_id: int) -> LedgerCounts:
    rows = conn.execute(
        sa.select(deliveries.c.status, deliveries.c.failure, sa.func.count())
        .where(deliveries.c.issue_id == issue_id)
        .group_by(deliveries.c.status, deliveries.c.failure)
    )
    tally = {"queued": 0, "sending": 0, "sent": 0, "failed_temporary": 0, "failed_permanent": 0, "skipped": 0}
    for status, failure, number in rows:
        if status == FAILED:
            tally["failed_permanent" if failure == PERMANENT else "failed_temporary"] += number
        else:
            tally[status] += number
    return LedgerCounts(**tally)


def uncertain_rows(conn: sa.Connection, issue_id: int) -> Iterator[tuple[int, str | None, str]]:
    """(delivery id, message id, address) of the rows left in `sending`."""
    query = (
        sa.select(deliveries.c.id, deliveries.c.message_id, subscribers.c.email)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.issue_id == issue_id, deliveries.c.status == SENDING)
        .order_by(deliveries.c.id)
    )
    for row in conn.execute(query):
        yield row.id, row.message_id, row.email


def requeue(
    conn: sa.Connection, issue_id: int, *, status: str, failure: str | None = None, ids: Sequence[int] | None = None
) -> int:
    """Put rows of `status` (and `failure`) back in the queue; returns how many."""
    condition = [deliveries.c.issue_id == issue_id, deliveries.c.status == status]
    if failure is not None:
        condition.append(deliveries.c.failure == failure)
    if ids is not None:
        condition.append(deliveries.c.id.in_(ids))
    result = conn.execute(
        sa.update(deliveries)
        .where(*condition)
        .values(status=QUEUED, failure=None, error=None, next_attempt_at=None, updated_at=utcnow())
    )
    return result.rowcount


def mark_complete_if_done(conn: sa.Connection, issue_id: int) -> bool:
    """Record when the issue's send became complete: no row queued, in flight or failed
    temporarily (the rule of newsletter/sending/state.py)."""
    pending = conn.execute(
        sa.select(sa.func.count())
        .select_from(deliveries)
        .where(
            deliveries.c.issue_id == issue_id,
            sa.or_(
                deliveries.c.status.in_((QUEUED, SENDING)),
                sa.and_(deliveries.c.status == FAILED, deliveries.c.failure != PERMANENT),
            ),
        )
    ).scalar_one()
    if pending:
        return False
    conn.execute(
        sa.update(issues).where(issues.c.id == issue_id, issues.c.completed_at.is_(None)).values(completed_at=utcnow())
    )
    return True


def permanent_failures(conn: sa.Connection, issue_id: int, *, limit: int) -> list[tuple[str, str]]:
    """(address, reason) of up to `limit` rows failed permanently, in ledger order."""
    query = (
        sa.select(subscribers.c.email, deliveries.c.error)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.issue_id == issue_id, deliveries.c.status == FAILED, deliveries.c.failure == PERMANENT)
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    return [(row.email, row.error or "no reason recorded") for row in conn.execute(query)]


def settle_uncertain(
    conn: sa.Connection,
    delivery_id: int,
    *,
    status: str,
    failure: str | None = None,
    error: str | None = None,
    provider_message_id: str | None = None,
    at: datetime | None = None,
) -> bool:
    """Settle a row left `sending` (uncertain: in flight when a send stopped) by what the
    provider later reported about its message: SENT, or FAILED with `failure` and `error`.
    A row in any other state is left as it is: the sender's own record, or an earlier
    report, already said what happened.  Returns whether the row changed."""
    values: dict[str, Any] = {"status": status, "updated_at": utcnow(), "next_attempt_at": None}
    if status == SENT:
        values["sent_at"] = at or utcnow()
        if provider_message_id:
            values["provider_message_id"] = provider_message_id
    else:
        values.update(failure=failure, error=error)
    result = conn.execute(
        sa.update(deliveries).where(deliveries.c.id == delivery_id, deliveries.c.status == SENDING).values(**values)
    )
    return result.rowcount == 1
