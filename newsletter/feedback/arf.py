"""Feedback-loop reports (ARF, RFC 5965) -> `FeedbackEvent`: a mailbox provider telling us a
reader pressed "this is spam"; pure.

    event = arf_event(message, raw)       # None: not an ARF report; ReportError: unreadable

An ARF report is a multipart/report with report-type=feedback-report (RFC 5965 section 2):
a human part, a message/feedback-report part of header-like fields (Feedback-Type,
User-Agent and Version required; Original-Rcpt-To, Arrival-Date optional) and the original
message or its headers.  Providers often redact the recipient, so the original's Message-ID
(ours names the ledger row) is what usually finds the reader.
"""

from __future__ import annotations

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

# Feedback types that are not a reader's complaint: "auth-failure" is a DMARC/SPF/DKIM
# failure report (RFC 6591), sent by machines about authentication, not by people about
# mail they did not want.  Everything else (abuse, fraud, virus, other, not-spam) is applied;
# feedback/suppression.py decides that "not-spam" suppresses nobody.
NOT_COMPLAINTS = frozenset({"auth-failure"})


class NotAComplaint(ReportError):
    """An ARF report of a kind that is not a complaint: left for a person."""


def arf_event(message: EmailMessage, raw: bytes) -> FeedbackEvent | None:
    """The complaint in an ARF report; None when `message` is not one."""
    parts = report_parts(message, "feedback-report")
    if parts is None:
        return None
    report_part = next((part for part in parts if part.get_content_type() == "message/feedback-report"), None)
    fields = _fields(report_part)
    if fields is None:
        raise ReportError("a feedback report without its message/feedback-report part")
    feedback_type = str(fields.get("Feedback-Type", "")).strip().lower()
    if not feedback_type:
        raise ReportError("a feedback report without Feedback-Type")
    if feedback_type in NOT_COMPLAINTS:
        raise NotAComplaint(f"a feedback report of type {feedback_type!r}, not a complaint")
    original = original_of(parts)
    recipients = tuple(
        address for value in fields.get_all("Original-Rcpt-To") or [] if (address := address_of_field(value))
    )
    if not recipients and original is not None:
        recipients = tuple(address for value in original.get_all("To") or [] if (address := address_of_field(value)))
    message_id = own_message_id(original)
    if not recipients and message_id is None:
        raise ReportError("a feedback report that names neither a recipient nor one of our messages")
    mail_id = received_id(message, raw)
    user_agent = " ".join(str(fields.get("User-Agent", "")).split()) or None
    return FeedbackEvent(
        kind=EventKind.COMPLAINT,
        source=INBOX_SOURCE,
        provider_message_id="",
        message_id=message_id,
        recipients=recipients,
        timestamp=mail_time(fields.get("Arrival-Date")) or mail_time(message.get("Date")) or datetime.now(UTC),
        dedupe_key=inbox_dedupe_key(EventKind.COMPLAINT.value, mail_id, ",".join(sorted(recipients))),
        complaint_feedback_type=feedback_type,
        user_agent=user_agent,
        ip_address=str(fields.get("Source-IP", "")).strip() or None,
    )


def _fields(part: EmailMessage | None) -> Message | None:
    # The email package reads a message/* part it does not know as a nested message, which
    # is exactly the shape of RFC 5965's fields: one header block.
    if part is None:
        return None
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str):
        from email.parser import HeaderParser

        return HeaderParser().parsestr(payload)
    return None
