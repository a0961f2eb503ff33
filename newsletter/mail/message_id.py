"""Our Message-IDs (RFC 5322 section 3.6.4): how we make them, and how we read them back.

A message of an issue's ledger is `<ISSUE.SUBSCRIBER.UID@domain>`: stable per (issue,
subscriber), so a resumed send reuses it and anything that comes back quoting it (an SES
event's headers, a bounce report's copy of the original) names its ledger row without a
lookup table.  Test sends and confirmation mails get random ids that name no row.
"""

from __future__ import annotations

import binascii
import os
import re
from dataclasses import dataclass

# A Message-ID header, possibly folded onto the next line (RFC 5322 section 3.6.4).
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class LedgerMessageId:
    """What one of our ledger Message-IDs names."""

    issue_id: int
    subscriber_id: int
    # The whole header value, angle brackets included, as we wrote it.
    header: str


def ledger_message_id(issue_id: int, subscriber_id: int, issue_uid: str, domain: str) -> str:
    return f"<{issue_id}.{subscriber_id}.{issue_uid}@{domain}>"


def parse_ledger_message_id(value: str) -> LedgerMessageId | None:
    """The ledger row a Message-ID names, if it is one of ours; None for anything else.

    Receivers and providers quote it with or without the angle brackets.
    """
    text = value.strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    if not text.endswith(">"):
        return None
    local = text[1:].partition("@")[0]
    parts = local.split(".")
    if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
        return LedgerMessageId(int(parts[0]), int(parts[1]), text)
    return None


def random_message_id(domain: str, *, kind: str = "test") -> str:
    """For mail outside the ledger (test sends, confirmations): unique, naming no subscriber."""
    return f"<{kind}.{binascii.hexlify(os.urandom(12)).decode()}@{domain}>"


def read_message_id(message: bytes) -> str | None:
    """The Message-ID header of `message` (with its angle brackets), or None."""
    end = _HEADER_END.search(message)
    found = _MESSAGE_ID.search(message, 0, end.start() if end else len(message))
    return found.group(1).decode("ascii", "replace") if found else None
