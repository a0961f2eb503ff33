"""Mail that comes back to a sender, written by us in the shapes real MTAs and feedback loops
produce, around the bytes of a message we sent (for `newsletter events inbox` tests).

- `postfix_bounce`: Postfix's bounce(8) notice, "Undelivered Mail Returned to Sender": a
  multipart/report with the human part, message/delivery-status (with X-Postfix-* fields and
  Original-Recipient) and the original's headers as text/rfc822-headers.
- `postfix_delay`: its "Delayed Mail (still being retried)" warning (Action: delayed).
- `exim_bounce`: Exim's "Mail delivery failed: returning message to sender", with
  X-Failed-Recipients, `Status: 5.0.0` and the remote reply in Diagnostic-Code, and the
  whole original as message/rfc822.
- `arf_report`: a feedback-loop complaint in RFC 5965's format, the original attached.
- `mailto_unsubscribe`: what a mail client sends when a reader follows our List-Unsubscribe
  mailto.
- `JUNK`: what else lands in a bounce mailbox.
"""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from urllib.parse import unquote

DATE = "Tue, 01 Dec 2026 10:00:02 +0000"


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def headers_of(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    return original[: end + 2] if end >= 0 else original


def postfix_bounce(
    original: bytes,
    recipient: str,
    *,
    status: str = "5.1.1",
    queue_id: str = "3F1A2B4C5D",
    final_recipient: str | None = None,
) -> bytes:
    """`recipient` as we sent it (Original-Recipient); `final_recipient` where a forward
    took it (Final-Recipient, and the address the remote refused)."""
    final = final_recipient or recipient
    boundary = f"{queue_id}.1764583202/mx.example.com"
    reply = f"550 {status} <{final}>: Recipient address rejected: User unknown in virtual mailbox table"
    text = f"""Return-Path: <>
Received: by mx.example.com (Postfix)
\tid {queue_id}; Tue,  1 Dec 2026 10:00:02 +0000 (UTC)
Date: Tue,  1 Dec 2026 10:00:02 +0000 (UTC)
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 7bit
Message-Id: <20261201100002.{queue_id}@mx.example.com>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{final}> (expanded from <{recipient}>): host mail.example.org[192.0.2.25] said:
    {reply} (in reply to RCPT TO command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: {queue_id}
X-Postfix-Sender: rfc822; bounces@example.com
Arrival-Date: Tue,  1 Dec 2026 09:59:58 +0000 (UTC)

Final-Recipient: rfc822; {final}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: {status}
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; {reply}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

"""
    return _crlf(text) + headers_of(original) + _crlf(f"\n--{boundary}--\n")


def postfix_delay(original: bytes, recipient: str, *, queue_id: str = "4A2B3C4D5E") -> bytes:
    boundary = f"{queue_id}.1764583300/mx.example.com"
    text = f"""Return-Path: <>
Date: Tue,  1 Dec 2026 14:00:02 +0000 (UTC)
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: bounces@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Message-Id: <20261201140002.{queue_id}@mx.example.com>

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

<{recipient}>: connect to mail.example.org[192.0.2.25]:25: Connection timed out

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: {queue_id}
Arrival-Date: Tue,  1 Dec 2026 09:59:58 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mail.example.org[192.0.2.25]:25: Connection
    timed out
Will-Retry-Until: Tue,  6 Dec 2026 09:59:58 +0000 (UTC)

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

"""
    return _crlf(text) + headers_of(original) + _crlf(f"\n--{boundary}--\n")


def exim_bounce(original: bytes, recipient: str, *, reply: str = "550 5.2.1 The email account is disabled.") -> bytes:
    boundary = "1764583203-eximdsn-1804289383"
    text = f"""Return-path: <>
Received: from Debian-exim by mx.example.net with local (Exim 4.96)
\tid 1t8ABC-000123-4D
\tfor bounces@example.com;
\tTue, 01 Dec 2026 10:00:03 +0000
X-Failed-Recipients: {recipient}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: bounces@example.com
Content-Type: multipart/report; report-type=delivery-status; boundary={boundary}
MIME-Version: 1.0
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1t8ABC-000123-4D@mx.example.net>
Date: Tue, 01 Dec 2026 10:00:03 +0000

--{boundary}
Content-type: text/plain; charset=us-ascii

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    host mail.example.org [192.0.2.25]
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    {reply}

--{boundary}
Content-type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Action: failed
Final-Recipient: rfc822;{recipient}
Status: 5.0.0
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; {reply}

--{boundary}
Content-type: message/rfc822

"""
    return _crlf(text) + original + _crlf(f"\n--{boundary}--\n")


def exim_plain_bounce(original: bytes, recipient: str) -> bytes:
    """Exim's bounce without a delivery-status part (bounce_message_file of its own, or an
    old version): only X-Failed-Recipients and the copy of the message in the text."""
    text = f"""Return-path: <>
X-Failed-Recipients: {recipient}
Auto-Submitted: auto-replied
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: bounces@example.com
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1t8XYZ-000999-1A@mx.example.net>
Date: Tue, 01 Dec 2026 10:05:00 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    Unrouteable address

------ This is a copy of the message, including all the headers. ------

"""
    return _crlf(text) + original


def arf_report(original: bytes, recipient: str, *, feedback_type: str = "abuse") -> bytes:
    boundary = "part1_13d.2e68ed54_boundary"
    text = f"""Return-Path: <fbl@arf.example.net>
From: Feedback Loop <fbl@arf.example.net>
To: abuse@example.com
Subject: FW: complaint about a message from example.com
Date: Tue, 01 Dec 2026 11:00:00 +0000
Message-ID: <fbl-20261201110000-77@arf.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.10 on Tue, 01 Dec 2026 09:00:00 +0000.  For more information
about this format please see https://www.rfc-editor.org/rfc/rfc5965.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <bounces@example.com>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Tue, 01 Dec 2026 09:00:00 +0000
Reported-Domain: example.com
Source-IP: 192.0.2.10

--{boundary}
Content-Type: message/rfc822
Content-Disposition: inline

"""
    return _crlf(text) + original + _crlf(f"\n--{boundary}--\n")


def mailto_target(original: bytes) -> tuple[str, str]:
    """(address, subject) of the mailto in `original`'s List-Unsubscribe."""
    message = BytesParser(policy=policy.default).parsebytes(original, headersonly=True)
    found = re.search(r"<mailto:([^?>]+)\?subject=([^>]+)>", str(message["List-Unsubscribe"]))
    assert found, message["List-Unsubscribe"]
    return unquote(found.group(1)), unquote(found.group(2))


def mailto_unsubscribe(original: bytes, sender: str, *, message_id: str = "<CAF+unsub-1@mail.example.org>") -> bytes:
    address, subject = mailto_target(original)
    return _crlf(f"""From: {sender}
To: {address}
Subject: {subject}
Date: Tue, 01 Dec 2026 12:00:00 +0000
Message-ID: {message_id}
MIME-Version: 1.0
Content-Type: text/plain; charset="UTF-8"

This message was sent by the reader's mail client to unsubscribe.
""")


JUNK = {
    # A person writing to the bounce address.
    "person": _crlf("""From: Reader <someone@example.net>
To: bounces@example.com
Subject: Re: your newsletter
Date: Tue, 01 Dec 2026 12:30:00 +0000
Message-ID: <person-1@example.net>

Please call me about the last issue.
"""),
    # Says it is a DSN but has no delivery-status part.
    "broken-report": _crlf("""From: MAILER-DAEMON@mx.example.com
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <broken-1@mx.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

Something went wrong.
--b--
"""),
    # Not mail at all (and no NUL, which an IMAP APPEND may not carry, RFC 3501 section 4.3).
    "garbage": b"\xff\xfe\x81 not a message \xc3\x28\r\n\r\n\xff",
}
