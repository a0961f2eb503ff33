"""Enhanced mail system status codes (RFC 3463): what a "class.subject.detail" code says a
failure is about.  The one reading of them, for the replies of our own SMTP server
(transports/smtp_replies.py) and for the bounce reports that come back by mail
(feedback/dsn.py), so that a code suppresses an address whichever way it reaches us.

    code = parse_code("5.1.1")          # StatusCode(5, 1, 1), or None
    code.about                          # ADDRESS

Only codes that say the *recipient's address* cannot receive mail are ADDRESS, because
mailing such an address again hurts the sender (Gmail and Yahoo count bounces against bulk
senders) while suppressing a reader on a guess loses them for good:
X.1.0 other address status, X.1.1 bad destination mailbox, X.1.2 bad destination system,
X.1.3 bad mailbox syntax, X.1.6 mailbox has moved, X.1.10 null MX (RFC 7505 section 4.3),
X.2.1 mailbox disabled (RFC 3463 sections 3.2, 3.3).  Not X.1.7 and X.1.8: those are about
the *sender's* address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ADDRESS = "address"  # the recipient's address cannot receive mail
MAILBOX_FULL = "mailbox full"  # X.2.2: "a useful value for temporary failures" (section 3.3)
TOO_LARGE = "too large"  # X.2.3 message length exceeds the mailbox limit, X.3.4 the system's
MESSAGE = "message"  # X.6.x content, X.7.x security or policy (spam, DMARC, a block list)
SYSTEM = "system"  # X.3.x other than X.3.4: the receiving system, which may recover
OTHER = "other"  # the rest (routing, protocol, undefined): nothing sure about the address

_ADDRESS_GONE = frozenset({(1, 0), (1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1)})
# Section 2: class 2, 4 or 5; subject and detail 1-3 digits each.
_CODE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")


@dataclass(frozen=True)
class StatusCode:
    klass: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"

    @property
    def permanent(self) -> bool:
        return self.klass == 5

    @property
    def about(self) -> str:
        pair = (self.subject, self.detail)
        if pair == (2, 2):
            return MAILBOX_FULL
        if pair in ((2, 3), (3, 4)):
            return TOO_LARGE
        if self.subject in (6, 7):
            return MESSAGE
        if pair in _ADDRESS_GONE:
            return ADDRESS
        if self.subject == 3:
            return SYSTEM
        return OTHER


def parse_code(text: str | None) -> StatusCode | None:
    """The code at the start of `text` (a Status field, or a reply text after its basic code,
    where RFC 2034 section 4 puts it), or None."""
    found = _CODE.match((text or "").lstrip())
    if found is None:
        return None
    return StatusCode(int(found.group(1)), int(found.group(2)), int(found.group(3)))


def find_code(text: str | None) -> StatusCode | None:
    """The first code anywhere in `text`: a Diagnostic-Code that quotes a server's reply
    (`smtp; 550 5.7.1 ...`)."""
    found = _CODE.search(text or "")
    if found is None:
        return None
    return StatusCode(int(found.group(1)), int(found.group(2)), int(found.group(3)))
