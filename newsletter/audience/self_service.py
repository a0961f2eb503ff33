"""A reader's own changes to their subscription, made from the web: unsubscribe (and its
undo), and subscribing with double opt-in.

Who may come back, and how (a decision, documented in docs/deploy.md as well):

- Someone who unsubscribed can undo it at once from the page that confirmed the unsubscribe
  (the "resubscribe" button): the signed link they followed came in their own mail, which
  is the same proof of the mailbox a confirmation link gives.  Only `unsubscribed` is undone
  this way, never `bounced` or `complained`.
- Otherwise anyone (new, unconfirmed, unsubscribed, bounced, complained) subscribes through
  the form and becomes active only by opening the confirmation link mailed to the address:
  double opt-in.  A bounced address must show that it receives mail again; someone who
  complained must show that they really want it.
- A confirmation link is good for CONFIRMATION_VALID and never undoes a later suppression:
  a link mailed before an unsubscribe (or bounce, or complaint) no longer confirms, so an
  old mail reopened, or scanned, cannot resubscribe anyone.

The subscribe form never tells whether an address was known: the same answer in every
case, and the confirmation email (when one is due) is sent after the answer has gone.
Already-active members of the list get no email at all; everyone else at most one an hour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from newsletter.audience.addresses import normalize_address
from newsletter.audience.subscribers import add_subscriber, unsubscribe
from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.mail.confirmation import confirmation_message
from newsletter.mail.headers import ascii_address
from newsletter.store import Store
from newsletter.store.dialect import insert_ignoring_conflicts
from newsletter.store.events import delivery_for, record_event
from newsletter.store.lists import check_list_slug, find_list_id, get_or_create_list
from newsletter.store.schema import (
    ACTIVE,
    CONFIRM,
    RESUBSCRIBE,
    SUPPRESSED,
    UNCONFIRMED,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    issues,
    lists,
    memberships,
    subscribers,
    utcnow,
)
from newsletter.transports.base import Transport

log = logging.getLogger("newsletter.web")

# At most one confirmation email per address in this time.
CONFIRMATION_INTERVAL = timedelta(hours=1)
# A confirmation link older than this no longer confirms; the form sends a new one.
CONFIRMATION_VALID = timedelta(days=7)


@dataclass(frozen=True)
class Reader:
    """The subscriber a signed link names, as the pages show them."""

    id: int
    email: str
    name: str
    status: str


def find_reader(store: Store, subscriber_id: int) -> Reader | None:
    with store.read() as conn:
        return _reader(conn, subscriber_id)


def _reader(conn: sa.Connection, subscriber_id: int) -> Reader | None:
    row = conn.execute(
        sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.status).where(
            subscribers.c.id == subscriber_id
        )
    ).first()
    return Reader(*row) if row else None


# ---- unsubscribe and its undo ---------------------------------------------------------


def unsubscribe_reader(
    store: Store, *, issue_id: int, subscriber_id: int, method: str, user_agent: str | None
) -> tuple[Reader | None, bool]:
    """Unsubscribe the subscriber of an unsubscribe link; returns them (None if erased) and
    whether anything changed.  Repeating it changes nothing and records nothing."""
    try:
        subscriber, changed = unsubscribe(store, subscriber_id=subscriber_id)
    except InputError:  # erased since the mail went out: nobody left to unsubscribe
        return None, False
    if changed:
        _record(store, UNSUBSCRIBE, issue_id, subscriber_id, user_agent, {"method": method})
    return Reader(subscriber.id, subscriber.email, subscriber.name, subscriber.status), changed


def undo_unsubscribe(
    store: Store, *, issue_id: int, subscriber_id: int, user_agent: str | None
) -> tuple[Reader | None, bool]:
    """Make an `unsubscribed` subscriber active again (see the module docstring for why this
    needs no confirmation email); any other status is left alone."""
    now = utcnow()
    with store.begin() as conn:
        changed = conn.execute(
            subscribers.update()
            .where(subscribers.c.id == subscriber_id, subscribers.c.status == UNSUBSCRIBED)
            .values(status=ACTIVE, unsubscribed_at=None, updated_at=now)
        ).rowcount
        if changed:
            _record_in(conn, RESUBSCRIBE, issue_id, subscriber_id, user_agent, {"method": "page"})
        reader = _reader(conn, subscriber_id)
    return reader, bool(changed)


def _record(
    store: Store, kind: str, issue_id: int | None, subscriber_id: int, user_agent: str | None, detail: dict
) -> None:
    with store.begin() as conn:
        _record_in(conn, kind, issue_id, subscriber_id, user_agent, detail)


def _record_in(
    conn: sa.Connection, kind: str, issue_id: int | None, subscriber_id: int, user_agent: str | None, detail: dict
) -> None:
    delivery = None
    if issue_id is not None:
        if conn.execute(sa.select(issues.c.id).where(issues.c.id == issue_id)).first() is None:
            issue_id = None  # the issue was deleted; the event still counts for the subscriber
        else:
            delivery = delivery_for(conn, issue_id=issue_id, subscriber_id=subscriber_id)
    record_event(
        conn,
        kind=kind,
        issue_id=issue_id,
        subscriber_id=subscriber_id,
        delivery_id=delivery.delivery_id if delivery else None,
        user_agent=user_agent,
        detail=detail,
    )


# ---- double opt-in --------------------------------------------------------------------


@dataclass(frozen=True)
class PendingConfirmation:
    """A confirmation email that is due: whom to send it to and what it confirms."""

    subscriber_id: int
    email: str
    list_id: int
    # The throttle's claim: released (set back to `previous`) if the email cannot be sent.
    claimed_at: datetime
    previous: datetime | None


def request_subscription(
    store: Store, *, email: str, name: str, list_slug: str, default_list: str
) -> PendingConfirmation | None:
    """A subscribe form's request: the confirmation email now due, or None when none is
    (already an active member, or one was sent within the hour).  InputError for an address
    that cannot be subscribed or an unknown list; nothing else distinguishes the cases.
    """
    address = normalize_address(email)
    if address.smtputf8:
        raise InputError(f"{address.email}: the part before @ must be ASCII for us to be able to mail it")
    check_list_slug(list_slug)
    with store.begin() as conn:
        list_id = find_list_id(conn, list_slug)
        if list_id is None and list_slug == default_list:
            list_id = get_or_create_list(conn, list_slug)
        existing = conn.execute(
            sa.select(subscribers.c.id, subscribers.c.status).where(subscribers.c.email_key == address.key)
        ).first()
        member = existing is not None and _is_member(conn, existing.id, list_id) if list_id is not None else False
    if list_id is None:
        # A public form must not create lists; only the configured one exists by default.
        raise InputError(f"there is no list {list_slug!r}")
    if existing is None:
        created, _ = add_subscriber(
            store, address.email, name=name, list_slug=list_slug, status=UNCONFIRMED, source="web"
        )
        subscriber_id = created.id
    elif existing.status == ACTIVE and member:
        return None
    else:
        # Known already: nothing about them changes until they confirm (their name is not
        # replaced by whatever a stranger typed into the form).
        subscriber_id = existing.id
    return _claim_confirmation(store, subscriber_id, address.email, list_id)


def _is_member(conn: sa.Connection, subscriber_id: int, list_id: int) -> bool:
    return (
        conn.execute(
            sa.select(memberships.c.list_id).where(
                memberships.c.subscriber_id == subscriber_id, memberships.c.list_id == list_id
            )
        ).first()
        is not None
    )


def _claim_confirmation(store: Store, subscriber_id: int, email: str, list_id: int) -> PendingConfirmation | None:
    """Take the address's one confirmation email of the hour, atomically: of two requests at
    once, only one UPDATE matches the old timestamp."""
    now = utcnow()
    with store.begin() as conn:
        previous = conn.execute(
            sa.select(subscribers.c.confirmation_sent_at).where(subscribers.c.id == subscriber_id)
        ).scalar_one_or_none()
        if previous is not None and now - previous < CONFIRMATION_INTERVAL:
            return None
        condition = (
            subscribers.c.confirmation_sent_at.is_(None)
            if previous is None
            else subscribers.c.confirmation_sent_at == previous
        )
        claimed = conn.execute(
            subscribers.update().where(subscribers.c.id == subscriber_id, condition).values(confirmation_sent_at=now)
        ).rowcount
    if not claimed:
        return None
    return PendingConfirmation(subscriber_id, email, list_id, now, previous)


def release_confirmation(store: Store, pending: PendingConfirmation) -> None:
    """The email could not be sent: let the next request try again at once."""
    with store.begin() as conn:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == pending.subscriber_id, subscribers.c.confirmation_sent_at == pending.claimed_at)
            .values(confirmation_sent_at=pending.previous)
        )


CONFIRMED = "confirmed"
ALREADY_CONFIRMED = "already"
INVALID = "invalid"


def confirm_subscription(
    store: Store, *, list_id: int, subscriber_id: int, user_agent: str | None
) -> tuple[str, Reader | None, str | None]:
    """Follow a confirmation link: (CONFIRMED | ALREADY_CONFIRMED | INVALID, the reader,
    the list's name).  Confirming makes the subscriber active and a member of the list."""
    now = utcnow()
    with store.begin() as conn:
        row = conn.execute(
            sa.select(
                subscribers.c.id,
                subscribers.c.email,
                subscribers.c.name,
                subscribers.c.status,
                subscribers.c.updated_at,
                subscribers.c.confirmation_sent_at,
            ).where(subscribers.c.id == subscriber_id)
        ).first()
        list_row = conn.execute(sa.select(lists.c.slug, lists.c.name).where(lists.c.id == list_id)).first()
        if row is None or list_row is None:
            return INVALID, None, None
        reader = Reader(row.id, row.email, row.name, row.status)
        if row.status == ACTIVE and _is_member(conn, subscriber_id, list_id):
            return ALREADY_CONFIRMED, reader, list_row.name
        requested = row.confirmation_sent_at
        if requested is None or now - requested > CONFIRMATION_VALID:
            return INVALID, reader, list_row.name
        if row.status in SUPPRESSED and row.updated_at > requested:
            # Suppressed after this link was mailed: the later decision stands.
            return INVALID, reader, list_row.name
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == subscriber_id)
            .values(status=ACTIVE, confirmed_at=now, unsubscribed_at=None, updated_at=now)
        )
        conn.execute(
            insert_ignoring_conflicts(conn, memberships)
            .values(list_id=list_id, subscriber_id=subscriber_id, created_at=now)
            .on_conflict_do_nothing()
        )
        _record_in(conn, CONFIRM, None, subscriber_id, user_agent, {"list": list_row.slug, "was": row.status})
    return CONFIRMED, Reader(row.id, row.email, row.name, ACTIVE), list_row.name


def send_confirmation(
    settings: Settings, store: Store, transport: Transport, pending: PendingConfirmation, url: str
) -> bool:
    """Send a due confirmation email; on failure release the hour's claim and log it."""
    from newsletter.errors import TransportError

    try:
        message = confirmation_message(settings, to=pending.email, url=url)
        transport.send(
            message, sender=settings.from_address, recipient=ascii_address(pending.email), tags={"kind": "confirmation"}
        )
        return True
    except (TransportError, InputError) as err:
        log.warning("confirmation email to subscriber #%d not sent: %s", pending.subscriber_id, err)
        release_confirmation(store, pending)
        return False
