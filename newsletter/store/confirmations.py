"""The SQL of the double opt-in: the confirmation emails' rows and the hourly throttle.

A confirmation link carries a random token; only its SHA-256 is stored, so the table can
tell a link it issued but a copy of the table cannot be turned into working links.  Only
queries live here; newsletter.audience.double_opt_in decides what a request and a click do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from newsletter.store.schema import confirmations, subscribers


@dataclass(frozen=True)
class ConfirmationRow:
    id: int
    subscriber_id: int
    list_id: int
    name: str | None
    requested_at: datetime
    expires_at: datetime
    used_at: datetime | None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class Claim:
    """The hourly throttle taken: `previous` is what to put back if the email fails."""

    claimed_at: datetime
    previous: datetime | None


def claim_email_slot(conn: sa.Connection, subscriber_id: int, now: datetime, interval) -> Claim | None:
    """Take the address's one confirmation email per `interval`, atomically: of two requests
    at once only one UPDATE still matches the old timestamp.  None when it is not due."""
    previous = conn.execute(
        sa.select(subscribers.c.confirmation_sent_at).where(subscribers.c.id == subscriber_id)
    ).scalar_one_or_none()
    if previous is not None and now - previous < interval:
        return None
    condition = (
        subscribers.c.confirmation_sent_at.is_(None)
        if previous is None
        else subscribers.c.confirmation_sent_at == previous
    )
    claimed = conn.execute(
        subscribers.update().where(subscribers.c.id == subscriber_id, condition).values(confirmation_sent_at=now)
    ).rowcount
    return Claim(now, previous) if claimed else None


def release_email_slot(conn: sa.Connection, subscriber_id: int, claim: Claim) -> None:
    conn.execute(
        subscribers.update()
        .where(subscribers.c.id == subscriber_id, subscribers.c.confirmation_sent_at == claim.claimed_at)
        .values(confirmation_sent_at=claim.previous)
    )


def last_email_sent_at(conn: sa.Connection, subscriber_id: int) -> datetime | None:
    return conn.execute(
        sa.select(subscribers.c.confirmation_sent_at).where(subscribers.c.id == subscriber_id)
    ).scalar_one_or_none()


def issue_confirmation(
    conn: sa.Connection,
    *,
    token: str,
    subscriber_id: int,
    list_id: int,
    name: str | None,
    requested_at: datetime,
    expires_at: datetime,
) -> None:
    """Store the row of a new confirmation email, replacing the (subscriber, list)'s unused
    older ones: only the newest email's link confirms."""
    conn.execute(
        confirmations.delete().where(
            confirmations.c.subscriber_id == subscriber_id,
            confirmations.c.list_id == list_id,
            confirmations.c.used_at.is_(None),
        )
    )
    conn.execute(
        confirmations.insert().values(
            digest=token_digest(token),
            subscriber_id=subscriber_id,
            list_id=list_id,
            name=name or None,
            requested_at=requested_at,
            expires_at=expires_at,
        )
    )


def withdraw_confirmation(conn: sa.Connection, token: str) -> None:
    """Forget a confirmation whose email could not be sent."""
    conn.execute(confirmations.delete().where(confirmations.c.digest == token_digest(token)))


def find_confirmation(conn: sa.Connection, token: str, *, for_update: bool = False) -> ConfirmationRow | None:
    query = sa.select(
        confirmations.c.id,
        confirmations.c.subscriber_id,
        confirmations.c.list_id,
        confirmations.c.name,
        confirmations.c.requested_at,
        confirmations.c.expires_at,
        confirmations.c.used_at,
    ).where(confirmations.c.digest == token_digest(token))
    if for_update and conn.dialect.name == "postgresql":
        # Two clicks at once: the second waits and then sees the link used.
        query = query.with_for_update()
    row = conn.execute(query).first()
    return ConfirmationRow(*row) if row else None


def has_confirmations(conn: sa.Connection, subscriber_id: int, list_id: int) -> bool:
    return (
        conn.execute(
            sa.select(confirmations.c.id).where(
                confirmations.c.subscriber_id == subscriber_id, confirmations.c.list_id == list_id
            )
        ).first()
        is not None
    )


def use_confirmation(conn: sa.Connection, confirmation_id: int, now: datetime) -> None:
    """Mark the link used; the name typed on the form has reached the subscriber (or was
    not wanted) and is not kept here any longer."""
    conn.execute(confirmations.update().where(confirmations.c.id == confirmation_id).values(used_at=now, name=None))


def forget_expired(conn: sa.Connection, now: datetime) -> int:
    """Delete the rows of links that can no longer confirm (and the names typed with them)."""
    return conn.execute(
        confirmations.delete().where(confirmations.c.expires_at < now, confirmations.c.used_at.is_(None))
    ).rowcount
