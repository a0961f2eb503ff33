"""Transports against real servers on 127.0.0.1: a Maildir, aiosmtpd, and moto's SES over HTTP."""

from __future__ import annotations

import dataclasses
import mailbox
import os
import subprocess
import sys
import threading
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from ports import free_port

from newsletter.config import Settings, replace
from newsletter.errors import TransportError
from newsletter.mail.message_id import read_message_id
from newsletter.transports.base import STOPPED, RecordingTransport, SendQuota
from newsletter.transports.configured import open_transport
from newsletter.transports.outbox import OutboxTransport
from newsletter.transports.smtp import SmtpTransport

pytest.register_assert_rewrite("tests.transport_servers")
from tests.transport_servers import LocalSes, LocalSmtp

pytest_plugins = ["tests.transport_servers"]

SENDER = "digest@example.com"


def make_message(recipient: str = "reader@example.org", number: int = 1, *, message_id: str | None = None) -> bytes:
    """A small multipart message as the message builder makes them: CRLF, 7-bit, with a
    line that starts with a dot (SMTP must dot-stuff it and the server un-stuff it)."""
    message_id = message_id or f"<issue-1.{number}@example.com>"
    return (
        f"From: =?utf-8?b?QUnooYzkuJrpgJ/pgJI=?= <{SENDER}>\r\n"
        f"To: {recipient}\r\n"
        f"Subject: Issue {number}\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        "5L2g5aW977yM5LiW55WM\r\n"
        "--b1\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "<p>hello</p>\r\n"
        ".a line starting with a dot\r\n"
        "--b1--\r\n"
    ).encode("ascii")


def parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


# ---------------------------------------------------------------------------------------
# read_message_id
# ---------------------------------------------------------------------------------------


def test_read_message_id_finds_folded_header_and_ignores_the_body():
    folded = b"Subject: x\r\nMessage-Id:\r\n <a.b@example.com>\r\n\r\nbody"
    in_body = b"Subject: x\r\n\r\nMessage-ID: <not@header>\r\n"
    assert read_message_id(folded) == "<a.b@example.com>"
    assert read_message_id(in_body) is None


# ---------------------------------------------------------------------------------------
# Outbox
# ---------------------------------------------------------------------------------------


def test_outbox_writes_the_exact_bytes_into_new(tmp_path: Path):
    box = tmp_path / "deep" / "outbox"
    transport = OutboxTransport(box)
    message = make_message()

    key = transport.send(message, sender=SENDER, recipient="reader@example.org")

    assert sorted(p.name for p in (box / "new").iterdir()) == [key]
    assert (box / "new" / key).read_bytes() == message
    assert list((box / "tmp").iterdir()) == []
    assert (box / "new" / key).stat().st_mode & 0o077 == 0
    # A standard Maildir reader sees the same message.
    [read_back] = mailbox.Maildir(box, create=False)
    assert read_back["Message-ID"] == "<issue-1.1@example.com>"
    assert parse((box / "new" / key).read_bytes())["Subject"] == "Issue 1"


def test_outbox_contains_tells_which_messages_arrived(tmp_path: Path):
    transport = OutboxTransport(tmp_path / "outbox")
    transport.send(make_message(number=1), sender=SENDER, recipient="reader@example.org")

    assert isinstance(transport, RecordingTransport)
    assert transport.contains("<issue-1.1@example.com>")
    assert transport.contains("issue-1.1@example.com")  # brackets optional
    assert not transport.contains("<issue-1.2@example.com>")


def test_outbox_contains_finds_a_message_a_reader_moved_to_cur(tmp_path: Path):
    transport = OutboxTransport(tmp_path / "outbox")
    key = transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    os.rename(tmp_path / "outbox" / "new" / key, tmp_path / "outbox" / "cur" / f"{key}:2,S")

    assert transport.contains("<issue-1.1@example.com>")


def test_outbox_keeps_both_copies_of_a_double_send(tmp_path: Path):
    transport = OutboxTransport(tmp_path / "outbox")
    first = transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    second = transport.send(make_message(), sender=SENDER, recipient="reader@example.org")

    assert first != second
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 2


