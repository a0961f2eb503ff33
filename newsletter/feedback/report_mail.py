"""What bounce reports (RFC 3464) and complaint reports (RFC 5965) share: the multipart/report
container (RFC 6522), the copy of the original message they return, and how one report read
from a mailbox becomes events that are applied once.  Pure.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.utils import parseaddr, parsedate_to_datetime

from newsletter.mail.message_id import parse_ledger_message_id

# Who reported an event read from a mailbox (FeedbackEvent.source).
INBOX_SOURCE = "inbox"

# How a report returns the original: whole (message/rfc822) or its header block only
# (text/rfc822-headers, RFC 6522 section 4); the message/global forms are RFC 6533's for
# internationalized mail.
_WHOLE_ORIGINAL = ("message/rfc822", "message/global")
_ORIGINAL_HEADERS = ("text/rfc822-headers", "message/global-headers")


class ReportError(ValueError):
    """A report that says what it is but cannot be read (a required field missing)."""


def report_parts(message: EmailMessage, report_type: str) -> list[EmailMessage] | None:
    """The parts of `message` if it is a multipart/report of `report_type` (RFC 6522
    section 3: the `report-type` parameter names the machine-readable second part)."""
    if message.get_content_type() != "multipart/report":
        return None
    declared = message.get_param("report-type", header="content-type")
    if not isinstance(declared, str) or declared.strip().lower() != report_type:
        return None
    return list(message.iter_parts())  # type: ignore[arg-type]


def original_of(parts: list[EmailMessage]) -> Message | None:
    """The header block of the returned original message, if the report carries one."""
    for part in parts:
        kind = part.get_content_type()
        if kind in _WHOLE_ORIGINAL:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind in _ORIGINAL_HEADERS:
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return None


def own_message_id(original: Message | None) -> str | None:
    """The original's Message-ID if it is one of ours (names a ledger row)."""
    if original is None:
        return None
    value = original.get("Message-ID")
    own = parse_ledger_message_id(str(value)) if value else None
    return own.header if own else None


def address_of_field(value: object) -> str | None:
    """The address in a DSN or ARF address field: `rfc822; reader@example.org` (RFC 3464
    section 2.3.2, "address-type ; generic-address"), or a bare or bracketed address."""
    if value is None:
        return None
    text = str(value)
    kind, semicolon, rest = text.partition(";")
    if semicolon:
        if kind.strip().lower() not in ("rfc822", "utf-8"):
            return None
        text = rest
    address = parseaddr(text.strip())[1] or text.strip().strip("<>")
    return address if "@" in address else None


def mail_time(value: object) -> datetime | None:
    """An RFC 5322 date-time (Arrival-Date, Last-Attempt-Date, Date) as aware UTC, or None."""
    if value is None:
        return None
    try:
        moment = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # RFC 5322 section 3.3: "-0000" means the time is UTC with no zone information.
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def received_id(message: Message, raw: bytes) -> str:
    """What names a mail we read, for applying it once: its own Message-ID, or a digest of
    its bytes when it has none (some MTAs' reports do not carry one)."""
    value = message.get("Message-ID")
    text = str(value).strip() if value else ""
    return text or "sha256:" + hashlib.sha256(raw).hexdigest()


def inbox_dedupe_key(kind: str, mail_id: str, recipient: str) -> str:
    """One stored event per (kind, mail read, recipient): reading the same mail again, from
    this mailbox or a copy of it, adds nothing."""
    parts = [INBOX_SOURCE, kind, mail_id, recipient.lower()]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
