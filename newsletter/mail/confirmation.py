"""The double opt-in confirmation mail: one text/plain part, on the same header and body
helpers as the issue's messages.
"""

from __future__ import annotations

from email.utils import parseaddr

from newsletter.config import Settings
from newsletter.i18n import wording_for
from newsletter.mail.headers import (
    CRLF,
    ascii_address,
    date_now,
    encode_words,
    format_address,
    header_line,
)
from newsletter.mail.message import base64_body, canonical_text
from newsletter.mail.message_id import random_message_id


def confirmation_message(settings: Settings, *, to: str, url: str) -> bytes:
    """The confirmation email: one text/plain part, base64 (7-bit clean, DESIGN.md), in the
    newsletter's language.

    It carries nothing typed into the form but the address: a name there would let anyone
    put their words into mail to any address they like.  No List-Unsubscribe either: this
    is not list mail, and ignoring it is how to decline.
    """
    words = wording_for(settings.newsletter.language)
    newsletter = settings.newsletter.name
    body = words["confirm_body"].format(name="", newsletter=newsletter, url=url)
    from_name, from_address = parseaddr(settings.newsletter.from_)
    domain = settings.sender_domain
    headers = [
        ("From", format_address(from_name, ascii_address(from_address))),
        ("To", ascii_address(to)),
        ("Subject", encode_words(words["confirm_subject"].format(name=newsletter))),
        ("Date", date_now()),
        ("Message-ID", random_message_id(domain, kind="confirm")),
        # RFC 3834: mail sent by software in answer to a request, so autoresponders and
        # vacation notices do not reply to it.
        ("Auto-Submitted", "auto-generated"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "base64"),
    ]
    if settings.newsletter.reply_to:
        reply_name, reply_address = parseaddr(settings.newsletter.reply_to)
        headers.insert(1, ("Reply-To", format_address(reply_name, ascii_address(reply_address))))
    head = b"".join(header_line(name, value) for name, value in headers)
    return head + CRLF + base64_body(canonical_text(body).encode("utf-8"))