def test_outbox_delivers_a_message_without_message_id(tmp_path: Path):
    transport = OutboxTransport(tmp_path / "outbox")
    message = b"Subject: no id\r\n\r\nbody\r\n"
    key = transport.send(message, sender=SENDER, recipient="reader@example.org")
    assert (tmp_path / "outbox" / "new" / key).read_bytes() == message


def test_outbox_is_safe_to_share_between_threads(tmp_path: Path):
    transport = OutboxTransport(tmp_path / "outbox", fsync=True)
    keys: list[str] = []

    def worker(number: int) -> None:
        for index in range(25):
            keys.append(
                transport.send(make_message(number=number * 100 + index), sender=SENDER, recipient="r@example.org")
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(keys)) == 200
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 200
    assert all(transport.contains(f"<issue-1.{n * 100 + i}@example.com>") for n in range(8) for i in range(25))


def test_outbox_that_cannot_be_written_stops_the_send(tmp_path: Path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(TransportError) as created:
        OutboxTransport(tmp_path / "file" / "outbox")
    assert created.value.permanent and created.value.stops_send

    transport = OutboxTransport(tmp_path / "outbox")
    (tmp_path / "outbox" / "new").rmdir()
    with pytest.raises(TransportError) as sent:
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert sent.value.stops_send and sent.value.recipient == "reader@example.org"
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []


# ---------------------------------------------------------------------------------------
# SMTP
# ---------------------------------------------------------------------------------------


def smtp_transport(server: LocalSmtp, **options) -> SmtpTransport:
    options.setdefault("security", "none")
    return SmtpTransport(host=server.host, port=server.port, timeout=5, tls_context=server.client_context(), **options)


def test_smtp_delivers_exact_bytes_over_one_reused_connection(local_smtp: LocalSmtp):
    messages = [make_message(f"reader{n}@example.org", n) for n in range(3)]
    with smtp_transport(local_smtp) as transport:
        ids = [transport.send(m, sender=SENDER, recipient=f"reader{n}@example.org") for n, m in enumerate(messages)]

    assert [d.content for d in local_smtp.received] == messages
    assert [d.rcpt_tos for d in local_smtp.received] == [[f"reader{n}@example.org"] for n in range(3)]
    assert {d.mail_from for d in local_smtp.received} == {SENDER}
    assert local_smtp.connections == 1
    # aiosmtpd's reply names no queue id, so the Message-ID stands in.
    assert ids == [f"<issue-1.{n}@example.com>" for n in range(3)]


def test_smtp_returns_the_queue_id_from_the_servers_reply():
    with LocalSmtp(queue_ids=True) as server, smtp_transport(server) as transport:
        queue_id = transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert queue_id == server.received[0].queue_id


def test_smtp_sends_bare_line_feeds_as_crlf(local_smtp: LocalSmtp):
    with smtp_transport(local_smtp) as transport:
        transport.send(make_message().replace(b"\r\n", b"\n"), sender=SENDER, recipient="reader@example.org")
    assert local_smtp.received[0].content == make_message()


@pytest.mark.parametrize(
    ("stage", "reply", "permanent", "quota"),
    [
        ("rcpt", "450 4.2.1 Mailbox busy", False, False),
        ("rcpt", "451 4.3.0 Local error", False, False),
        ("rcpt", "452 4.2.2 Mailbox full", False, False),
        ("rcpt", "550 5.1.1 No such user", True, False),
        ("rcpt", "553 5.1.3 Bad address syntax", True, False),
        ("data", "554 5.7.1 Message rejected as spam", True, False),
        ("data", "451 4.7.1 Greylisted, try later", False, False),
        ("data", "454 Throttling failure: Daily message quota exceeded.", False, True),
        ("mail", "454 Throttling failure: Maximum sending rate exceeded.", False, False),
        ("mail", "553 5.7.1 Sender address rejected: not owned by user", True, True),
    ],
)
def test_smtp_classifies_refusals_and_keeps_the_connection(local_smtp: LocalSmtp, stage, reply, permanent, quota):
    refused = "refused@example.org"
    if stage == "rcpt":
        local_smtp.rcpt_replies[refused] = reply
    elif stage == "data":
        local_smtp.data_replies[refused] = reply
    else:
        local_smtp.mail_replies.append(reply)

    with smtp_transport(local_smtp) as transport:
        with pytest.raises(TransportError) as caught:
            transport.send(make_message(refused), sender=SENDER, recipient=refused)
        # RSET ends the failed transaction; the same connection carries the next message.
        transport.send(make_message("ok@example.org", 2), sender=SENDER, recipient="ok@example.org")

    error = caught.value
    assert (error.permanent, error.stops_send) == (permanent, quota)
    assert error.code == reply[:3] and error.recipient == refused
    assert reply[4:] in str(error)
    assert [d.rcpt_tos for d in local_smtp.received] == [["ok@example.org"]]
    assert local_smtp.connections == 1


def test_smtp_reconnects_once_when_the_server_dropped_an_idle_connection(local_smtp: LocalSmtp):
    local_smtp.drop_after_data(1)
    with smtp_transport(local_smtp) as transport:
        transport.send(make_message("a@example.org", 1), sender=SENDER, recipient="a@example.org")
        transport.send(make_message("b@example.org", 2), sender=SENDER, recipient="b@example.org")

    assert [d.rcpt_tos for d in local_smtp.received] == [["a@example.org"], ["b@example.org"]]
    assert local_smtp.connections == 2


def test_smtp_reconnects_once_on_421_at_mail_from(local_smtp: LocalSmtp):
    with smtp_transport(local_smtp) as transport:
        transport.send(make_message("a@example.org", 1), sender=SENDER, recipient="a@example.org")
        local_smtp.mail_replies.append("421 4.4.2 Idle timeout, closing connection")
        transport.send(make_message("b@example.org", 2), sender=SENDER, recipient="b@example.org")

    assert len(local_smtp.received) == 2
    assert local_smtp.connections == 2


def test_smtp_gives_up_when_a_fresh_connection_says_421(local_smtp: LocalSmtp):
    local_smtp.rcpt_replies["busy@example.org"] = "421 4.7.0 Too many connections, try later"
    with smtp_transport(local_smtp) as transport, pytest.raises(TransportError) as caught:
        transport.send(make_message("busy@example.org"), sender=SENDER, recipient="busy@example.org")

    assert not caught.value.permanent and not caught.value.stops_send
    assert caught.value.code == "421"
    assert local_smtp.connections == 1


def test_smtp_does_not_resend_when_the_connection_drops_during_data(local_smtp: LocalSmtp):
    local_smtp.hang_up_in_data(1)
    with smtp_transport(local_smtp) as transport, pytest.raises(TransportError) as caught:
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")

    assert not caught.value.permanent and caught.value.code == "disconnected"
    assert "may or may not" in str(caught.value)
    # The server did take it: a silent retry here would have been a second copy.
    assert len(local_smtp.received) == 1
    assert local_smtp.connections == 1


def test_smtp_unreachable_server_is_temporary():
    transport = SmtpTransport(host="127.0.0.1", port=free_port(), security="none", timeout=2)
    with pytest.raises(TransportError) as caught:
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert not caught.value.permanent and caught.value.code == "connect"


def test_smtp_starttls_with_auth(tls_certificate):
    with (
        LocalSmtp(tls="starttls", certificate=tls_certificate, users={"mailer": "s3cret"}) as server,
        smtp_transport(server, security="starttls", username="mailer", password="s3cret") as transport,
    ):
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")

    [delivery] = server.received
    assert delivery.tls and delivery.login == "mailer"
    assert delivery.content == make_message()


def test_smtp_implicit_tls(tls_certificate):
    with (
        LocalSmtp(tls="ssl", certificate=tls_certificate) as server,
        smtp_transport(server, security="ssl") as transport,
    ):
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert server.received[0].tls


def test_smtp_wrong_password_stops_the_send(tls_certificate):
    with LocalSmtp(tls="starttls", certificate=tls_certificate, users={"mailer": "s3cret"}) as server:
        transport = smtp_transport(server, security="starttls", username="mailer", password="wrong")
        with pytest.raises(TransportError) as caught:
            transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert caught.value.permanent and caught.value.stops_send and caught.value.code == "535"
    assert server.received == []


def test_smtp_untrusted_certificate_stops_the_send(tls_certificate):
    with LocalSmtp(tls="starttls", certificate=tls_certificate) as server:
        # The system's CAs do not include the test certificate.
        transport = SmtpTransport(host=server.host, port=server.port, security="starttls", timeout=5)
        with pytest.raises(TransportError) as caught:
            transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert caught.value.stops_send and caught.value.code == "certificate"


def test_smtp_starttls_required_but_not_offered_stops_the_send(local_smtp: LocalSmtp):
    transport = smtp_transport(local_smtp, security="starttls")
    with pytest.raises(TransportError, match="does not offer STARTTLS") as caught:
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert caught.value.permanent and caught.value.stops_send


def test_smtp_non_ascii_recipient_uses_smtputf8_when_offered(local_smtp: LocalSmtp):
    message = make_message().replace(b"To: reader@example.org", "To: 读者@example.org".encode())
    with smtp_transport(local_smtp) as transport:
        transport.send(message, sender=SENDER, recipient="读者@example.org")
    [delivery] = local_smtp.received
    assert delivery.rcpt_tos == ["读者@example.org"] and delivery.content == message
    assert "SMTPUTF8" in delivery.mail_options and "BODY=8BITMIME" in delivery.mail_options


def test_smtp_non_ascii_recipient_without_smtputf8_is_permanent():
    with (
        LocalSmtp(smtputf8=False) as server,
        smtp_transport(server) as transport,
        pytest.raises(TransportError) as caught,
    ):
        transport.send(make_message(), sender=SENDER, recipient="读者@example.org")
    assert caught.value.permanent and not caught.value.stops_send and caught.value.code == "SMTPUTF8"


def test_smtp_keeps_one_connection_per_thread_and_closes_them_all(local_smtp: LocalSmtp):
    transport = smtp_transport(local_smtp)
    errors: list[BaseException] = []

    def worker(number: int) -> None:
        try:
            for index in range(5):
                address = f"r{number}-{index}@example.org"
                transport.send(make_message(address, number * 10 + index), sender=SENDER, recipient=address)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    transport.close()

    assert errors == []
    assert len(local_smtp.received) == 20
    assert local_smtp.connections == 4
    with pytest.raises(RuntimeError):
        transport.send(make_message(), sender=SENDER, recipient="late@example.org")


# ---------------------------------------------------------------------------------------
# SES (moto in server mode behind LocalSes)
# ---------------------------------------------------------------------------------------


def ses_transport(server: LocalSes, **options):
    from newsletter.transports.ses.send import SesTransport

    return SesTransport(region=server.region, endpoint_url=server.endpoint_url, **options)


def test_ses_sends_the_raw_bytes_with_tags_and_configuration_set(local_ses: LocalSes):
    local_ses.verify(SENDER)
    messages = [make_message(f"reader{n}@example.org", n) for n in range(2)]
    with ses_transport(local_ses, configuration_set="newsletter-events") as transport:
        ids = [
            transport.send(
                m, sender=SENDER, recipient=f"reader{n}@example.org", tags={"issue": "2026-01-22", "list": "科技 news"}
            )
            for n, m in enumerate(messages)
        ]

    received = local_ses.received()
    assert [d.message_id for d in received] == ids
    assert [d.raw for d in received] == messages
    assert received[0].message["Message-ID"] == "<issue-1.0@example.com>"
    assert received[1].source == SENDER and "reader1@example.org" in received[1].destinations
    request = local_ses.requests[0].body
    assert request["FromEmailAddress"] == SENDER
    assert request["Destination"] == {"ToAddresses": ["reader0@example.org"]}
    assert request["ConfigurationSetName"] == "newsletter-events"
    assert request["EmailTags"] == [
        {"Name": "issue", "Value": "2026-01-22"},
        {"Name": "list", "Value": "_news-246jz16k"},
    ]
    assert local_ses.requests[0].raw == messages[0]


def test_ses_paced_send_is_released_after_signing_and_can_be_called_off(local_ses: LocalSes):
    local_ses.verify(SENDER)
    seen_at_release: list[int] = []

    def release() -> bool:
        # By now the request is built and signed: nothing has reached the server yet.
        seen_at_release.append(len(local_ses.requests))
        return True

    with ses_transport(local_ses) as transport:
        message_id = transport.send_paced(
            make_message(), sender=SENDER, recipient="reader@example.org", tags={}, pace=release
        )
        with pytest.raises(TransportError) as stopped:
            transport.send_paced(
                make_message(), sender=SENDER, recipient="reader@example.org", tags={}, pace=lambda: False
            )
        # A plain send afterwards is not paced by a leftover pace function.
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")

    assert seen_at_release == [0]
    assert stopped.value.code == STOPPED and not stopped.value.permanent
    assert next(d.message_id for d in local_ses.received()) == message_id
    assert len(local_ses.received()) == 2, "the called-off request never left"


def test_ses_throttling_is_temporary_and_not_retried_underneath(local_ses: LocalSes):
    local_ses.verify(SENDER)
    local_ses.throttle_next(1)
    with ses_transport(local_ses) as transport:
        with pytest.raises(TransportError) as caught:
            transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")

    error = caught.value
    assert not error.permanent and not error.stops_send
    assert error.code == "TooManyRequestsException" and "Maximum sending rate exceeded" in str(error)
    # One 429 and one success: botocore did not quietly retry and hide the throttle.
    assert [(r.status, r.error) for r in local_ses.requests] == [(429, "TooManyRequestsException"), (200, None)]
    assert len(local_ses.received()) == 1


@pytest.mark.parametrize(
    ("code", "text", "status", "permanent", "quota"),
    [
        ("Throttling", "Maximum sending rate exceeded.", 400, False, False),
        ("ThrottlingException", "Rate exceeded", 400, False, False),
        ("ServiceUnavailable", "Service is unavailable", 503, False, False),
        ("InternalFailure", "Internal failure", 500, False, False),
        ("ThrottlingException", "Daily message quota exceeded.", 400, False, True),
        ("TooManyRequestsException", "Daily message quota exceeded.", 429, False, True),
        ("LimitExceededException", "Sending quota exceeded", 400, False, True),
        ("MessageRejected", "Email address is not verified: reader@example.org", 400, True, False),
        ("BadRequestException", "Missing final '@domain'", 400, True, False),
        ("MessageRejected", f"Email address is not verified: {SENDER}", 400, True, True),
        ("SendingPausedException", "Sending is paused for this account.", 400, True, True),
        ("AccountSuspendedException", "Account suspended", 400, True, True),
        ("MailFromDomainNotVerifiedException", "MAIL FROM domain not verified", 400, True, True),
        ("NotFoundException", "Configuration set <events> does not exist.", 404, True, True),
        ("UnrecognizedClientException", "The security token included in the request is invalid.", 403, True, True),
    ],
)
def test_ses_classifies_errors_over_http(local_ses: LocalSes, code, text, status, permanent, quota):
    local_ses.fail_next(1, code, text, status)
    with ses_transport(local_ses) as transport, pytest.raises(TransportError) as caught:
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")

    error = caught.value
    assert (error.permanent, error.stops_send) == (permanent, quota)
    assert error.code == code and error.recipient == "reader@example.org"
    assert text in str(error)
    assert error.__cause__.response["Error"]["Code"] == code  # chained to the botocore error


def test_ses_unverified_sender_refused_by_moto_stops_the_send(local_ses: LocalSes):
    with ses_transport(local_ses) as transport, pytest.raises(TransportError) as caught:
        transport.send(make_message(), sender="stranger@unverified.example", recipient="reader@example.org")
    assert caught.value.code == "MessageRejected"
    assert caught.value.permanent and caught.value.stops_send


def test_ses_daily_quota_runs_out(local_ses: LocalSes):
    local_ses.verify(SENDER)
    local_ses.set_quota(max_24_hour_send=3, sent_last_24_hours=1)
    with ses_transport(local_ses) as transport:
        transport.send(make_message(), sender=SENDER, recipient="a@example.org")
        transport.send(make_message(), sender=SENDER, recipient="b@example.org")
        with pytest.raises(TransportError) as caught:
            transport.send(make_message(), sender=SENDER, recipient="c@example.org")
        quota = transport.quota()

    assert caught.value.stops_send and not caught.value.permanent
    assert "Daily message quota exceeded" in str(caught.value)
    assert quota.remaining_24_hours == 0
    assert len(local_ses.received()) == 2


def test_ses_quota_comes_from_get_account(local_ses: LocalSes):
    local_ses.set_quota(max_send_rate=14, max_24_hour_send=50_000, sent_last_24_hours=120, production_access=False)
    with ses_transport(local_ses) as transport:
        quota = transport.quota()
    assert quota == SendQuota(
        max_send_rate=14.0,
        max_24_hour_send=50_000.0,
        sent_last_24_hours=120.0,
        sending_enabled=True,
        production_access=False,
    )
    assert quota.remaining_24_hours == 49_880
    assert SendQuota(max_send_rate=1, max_24_hour_send=-1, sent_last_24_hours=5).remaining_24_hours is None


def test_ses_quota_is_none_where_the_server_has_no_get_account(local_ses: LocalSes):
    local_ses.serve_account = False
    with ses_transport(local_ses) as transport:
        assert transport.quota() is None


def test_ses_refuses_a_non_ascii_local_part_before_calling_ses(local_ses: LocalSes):
    local_ses.verify(SENDER)
    with ses_transport(local_ses) as transport:
        with pytest.raises(TransportError) as caught:
            transport.send(make_message(), sender=SENDER, recipient="读者@example.org")
        transport.send(make_message(), sender=SENDER, recipient="reader@bücher.example")

    assert caught.value.permanent and not caught.value.stops_send and caught.value.code == "SMTPUTF8"
    assert [r.body["Destination"]["ToAddresses"] for r in local_ses.requests] == [["reader@xn--bcher-kva.example"]]


def test_ses_unreachable_endpoint_is_temporary(local_ses: LocalSes):
    from newsletter.transports.ses.send import SesTransport

    transport = SesTransport(region="us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}", connect_timeout=2)
    with pytest.raises(TransportError) as caught:
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert not caught.value.permanent and caught.value.code == "EndpointConnectionError"


def test_ses_missing_credentials_stop_the_send(local_ses: LocalSes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with (
        ses_transport(local_ses) as transport,
        pytest.raises(TransportError, match="no usable AWS credentials") as caught,
    ):
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert caught.value.permanent and caught.value.stops_send
    assert local_ses.requests == []


def test_ses_transport_is_shared_by_threads(local_ses: LocalSes):
    local_ses.verify("example.com")
    transport = ses_transport(local_ses, max_connections=8)
    ids: list[str] = []

    def worker(number: int) -> None:
        for index in range(5):
            address = f"r{number}-{index}@example.org"
            ids.append(transport.send(make_message(address, number * 10 + index), sender=SENDER, recipient=address))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    transport.close()

    assert len(set(ids)) == 40
    assert sorted(d.message_id for d in local_ses.received()) == sorted(ids)


def test_local_ses_enforces_the_max_send_rate_when_asked(local_ses: LocalSes):
    local_ses.verify(SENDER)
    local_ses.set_quota(max_send_rate=3, enforce_rate=True)
    outcomes = []
    with ses_transport(local_ses) as transport:
        for _ in range(5):
            try:
                transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
                outcomes.append("sent")
            except TransportError as err:
                outcomes.append(err.code)
    assert outcomes == ["sent"] * 3 + ["TooManyRequestsException"] * 2


# ---------------------------------------------------------------------------------------
# open_transport
# ---------------------------------------------------------------------------------------


def test_open_transport_builds_each_kind(tmp_path: Path, local_smtp: LocalSmtp, local_ses: LocalSes):
    settings = Settings(root=tmp_path)
    outbox = open_transport(replace(settings, transport={"kind": "outbox"}))
    assert isinstance(outbox, OutboxTransport) and outbox.path == tmp_path / "outbox"

    smtp = dataclasses.replace(settings.transport.smtp, host=local_smtp.host, port=local_smtp.port, security="none")
    with open_transport(replace(settings, transport={"kind": "smtp", "smtp": smtp})) as transport:
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert len(local_smtp.received) == 1

    local_ses.verify(SENDER)
    ses = dataclasses.replace(settings.transport.ses, endpoint_url=local_ses.endpoint_url, configuration_set="events")
    with open_transport(replace(settings, transport={"kind": "ses", "ses": ses}), workers=32) as transport:
        transport.send(make_message(), sender=SENDER, recipient="reader@example.org")
    assert local_ses.requests[0].body["ConfigurationSetName"] == "events"


def test_boto3_is_imported_only_for_ses():
    code = (
        "import sys, newsletter.transports.base, newsletter.transports.outbox, newsletter.transports.smtp\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
