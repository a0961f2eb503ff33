"""Applying feedback events to the store: the ledger row's history and the subscriber's standing.

    with store.begin() as conn:
        result = apply_feedback_event(conn, event, SuppressionPolicy.from_settings(settings.events))

Both ways SES feedback arrives, the `/hooks/ses` endpoint (SNS over HTTPS) and
`newsletter events pull` (SQS), parse an `FeedbackEvent` with `newsletter.transports.ses.sns` and hand it here,
inside a transaction they commit; so does `newsletter events inbox` with the bounce reports,
complaints and unsubscribe mails it reads from a mailbox (`feedback/inbox.py`).  What an
event does:

- it is recorded once as an event on its ledger row (issue, subscriber, delivery), keyed by
  its dedupe key, so an SNS retry, an SQS redelivery or the same bounce reported by both SES
  formats counts once; a repeat changes nothing else either;
- a permanent bounce marks the subscriber `bounced`, a complaint `complained`, and soft
  bounces `bounced` once the policy's limit falls within its window.  Sends only go to
  `active` subscribers and re-check the status when they claim a row, so that is what
  suppresses them from every later send;
- a Send or Delivery event for a row still `sending` (uncertain: in flight when a send
  crashed) settles it as sent, a Reject or Bounce as failed, so the next `newsletter send`
  reports fewer uncertain rows and `--resend-uncertain` resends only those still unknown;
- SES's Subscription event (its own list-management unsubscribe) unsubscribes from every
  list; a mail to the unsubscribe mailto leaves the list of the issue its token names, as
  the unsubscribe link of the same message would.

Finding the row: by the SES MessageId the send recorded; failing that by our own Message-ID
header, which SES reports in `mail.headers` (and a bounce report quotes) and which names the
issue and subscriber; for a mailto unsubscribe, by the row its signed token names.  The
second way matters for events that overtake the send's own bookkeeping: the row is written
`sending` (with its Message-ID) before the message leaves, but gets its SES id only when the
sender records a batch of outcomes.

An event about a message that is in no ledger row (a `--test` send, a double opt-in
confirmation, another application sharing the configuration set) is not about an issue.  A
bounce or complaint is still applied to the subscriber with that address, if there is one:
SES judges the sending account by its bounce and complaint rates whatever the message was,
so a dead or complaining address must not be mailed again.  A report read from a mailbox,
which anyone can write to, counts that way only for an address we mailed in the last 14
days.  Every other kind of such event
is ignored, with the reason in the result, because it says nothing about our issues or
subscribers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from newsletter.feedback.event import EventKind, FeedbackEvent
from newsletter.feedback.machines import judge
from newsletter.feedback.report_mail import INBOX_SOURCE
from newsletter.feedback.suppression import Suppression, SuppressionPolicy
from newsletter.mail.message_id import parse_ledger_message_id
from newsletter.store import ledger, schema
from newsletter.store.events import DeliveryRef, delivery_by_provider_id, delivery_for, record_event
from newsletter.store.feedback import (
    bounce_details,
    delivery_by_message_id,
    link_index,
    mailed_since,
    subscriber_id_for_address,
    suppress_subscriber,
)
from newsletter.store.memberships import address_of, leave_lists, list_of_issue

log = logging.getLogger(__name__)

# SES's event kinds as stored; ours (open, click) are recorded by the web app, so SES's own
# open and click tracking gets kinds of its own.  A Subscription event is an unsubscribe.
STORED_KIND: Mapping[EventKind, str] = {
    EventKind.SEND: schema.SES_SEND,
    EventKind.DELIVERY: schema.DELIVERY,
    EventKind.BOUNCE: schema.BOUNCE,
    EventKind.COMPLAINT: schema.COMPLAINT,
    EventKind.REJECT: schema.REJECT,
    EventKind.DELIVERY_DELAY: schema.DELIVERY_DELAY,
    EventKind.OPEN: schema.SES_OPEN,
    EventKind.CLICK: schema.SES_CLICK,
    EventKind.RENDERING_FAILURE: schema.RENDERING_FAILURE,
    EventKind.SUBSCRIPTION: schema.UNSUBSCRIBE,
    EventKind.MAILTO_UNSUBSCRIBE: schema.UNSUBSCRIBE,
}

SUBSCRIBER_STATUS: Mapping[Suppression, str] = {
    Suppression.BOUNCED: schema.BOUNCED,
    Suppression.SOFT_BOUNCED: schema.BOUNCED,
    Suppression.COMPLAINED: schema.COMPLAINED,
}

# Kinds that still matter when the message is in no ledger row: they are about the address.
# A bounce report can arrive days after the message: remote servers retry for up to five
# days before giving up (RFC 5321, section 4.5.4.1, suggests at least 4-5 days).
UNSIGNED_ADDRESS_WINDOW = timedelta(days=14)

_ABOUT_THE_ADDRESS = frozenset(
    {EventKind.BOUNCE, EventKind.COMPLAINT, EventKind.SUBSCRIPTION, EventKind.MAILTO_UNSUBSCRIBE}
)


class Applied(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # seen before: nothing changed
    IGNORED = "ignored"  # not about anything in this database


@dataclass(frozen=True)
class FeedbackResult:
    """What applying one feedback event did."""

    event: FeedbackEvent
    applied: Applied
    delivery: DeliveryRef | None = None
    subscriber_ids: tuple[int, ...] = ()
    # (subscriber id, new status) for each subscriber whose standing changed.
    suppressed: tuple[tuple[int, str], ...] = ()
    reason: str = ""
    # The status an uncertain ledger row was settled to ("sent" or "failed"), if one was.
    settled: str | None = None

    def describe(self) -> str:
        """One line for logs and `newsletter events pull`."""
        where = (
            f"issue {self.delivery.issue_id}, subscriber {self.delivery.subscriber_id}"
            if self.delivery
            else ", ".join(f"subscriber {sid}" for sid in self.subscriber_ids) or "no subscriber"
        )
        about = self.event.provider_message_id or self.event.message_id or "(no message id)"
        line = f"{self.event.kind} {about}: {self.applied} ({where})"
        if self.suppressed:
            line += "; " + ", ".join(f"subscriber {sid} now {status}" for sid, status in self.suppressed)
        if self.settled:
            line += f"; the uncertain ledger row is now {self.settled}"
        if self.reason:
            line += f"; {self.reason}"
        return line


def apply_feedback_event(
    conn: sa.Connection,
    event: FeedbackEvent,
    policy: SuppressionPolicy,
) -> FeedbackResult:
    """Record `event` and apply what it means, inside the caller's transaction."""
    delivery = find_delivery(conn, event)
    if delivery is not None:
        return _apply(conn, event, policy, delivery, [delivery.subscriber_id])
    if event.kind not in _ABOUT_THE_ADDRESS:
        reason = "no ledger row has this message (a test send, a confirmation email or another sender): ignored"
        log.info(
            "%s %s event for %s: %s", event.source, event.kind, event.provider_message_id or event.message_id, reason
        )
        return FeedbackResult(event, Applied.IGNORED, reason=reason)
    if event.signed_row is not None:
        # A signed token names its subscriber; the mail's sender address proves nothing (anyone
        # can write a From line), so it is never used to find one.
        signed_subscriber = event.signed_row[1]
        if address_of(conn, signed_subscriber) is None:
            reason = "the subscriber the token names is gone (erased): ignored"
            return FeedbackResult(event, Applied.IGNORED, reason=reason)
        return _apply(conn, event, policy, None, [signed_subscriber])
    found = {sid for address in event.recipients if (sid := subscriber_id_for_address(conn, address)) is not None}
    if found and event.source == INBOX_SOURCE:
        # Anyone can mail the bounce mailbox a report that names an address; SES's events are
        # signed, mail is not.  Without our Message-ID it counts only for someone we really
        # mailed lately, whose bounce could be coming back now.
        since = schema.utcnow() - UNSIGNED_ADDRESS_WINDOW
        found = {sid for sid in found if mailed_since(conn, sid, since)}
        if not found:
            reason = (
                f"names only an address that nothing of ours was sent to in the last "
                f"{UNSIGNED_ADDRESS_WINDOW.days} days: not applied (a report by mail can be forged)"
            )
            log.info("%s %s event: %s", event.source, event.kind, reason)
            return FeedbackResult(event, Applied.IGNORED, reason=reason)
    if not found:
        reason = "message in no ledger row and no subscriber has its address: ignored"
        log.info(
            "%s %s event for %s: %s", event.source, event.kind, event.provider_message_id or event.message_id, reason
        )
        return FeedbackResult(event, Applied.IGNORED, reason=reason)
    return _apply(conn, event, policy, None, sorted(found))


