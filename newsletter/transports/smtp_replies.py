"""What an SMTP server's refusal means for the send: the one place that reads SMTP replies.

    verdict = classify_reply(550, "5.1.1 <someone@example.org>: User unknown", stage="RCPT TO")

Pure: no sockets.  The basic reply code (RFC 5321 section 4.2.1) says only temporary (4yz)
or permanent (5yz); the enhanced status code at the start of the text (RFC 3463, announced
with ENHANCEDSTATUSCODES, RFC 2034: "class.subject.detail") says what about: the address,
the mailbox, the message, the policy.  A newsletter must tell these apart, because a dead
address has to be suppressed (mailing it again hurts the sender's reputation: Gmail and Yahoo
count bounces against bulk senders), while a message refused for its content or a policy
says nothing about the reader, who must stay subscribed.

The verdicts:
- class 4 (or a 4yz code): temporary, tried again later (sending/retry.py).  Amazon SES's
  SMTP interface says "454 Throttling failure: Maximum sending rate exceeded" when sent to
  too fast (throttled: the pacer slows down) and "454 Throttling failure: Daily message quota
  exceeded" when the day's quota is spent (stops the send; SES developer guide, "Errors
  related to the sending quotas");
- the codes that mail/status_codes.py reads as about the address (as it reads them for the
  bounce reports that come back by mail): X.1.0, X.1.1, X.1.2, X.1.3, X.1.6, X.1.10 (null
  MX, RFC 7505) and X.2.1 (mailbox disabled), with class 5: a hard bounce of the address;
- 5.2.2 mailbox full: RFC 3463 calls X.2.2 "a useful value for temporary failures", and SES
  classes a full mailbox as a transient bounce: temporary;
- X.7.x security or policy status (spam, content, authentication, relaying): a failure of
  this message, not of the address;
- anything else permanent, or a 5yz without an enhanced code: a failure of this message.
  A bare "550" may mean "no such user" or "rejected for policy reasons" (RFC 5321 section
  4.2.3 lists both), and suppressing a reader on a guess loses them for good.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.mail.status_codes import ADDRESS, MAILBOX_FULL, parse_code

_DAILY_QUOTA = "daily message quota"
_THROTTLED = re.compile(r"throttl|maximum sending rate", re.IGNORECASE)


@dataclass(frozen=True)
class SmtpVerdict:
    permanent: bool
    # The address itself is gone: suppress it, as a hard bounce reported later would.
    hard_bounce: bool = False
    # The server asked us to send slower.
    throttled: bool = False
    # The account cannot send now (the daily quota): stop the whole send.
    stops_send: bool = False
    # The enhanced status code as written ("5.1.1"), when the reply had one.
    enhanced: str | None = None


def classify_reply(code: int, text: str, *, stage: str) -> SmtpVerdict:
    """Read one refusal: the basic `code`, the reply `text` after it, and the command it
    answered (`stage`: MAIL FROM, RCPT TO, DATA or end of DATA)."""
    enhanced = parse_code(text)
    written = str(enhanced) if enhanced else None
    lowered = text.lower()
    if _DAILY_QUOTA in lowered:
        return SmtpVerdict(permanent=False, stops_send=True, enhanced=written)
    temporary = 400 <= code < 500 or (enhanced is not None and enhanced.klass == 4)
    if temporary:
        return SmtpVerdict(permanent=False, throttled=bool(_THROTTLED.search(text)), enhanced=written)
    if not 500 <= code < 600:
        # Not a reply RFC 5321 defines as a refusal: nothing proves it will not work later.
        return SmtpVerdict(permanent=False, enhanced=written)
    if enhanced is not None:
        if enhanced.about == MAILBOX_FULL:
            return SmtpVerdict(permanent=False, enhanced=written)
        if enhanced.about == ADDRESS and stage != "MAIL FROM":
            return SmtpVerdict(permanent=True, hard_bounce=True, enhanced=written)
    # A 5yz to MAIL FROM refuses the sender, and with it every other message.
    return SmtpVerdict(permanent=True, stops_send=stage == "MAIL FROM", enhanced=written)
