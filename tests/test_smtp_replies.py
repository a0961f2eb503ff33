"""SMTP refusals read by their enhanced status codes (RFC 3463): a dead address, a refused
message, a temporary failure."""

from __future__ import annotations

import pytest

from newsletter.mail.status_codes import StatusCode, find_code, parse_code
from newsletter.transports.smtp_replies import classify_reply


@pytest.mark.parametrize(
    ("code", "text", "permanent", "hard_bounce"),
    [
        (550, "5.1.1 <someone@example.org>: Recipient address rejected: User unknown", True, True),
        (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", True, True),
        (550, "5.2.1 The email account that you tried to reach is disabled.", True, True),
        (550, "5.1.2 Host unknown", True, True),
        (553, "5.1.3 Bad recipient address syntax", True, True),
        (551, "5.1.6 Mailbox has moved", True, True),
        (550, "5.1.0 Address rejected", True, True),
        # About the message or a policy: the reader stays.
        (550, "5.7.1 Message rejected as spam", True, False),
        (554, "5.7.1 Service unavailable; Client host blocked", True, False),
        (552, "5.3.4 Message size exceeds fixed limit", True, False),
        (550, "Requested action not taken: mailbox unavailable", True, False),
        # Temporary, whatever the words.
        (452, "4.2.2 Mailbox full", False, False),
        (552, "5.2.2 Mailbox full", False, False),
        (451, "4.7.1 Greylisted, try again later", False, False),
        (450, "4.1.1 Recipient address verification in progress", False, False),
        (421, "4.3.2 Service shutting down", False, False),
    ],
)
def test_replies_at_rcpt_to(code: int, text: str, permanent: bool, hard_bounce: bool):
    verdict = classify_reply(code, text, stage="RCPT TO")
    assert (verdict.permanent, verdict.hard_bounce) == (permanent, hard_bounce)
    assert not verdict.stops_send


def test_a_dead_sender_address_at_mail_from_stops_the_send_and_bounces_nobody():
    verdict = classify_reply(550, "5.1.8 Sender address rejected: Domain not found", stage="MAIL FROM")
    assert verdict.permanent and verdict.stops_send and not verdict.hard_bounce


def test_ses_smtp_throttling_and_daily_quota():
    throttled = classify_reply(454, "Throttling failure: Maximum sending rate exceeded.", stage="end of DATA")
    assert throttled.throttled and not throttled.permanent and not throttled.stops_send
    quota = classify_reply(454, "Throttling failure: Daily message quota exceeded.", stage="end of DATA")
    assert quota.stops_send and not quota.permanent


def test_enhanced_codes_are_read_only_at_the_start():
    assert parse_code("5.1.10 nope") == StatusCode(5, 1, 10)
    assert parse_code("Error 5.1.1 in the middle") is None
    assert parse_code("5.1.1234 too long") is None
    # A Diagnostic-Code quotes the reply after its basic code; an IP address is not a code.
    assert find_code("smtp; 550 5.7.1 Message rejected") == StatusCode(5, 7, 1)
    said = "X-Postfix; host mx.example.org[192.0.2.54] said: 550 5.1.1 <a@example.org>: unknown"
    assert find_code(said) == StatusCode(5, 1, 1)