def find_delivery(conn: sa.Connection, event: FeedbackEvent) -> DeliveryRef | None:
    """The ledger row of the event's message: by the provider's id, else by our Message-ID,
    else by the row a signed token names."""
    delivery = delivery_by_provider_id(conn, event.provider_message_id) if event.provider_message_id else None
    if delivery is not None:
        return delivery
    own = parse_ledger_message_id(event.message_id) if event.message_id else None
    if own is not None:
        delivery = delivery_by_message_id(
            conn, issue_id=own.issue_id, subscriber_id=own.subscriber_id, message_id=own.header
        )
        if delivery is not None:
            return delivery
    if event.signed_row is not None:
        issue_id, subscriber_id = event.signed_row
        return delivery_for(conn, issue_id=issue_id, subscriber_id=subscriber_id)
    return None


def _apply(
    conn: sa.Connection,
    event: FeedbackEvent,
    policy: SuppressionPolicy,
    delivery: DeliveryRef | None,
    subscriber_ids: list[int],
) -> FeedbackResult:
    kind = STORED_KIND[event.kind]
    detail = _detail(event)
    link_idx = None
    if event.kind is EventKind.CLICK and delivery is not None and event.link:
        link_idx = link_index(conn, delivery.issue_id, event.link)
    machine = False
    if event.kind in (EventKind.OPEN, EventKind.CLICK):
        # SES's own tracking is judged like ours, so stats count people the same way.
        verdict = judge(
            kind=schema.CLICK if event.kind is EventKind.CLICK else schema.OPEN,
            user_agent=event.user_agent,
            occurred_at=event.timestamp,
            sent_at=delivery.sent_at if delivery else None,
        )
        machine = verdict.machine
        detail.update(verdict.detail() or {})
    leaving: list[int] | None = None
    if event.kind is EventKind.MAILTO_UNSUBSCRIBE:
        # The list of the issue the token names, as its unsubscribe link leaves (audience/
        # self_service.py); every list when that issue is gone.
        issue_list = list_of_issue(conn, delivery.issue_id) if delivery else None
        detail["method"] = schema.BY_MAILTO
        if issue_list is not None:
            leaving = [issue_list.id]
            detail["lists"] = [issue_list.slug]
        else:
            detail["everything"] = True

    recorded_for: list[int] = []
    for subscriber_id in subscriber_ids:
        # One SES event about several of our subscribers (only possible for mail that is not
        # ours: ours has one recipient) becomes one stored event each, with keys of their own.
        key = event.dedupe_key if len(subscriber_ids) == 1 else _per_subscriber_key(event.dedupe_key, subscriber_id)
        if record_event(
            conn,
            kind=kind,
            issue_id=delivery.issue_id if delivery else None,
            subscriber_id=subscriber_id,
            delivery_id=delivery.delivery_id if delivery else None,
            link_idx=link_idx,
            user_agent=event.user_agent,
            machine=machine,
            detail=detail,
            occurred_at=event.timestamp,
            dedupe_key=key,
        ):
            recorded_for.append(subscriber_id)
    if not recorded_for:
        return FeedbackResult(event, Applied.DUPLICATE, delivery, tuple(subscriber_ids), reason="seen before")

    suppressed: list[tuple[int, str]] = []
    for subscriber_id in recorded_for:
        if event.kind is EventKind.MAILTO_UNSUBSCRIBE:
            if leave_lists(conn, subscriber_id, schema.BY_MAILTO, list_ids=leaving):
                suppressed.append((subscriber_id, schema.UNSUBSCRIBED))
            continue
        status = _new_status(conn, event, policy, subscriber_id)
        if status is not None and suppress_subscriber(conn, subscriber_id, status, since=event.timestamp):
            suppressed.append((subscriber_id, status))
            log.info(
                "subscriber %s is now %s after %s %s %s",
                subscriber_id,
                status,
                event.source,
                event.kind,
                event.provider_message_id or event.message_id,
            )
    settled = _settle_uncertain_row(conn, event, delivery) if delivery is not None else None
    return FeedbackResult(event, Applied.RECORDED, delivery, tuple(subscriber_ids), tuple(suppressed), settled=settled)


