"""A reader's mail to `[newsletter] unsubscribe_mailto` -> `FeedbackEvent`; pure but for
verifying the token.

    event = mailto_unsubscribe(message, raw, mailbox="unsubscribe@example.com", tokens=tokens)

Our List-Unsubscribe carries `<mailto:MAILBOX?subject=unsubscribe%20TOKEN>` (RFC 2369
section 3.2; mail/message.py), where TOKEN is the signed unsubscribe token of that very
message's link.  A mail client that follows it sends a mail to MAILBOX with the subject
"unsubscribe TOKEN".  The token, not the sender's address, says who leaves which list: a From
line proves nothing, and a reader may write from another address than the one we mail.
A mail to the mailbox with no token that verifies is left for a person to read.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses

from newsletter.errors import TokenError
from newsletter.feedback.event import EventKind, FeedbackEvent
from newsletter.feedback.report_mail import INBOX_SOURCE, ReportError, inbox_dedupe_key, mail_time, received_id
from newsletter.tokens import Purpose, Tokens

# Where the mailbox's address may appear: the headers the sender wrote, and what the
# delivering MTA adds (Postfix's Delivered-To and X-Original-To, Exim's Envelope-To).
_ADDRESSED = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
_TOKEN = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]{16,})", re.IGNORECASE)


def mailto_unsubscribe(message: EmailMessage, raw: bytes, *, mailbox: str, tokens: Tokens) -> FeedbackEvent | None:
    """The unsubscribe a mail to `mailbox` asks for; None when it is not addressed to it;
    ReportError when it is but carries no valid token."""
    if not mailbox or not _addressed_to(message, mailbox):
        return None
    claim = None
    for candidate in _candidates(message):
        try:
            claim = tokens.verify(candidate, Purpose.UNSUBSCRIBE)
        except TokenError:
            continue
        break
    if claim is None:
        raise ReportError(f"a mail to {mailbox} without a valid unsubscribe token")
    mail_id = received_id(message, raw)
    return FeedbackEvent(
        kind=EventKind.MAILTO_UNSUBSCRIBE,
        source=INBOX_SOURCE,
        provider_message_id="",
        recipients=(),
        timestamp=mail_time(message.get("Date")) or datetime.now(UTC),
        dedupe_key=inbox_dedupe_key(EventKind.MAILTO_UNSUBSCRIBE.value, mail_id, ""),
        signed_row=(claim.issue_id, claim.subscriber_id),
        detail=f"mail {mail_id}",
    )


def _addressed_to(message: EmailMessage, mailbox: str) -> bool:
    wanted = mailbox.strip().lower()
    values = [str(value) for name in _ADDRESSED for value in message.get_all(name) or []]
    return any(address.lower() == wanted for _, address in getaddresses(values))


def _candidates(message: EmailMessage) -> list[str]:
    """Tokens after "unsubscribe" in the subject (where the mailto puts it), then in the
    plain-text body (a reader who pasted it)."""
    found = _TOKEN.findall(str(message.get("Subject", "")))
    body = message.get_body(preferencelist=("plain",))
    if body is not None:
        try:
            text = body.get_content()
        except (LookupError, ValueError):
            text = ""
        if isinstance(text, str):
            found += _TOKEN.findall(text)
    return found
