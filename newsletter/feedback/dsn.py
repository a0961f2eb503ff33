"""Delivery status notifications (RFC 3464) -> `FeedbackEvent`s: the bounce reports MTAs send
back (Postfix's "Undelivered Mail Returned to Sender", Exim's "Mail delivery failed:
returning message to sender"); pure.

    events = dsn_events(message, raw)     # None: not a DSN; ReportError: a DSN we cannot read

A DSN is a multipart/report with report-type=delivery-status (RFC 3464 section 2): a human
part, a message/delivery-status part of header-like fields (one block about the message,
then one block per recipient) and, usually, the original message or its headers.  Each
recipient block becomes one event, by its Action: `failed` a bounce, `delayed` a delivery
delay, `delivered`/`relayed`/`expanded` a delivery.  The original's Message-ID, when it is
ours, names the ledger row; the Original-Recipient (the address as we sent it, before any
forwarding rewrote it) or else the Final-Recipient names the subscriber.

Exim without its delivery-status part (older versions, or `bounce_return_message` set
differently) still writes X-Failed-Recipients, which it uses only for permanent failures
(Exim specification, "X-Failed-Recipients:"): that is read as hard bounces.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage, Message

from newsletter.feedback.event import EventKind, FeedbackEvent
from newsletter.feedback.report_mail import (
    INBOX_SOURCE,
    ReportError,
    address_of_field,
    inbox_dedupe_key,
    mail_time,
    original_of,
    own_message_id,
    received_id,
    report_parts,
)
from newsletter.mail.message_id import parse_ledger_message_id
from newsletter.mail.status_codes import ADDRESS, MAILBOX_FULL, MESSAGE, TOO_LARGE, find_code, parse_code

# RFC 3464 section 2.1: message/delivery-status; RFC 6533 section 3: its internationalized form.
_STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")
# A Message-ID line in the returned copy of a report without a machine-readable part.
_QUOTED_MESSAGE_ID = re.compile(r"^message-id:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)

_ACTIONS = {
    "failed": EventKind.BOUNCE,
    "delayed": EventKind.DELIVERY_DELAY,
    "delivered": EventKind.DELIVERY,
    "relayed": EventKind.DELIVERY,
    "expanded": EventKind.DELIVERY,
}


def bounce_kind(status: str | None) -> tuple[str, str]:
    """(bounce type, subtype) in SES's vocabulary for an RFC 3463 status code of a failed
    recipient: what feedback/suppression.py decides by.

    Only what says the *address* is gone is a hard bounce that suppresses (mail/status_codes.py,
    the same reading as our SMTP server's replies get). A full mailbox and too large a message
    are soft whatever their class, as SES files them; content and policy refusals (X.6.x,
    X.7.x) are failures of the message; any other 4.x.x that ended in `failed` (the MTA gave
    up retrying) is soft; other permanent codes (routing, protocol, the receiving system, an
    undefined 5.0.0 without a better code in the diagnostic) are Undetermined: counted, never
    a suppression on their own.
    """
    code = parse_code(status)
    if code is None:
        return "Undetermined", "Undetermined"
    about = code.about
    if about == MAILBOX_FULL:
        return "Transient", "MailboxFull"
    if about == TOO_LARGE:
        return "Transient", "MessageTooLarge"
    if about == MESSAGE:
        return "Transient", "ContentRejected"
    if not code.permanent:
        return "Transient", "General"
    if about == ADDRESS:
        return ("Permanent", "NoEmail") if code.subject == 1 else ("Permanent", "General")
    return "Undetermined", "General"


def _most_specific(status: str | None, diagnostic: str | None) -> str | None:
    """The Status field, or the enhanced code in the remote server's reply when the Status is
    only a class: Exim writes `Status: 5.0.0` for every permanent failure and quotes the
    reply (`smtp; 550 5.7.1 ...`) in Diagnostic-Code, where the real reason is."""
    written = parse_code(status)
    if diagnostic and (written is None or (written.subject, written.detail) == (0, 0)):
        quoted = find_code(diagnostic)
        if quoted is not None and (written is None or quoted.klass == written.klass):
            return str(quoted)
    return status


def dsn_events(message: EmailMessage, raw: bytes) -> list[FeedbackEvent] | None:
    """The events of a DSN; None when `message` is not one; ReportError when it is one we
    cannot read (no recipient block, no address)."""
    parts = report_parts(message, "delivery-status")
    if parts is None:
        return _exim_plain_bounce(message, raw)
    status_part = next((part for part in parts if part.get_content_type() in _STATUS_PARTS), None)
    if status_part is None:
        raise ReportError("a delivery-status report without its message/delivery-status part")
    blocks = status_part.get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        raise ReportError("a delivery-status report without per-recipient fields")
    per_message, per_recipient = blocks[0], blocks[1:]
    if not isinstance(per_message, Message):
        raise ReportError("a delivery-status report without per-message fields")
    original = original_of(parts)
    message_id = own_message_id(original)
    mail_id = received_id(message, raw)
    reported_at = mail_time(per_message.get("Arrival-Date")) or mail_time(message.get("Date"))
    events = []
    for block in per_recipient:
        if not isinstance(block, Message) or not block.keys():
            continue
        action = str(block.get("Action", "")).strip().lower()
        kind = _ACTIONS.get(action)
        if kind is None:
            raise ReportError(f"a delivery-status report with Action {action or '(none)'!r}")
        recipient = address_of_field(block.get("Original-Recipient")) or address_of_field(block.get("Final-Recipient"))
        if recipient is None:
            raise ReportError("a delivery-status report whose recipient block names no address")
        status = str(block.get("Status", "")).strip() or None
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split()) or None
        status = _most_specific(status, diagnostic)
        detail = " ".join(item for item in (status, diagnostic) if item) or None
        values: dict = {}
        if kind is EventKind.BOUNCE:
            bounce_type, subtype = bounce_kind(status)
            values = {"bounce_type": bounce_type, "bounce_subtype": subtype, "permanent": bounce_type == "Permanent"}
        timestamp = mail_time(block.get("Last-Attempt-Date")) or reported_at or datetime.now(UTC)
        events.append(
            FeedbackEvent(
                kind=kind,
                source=INBOX_SOURCE,
                provider_message_id="",
                message_id=message_id,
                recipients=(recipient,),
                timestamp=timestamp,
                dedupe_key=inbox_dedupe_key(kind.value, mail_id, recipient),
                detail=detail,
                **values,
            )
        )
    if not events:
        raise ReportError("a delivery-status report without per-recipient fields")
    return events


def _exim_plain_bounce(message: EmailMessage, raw: bytes) -> list[FeedbackEvent] | None:
    failed = message.get_all("X-Failed-Recipients") or []
    recipients = [
        address for value in failed for item in str(value).split(",") if (address := address_of_field(item.strip()))
    ]
    if not recipients:
        return None
    message_id = None
    text = raw.decode("utf-8", "replace")
    for candidate in _QUOTED_MESSAGE_ID.findall(text):
        own = parse_ledger_message_id(candidate)
        if own is not None:
            message_id = own.header
            break
    mail_id = received_id(message, raw)
    timestamp = mail_time(message.get("Date")) or datetime.now(UTC)
    return [
        FeedbackEvent(
            kind=EventKind.BOUNCE,
            source=INBOX_SOURCE,
            provider_message_id="",
            message_id=message_id,
            recipients=(recipient,),
            timestamp=timestamp,
            dedupe_key=inbox_dedupe_key(EventKind.BOUNCE.value, mail_id, recipient),
            bounce_type="Permanent",
            bounce_subtype="General",
            permanent=True,
            detail="X-Failed-Recipients",
        )
        for recipient in recipients
    ]