def _settle_uncertain_row(conn: sa.Connection, event: FeedbackEvent, delivery: DeliveryRef) -> str | None:
    """Settle the event's row if a crash left it `sending`: SES publishes Send when it
    accepted the message and Delivery when the receiver did, so either proves it went out;
    Reject (SES refused it, e.g. a virus) and Bounce prove it did not arrive.  A bounce is
    final for this message whatever its type, because SES reports a transient bounce only
    once its own retries have ended (SES Developer Guide, "Bounce types"); it is recorded
    as a permanent failure of the row, while suppression above judges the address.
    Returns the new status, or None when the row was not uncertain."""
    if event.kind in (EventKind.SEND, EventKind.DELIVERY):
        status, failure, error = schema.SENT, None, None
    elif event.kind in (EventKind.REJECT, EventKind.BOUNCE):
        what = "rejected by SES" if event.kind is EventKind.REJECT else f"{event.bounce_type or 'bounced'} bounce"
        status, failure, error = schema.FAILED, schema.PERMANENT, f"{what}: {event.detail}" if event.detail else what
    else:
        return None
    changed = ledger.settle_uncertain(
        conn,
        delivery.delivery_id,
        status=status,
        failure=failure,
        error=error,
        provider_message_id=event.provider_message_id or None,
        at=event.timestamp,
    )
    if not changed:
        return None
    log.info(
        "ledger row %s (issue %s) was uncertain; %s %s settles it as %s",
        delivery.delivery_id,
        delivery.issue_id,
        event.source,
        event.kind,
        status,
    )
    ledger.mark_complete_if_done(conn, delivery.issue_id)
    return status


