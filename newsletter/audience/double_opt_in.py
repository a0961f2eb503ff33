"""Subscribing from the public form, with double opt-in: the request, the confirmation
email, and the link that confirms it.

The rules (a decision, documented in docs/deploy.md as well):

- Anyone (new, pending, someone who left the list, a bounced or complained address)
  becomes active on a list only by opening the confirmation link mailed to the address.
  A bounced address must show that it receives mail again; someone who complained must
  show that they really want it.  Until then nothing about a known person changes: a new
  address is put on the list as `pending`, a known one keeps its standing.
- Every confirmation email has a link of its own: a random token, stored only as its
  SHA-256, good once and for CONFIRMATION_VALID.  Asking again mails a new link and the
  older ones stop working, so an old mail reopened, forwarded or scanned confirms nothing.
- A link never undoes a later decision: one mailed before the reader left the list, or
  before the address bounced or complained, no longer confirms.
- The name typed on the form reaches the subscriber only when the link is opened: until
  then it stays with the confirmation row (and goes with it), so a stranger's words never
  name someone else.  The email itself carries nothing typed into the form but the address.
- At most one confirmation email per address in CONFIRMATION_INTERVAL; already-active
  members of the list get none.

Links mailed before migration 0004 were signed claims of (list, subscriber), the same in
every email; they keep confirming until they expire, unless a link of the new kind was
mailed for the same list since (`open_legacy_confirmation_link`).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from newsletter.audience.addresses import Address, normalize_address
from newsletter.audience.erasure import ErasureCheck
from newsletter.audience.self_service import Reader
from newsletter.audience.subscribers import add_subscriber
from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.mail.confirmation import confirmation_message
from newsletter.mail.headers import ascii_address
from newsletter.store import Store
from newsletter.store.confirmations import (
    Claim,
    claim_email_slot,
    find_confirmation,
    forget_expired,
    has_confirmations,
    issue_confirmation,
    last_email_sent_at,
    release_email_slot,
    use_confirmation,
    withdraw_confirmation,
)
from newsletter.store.events import record_reader_event
from newsletter.store.lists import check_list_slug, get_or_create_list
from newsletter.store.memberships import (
    address_by_key,
    address_of,
    change_status,
    join_list,
    list_ref,
    membership_changed_at,
    membership_status,
    suppressed_since,
    vouch_for_address,
)
from newsletter.store.schema import (
    ACTIVE,
    BY_CONFIRM,
    BY_FORM,
    CONFIRM,
    PENDING,
    SUPPRESSIONS,
    UNSUBSCRIBED,
    utcnow,
)
from newsletter.tokens import AddressDigests
from newsletter.transports.base import Transport

log = logging.getLogger("newsletter.web")

# At most one confirmation email per address in this time.
CONFIRMATION_INTERVAL = timedelta(hours=1)
# A confirmation link older than this no longer confirms; the form sends a new one.
CONFIRMATION_VALID = timedelta(days=7)


@dataclass(frozen=True)
class PendingConfirmation:
    """A confirmation email that is due: whom to send it to, and the token of its link."""

    subscriber_id: int
    email: str
    list_id: int
    token: str
    # The throttle's claim: given back if the email cannot be sent.
    claim: Claim


def form_address(email: str) -> Address:
    """The address typed on the form, or InputError when it is not one we can mail.  Pure:
    it reads nothing, so answering a bad address takes the same time for anyone."""
    address = normalize_address(email)
    if address.smtputf8:
        raise InputError(f"{address.email}: the part before @ must be ASCII for us to be able to mail it")
    return address


def request_subscription(
    store: Store, *, email: str, name: str, list_slug: str, digests: AddressDigests | None
) -> PendingConfirmation | None:
    """A subscribe form's request for `list_slug`, which the caller found public
    (newsletter.audience.lists.public_list; the list is created if only the configuration
    names it): the confirmation email now due, or None when none is (already an active
    member, one was sent within the hour, or the address was erased: the form never brings
    an erased person back, newsletter.audience.erasure).  InputError for an address we
    cannot mail.
    """
    address = form_address(email)
    check_list_slug(list_slug)
    with store.begin() as conn:
        if ErasureCheck(conn, digests).erased(conn, [address.key]):
            return None
        list_id = get_or_create_list(conn, list_slug)
        existing = address_by_key(conn, address.key)
        standing = membership_status(conn, existing.id, list_id) if existing else None
    if existing is None:
        created, _ = add_subscriber(
            store,
            address.email,
            list_slug=list_slug,
            status=PENDING,
            source="web",
            change_source=BY_FORM,
            digests=digests,
        )
        subscriber_id = created.id
    elif existing.status == ACTIVE and standing == ACTIVE:
        return None
    else:
        subscriber_id = existing.id
    now = utcnow()
    token = secrets.token_urlsafe(32)
    with store.begin() as conn:
        if existing is not None and standing is None:
            join_list(conn, subscriber_id, list_id, PENDING, BY_FORM)
        claim = claim_email_slot(conn, subscriber_id, now, CONFIRMATION_INTERVAL)
        if claim is None:
            return None
        forget_expired(conn, now)
        issue_confirmation(
            conn,
            token=token,
            subscriber_id=subscriber_id,
            list_id=list_id,
            name=name,
            requested_at=now,
            expires_at=now + CONFIRMATION_VALID,
        )
    return PendingConfirmation(subscriber_id, address.email, list_id, token, claim)


def release_confirmation(store: Store, pending: PendingConfirmation) -> None:
    """The email could not be sent: forget its link and let the next request try again at once."""
    with store.begin() as conn:
        withdraw_confirmation(conn, pending.token)
        release_email_slot(conn, pending.subscriber_id, pending.claim)


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


# ---- the link ---------------------------------------------------------------------------

CONFIRMED = "confirmed"
ALREADY_CONFIRMED = "already"
INVALID = "invalid"


@dataclass(frozen=True)
class ConfirmOutcome:
    """What opening a confirmation link did: CONFIRMED, ALREADY_CONFIRMED or INVALID, and
    for whom (None when the link names nobody)."""

    outcome: str
    reader: Reader | None = None
    list_name: str | None = None


def confirmation_reader(store: Store, token: str) -> Reader | None:
    """Whom a confirmation link would confirm (for the page shown to link scanners)."""
    with store.read() as conn:
        row = find_confirmation(conn, token)
        found = address_of(conn, row.subscriber_id) if row else None
    return Reader(found.id, found.email, found.name, found.status) if found else None


def open_confirmation_link(store: Store, *, token: str, user_agent: str | None) -> ConfirmOutcome:
    """Open a confirmation link: the reader becomes active on its list (and their address
    active, if it had bounced or complained), once; see the module docstring for when not."""
    now = utcnow()
    with store.begin() as conn:
        row = find_confirmation(conn, token, for_update=True)
        if row is None:
            return ConfirmOutcome(INVALID)
        if row.used_at is not None:
            return _already_or_invalid(conn, row.subscriber_id, row.list_id)
        if now > row.expires_at:
            return ConfirmOutcome(INVALID)
        outcome = _confirm(conn, row.subscriber_id, row.list_id, row.requested_at, row.name, now, user_agent)
        if outcome.outcome == CONFIRMED:
            use_confirmation(conn, row.id, now)
    return outcome


def open_legacy_confirmation_link(
    store: Store, *, list_id: int, subscriber_id: int, user_agent: str | None
) -> ConfirmOutcome:
    """Open a link mailed before migration 0004 (a signed claim of list and subscriber):
    good until CONFIRMATION_VALID after the address's last confirmation email, unless a
    link of the new kind was mailed for this list since."""
    now = utcnow()
    with store.begin() as conn:
        if address_of(conn, subscriber_id) is None or list_ref(conn, list_id) is None:
            return ConfirmOutcome(INVALID)
        requested = last_email_sent_at(conn, subscriber_id)
        if (
            membership_status(conn, subscriber_id, list_id) == ACTIVE
            and (found := address_of(conn, subscriber_id)) is not None
            and found.status == ACTIVE
        ):
            return _already_or_invalid(conn, subscriber_id, list_id)
        if requested is None or now - requested > CONFIRMATION_VALID or has_confirmations(conn, subscriber_id, list_id):
            return ConfirmOutcome(INVALID)
        return _confirm(conn, subscriber_id, list_id, requested, None, now, user_agent)


def _already_or_invalid(conn: sa.Connection, subscriber_id: int, list_id: int) -> ConfirmOutcome:
    """A used link opened again: fine while it still holds (a second click), invalid once
    the reader has left the list or the address was suppressed."""
    found = address_of(conn, subscriber_id)
    list_ = list_ref(conn, list_id)
    if found is None or list_ is None:
        return ConfirmOutcome(INVALID)
    reader = Reader(found.id, found.email, found.name, found.status)
    if found.status == ACTIVE and membership_status(conn, subscriber_id, list_id) == ACTIVE:
        return ConfirmOutcome(ALREADY_CONFIRMED, reader, list_.name)
    return ConfirmOutcome(INVALID, reader, list_.name)


def _confirm(
    conn: sa.Connection,
    subscriber_id: int,
    list_id: int,
    requested_at: datetime,
    name: str | None,
    now: datetime,
    user_agent: str | None,
) -> ConfirmOutcome:
    found = address_of(conn, subscriber_id)
    list_ = list_ref(conn, list_id)
    if found is None or list_ is None:
        return ConfirmOutcome(INVALID)
    reader = Reader(found.id, found.email, found.name, found.status)
    standing = membership_status(conn, subscriber_id, list_id)
    if found.status == ACTIVE and standing == ACTIVE:
        return ConfirmOutcome(ALREADY_CONFIRMED, reader, list_.name)
    suppressed_at = suppressed_since(conn, subscriber_id)
    left_at = membership_changed_at(conn, subscriber_id, list_id) if standing == UNSUBSCRIBED else None
    if (found.status in SUPPRESSIONS and suppressed_at is not None and suppressed_at > requested_at) or (
        left_at is not None and left_at > requested_at
    ):
        # Suppressed, or left the list, after this link was mailed: the later decision stands.
        return ConfirmOutcome(INVALID, reader, list_.name)
    vouch_for_address(conn, subscriber_id, name=name, now=now)
    if standing is None:
        join_list(conn, subscriber_id, list_id, ACTIVE, BY_CONFIRM)
    else:
        change_status(conn, subscriber_id, ACTIVE, BY_CONFIRM, list_ids=[list_id], current=[standing], at=now)
    detail = {"list": list_.slug, "was": standing or "none"}
    if found.status != ACTIVE:
        detail["address_was"] = found.status
    record_reader_event(conn, CONFIRM, issue_id=None, subscriber_id=subscriber_id, user_agent=user_agent, detail=detail)
    return ConfirmOutcome(CONFIRMED, Reader(found.id, found.email, name or found.name, ACTIVE), list_.name)