def _new_status(conn: sa.Connection, event: FeedbackEvent, policy: SuppressionPolicy, subscriber_id: int) -> str | None:
    if event.kind is EventKind.SUBSCRIPTION:
        return schema.UNSUBSCRIBED if event.opted_out else None
    if event.kind not in (EventKind.BOUNCE, EventKind.COMPLAINT):
        return None
    soft_times: list[datetime] = []
    if event.soft_bounce:
        soft_times = [
            moment
            for moment, detail in bounce_details(conn, subscriber_id, exclude_dedupe_key=event.dedupe_key)
            if isinstance(detail, Mapping) and detail.get("soft")
        ]
    suppression = policy.suppression_for(event, soft_times)
    if suppression is None and event.soft_bounce and soft_times:
        # Bounces read from a queue backlog may arrive out of order, so the window ending at
        # this bounce is not the only one that can hold enough of them: try each window that
        # ends at a soft bounce.  A bounce arriving late then decides as if it had come on time.
        every = [*soft_times, event.timestamp]
        if any(policy.soft_bounces_suppress(every, now=moment) for moment in every):
            suppression = Suppression.SOFT_BOUNCED
    return SUBSCRIBER_STATUS[suppression] if suppression is not None else None


def _detail(event: FeedbackEvent) -> dict[str, Any]:
    values: dict[str, Any] = {
        "source": event.source,
        # The names these had when SES was the only source; kept so stored events read alike.
        "ses_kind": str(event.kind),
        "ses_message_id": event.provider_message_id or None,
        "sns_message_id": event.envelope_id,
        "bounce_type": event.bounce_type,
        "bounce_subtype": event.bounce_subtype,
        "complaint_feedback_type": event.complaint_feedback_type,
        "complaint_subtype": event.complaint_subtype,
        "ip_address": event.ip_address,
        "link": event.link,
        "detail": event.detail,
        "unsubscribe_all": event.unsubscribe_all,
    }
    if event.kind is EventKind.BOUNCE:
        values["permanent"] = event.permanent
        # What the soft-bounce count reads back; stored so the policy's reading of the
        # subtype (content bounces do not count) is applied once, when it arrives.
        values["soft"] = event.soft_bounce
    return {name: value for name, value in values.items() if value is not None}


def _per_subscriber_key(dedupe_key: str, subscriber_id: int) -> str:
    return hashlib.sha256(f"{dedupe_key}:{subscriber_id}".encode("ascii")).hexdigest()
