"""`newsletter events inbox`: bounce reports, complaints and mailto unsubscribes read from a
mailbox and applied to the store (newsletter.feedback.inbox and its readers), on SQLite and
PostgreSQL.

An issue is sent for real (to the outbox); the mail that comes back is written around the
bytes of those very messages (tests/returned_mail.py) into a Maildir; the command runs; what
is asserted is the database afterwards and what is left in the mailbox.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import returned_mail
import sqlalchemy as sa

pytest.register_assert_rewrite("tests.send_world")
from newsletter.feedback.dsn import bounce_kind
from newsletter.store import schema
from tests.send_world import World

pytest_plugins = ["tests.send_world", "tests.dovecot_server"]

MAILTO = "unsubscribe@example.com"
APPLIED = ".newsletter-applied"


def make_maildir(path: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def deliver(maildir: Path, name: str, raw: bytes) -> None:
    (maildir / "tmp" / name).write_bytes(raw)
    os.rename(maildir / "tmp" / name, maildir / "new" / name)


def names_in(directory: Path) -> list[str]:
    return sorted(entry.split(":2,")[0] for entry in os.listdir(directory)) if directory.is_dir() else []


def sent_messages(world: World) -> dict[str, bytes]:
    """The bytes of each message in the outbox, by recipient."""
    parser = BytesParser(policy=policy.default)
    found = {}
    for path in world.outbox_files():
        raw = path.read_bytes()
        found[parser.parsebytes(raw, headersonly=True)["To"].addresses[0].addr_spec] = raw
    return found


def standings(world: World) -> dict[str, tuple[str, str]]:
    """(address status, membership status on the default list) by address."""
    query = sa.select(schema.subscribers.c.email, schema.subscribers.c.status, schema.memberships.c.status).join(
        schema.memberships, schema.memberships.c.subscriber_id == schema.subscribers.c.id
    )
    with world.store.read() as conn:
        return {row[0]: (row[1], row[2]) for row in conn.execute(query)}


def stored_events(world: World) -> list[dict]:
    query = (
        sa.select(schema.events, schema.subscribers.c.email)
        .join(schema.subscribers, schema.subscribers.c.id == schema.events.c.subscriber_id)
        .order_by(schema.events.c.id)
    )
    with world.store.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


@pytest.fixture
def sent_world(world: World, tmp_path: Path) -> World:
    world.configure("newsletter", unsubscribe_mailto=MAILTO)
    world.add_subscribers(8)
    summary = world.send()
    assert summary.sent == 8
    return world


def returned(world: World) -> dict[str, bytes]:
    """The mail a week of sending brings back, and some that is not feedback at all, by name."""
    sent = sent_messages(world)
    # A bounce about an address nobody here has, of a message that is not ours.
    stranger = b"Message-ID: <other@elsewhere.example.net>\r\nTo: nobody@example.net\r\n\r\nhi\r\n"
    mail = {
        "1.postfix": returned_mail.postfix_bounce(sent["reader1@example.org"], "reader1@example.org"),
        "2.exim": returned_mail.exim_bounce(sent["reader2@example.org"], "reader2@example.org"),
        # Exim again, but the remote refused the message on policy (5.7.1): not the address's fault.
        "3.exim-policy": returned_mail.exim_bounce(
            sent["reader3@example.org"], "reader3@example.org", reply="550 5.7.1 Message rejected as spam"
        ),
        "4.delay": returned_mail.postfix_delay(sent["reader4@example.org"], "reader4@example.org"),
        "5.arf": returned_mail.arf_report(sent["reader5@example.org"], "reader5@example.org"),
        "6.mailto": returned_mail.mailto_unsubscribe(sent["reader6@example.org"], "someone@example.net"),
        "7.stranger": returned_mail.postfix_bounce(stranger, "nobody@example.net", queue_id="5B5B5B5B5B"),
    }
    mail.update({f"9.{name}": raw for name, raw in returned_mail.JUNK.items()})
    return mail


def fill_maildir(world: World, maildir: Path) -> None:
    for name, raw in returned(world).items():
        deliver(maildir, name, raw)


FIRST_SUMMARY = (
    "10 read: applied 3 bounce, 1 complaint, 1 delay, 1 unsubscribe; 0 already seen; "
    "1 about no message of ours; 3 left in the mailbox (not readable as feedback); "
    "4 subscriber(s) suppressed or unsubscribed"
)
SECOND_SUMMARY = (
    "3 read: applied nothing; 0 already seen; 0 about no message of ours; "
    "3 left in the mailbox (not readable as feedback)"
)


def assert_applied_once(world: World) -> tuple[dict, list[dict]]:
    """The standings and events that `returned(world)` must leave; returns them."""
    standing = standings(world)
    assert standing["reader1@example.org"] == (schema.BOUNCED, schema.ACTIVE)  # Postfix 5.1.1
    assert standing["reader2@example.org"] == (schema.BOUNCED, schema.ACTIVE)  # Exim 5.0.0, reply 5.2.1
    assert standing["reader3@example.org"] == (schema.ACTIVE, schema.ACTIVE)  # 5.7.1: the message, not the address
    assert standing["reader4@example.org"] == (schema.ACTIVE, schema.ACTIVE)  # only delayed
    assert standing["reader5@example.org"] == (schema.COMPLAINED, schema.ACTIVE)
    assert standing["reader6@example.org"] == (schema.ACTIVE, schema.UNSUBSCRIBED)
    untouched = {address for address, pair in standing.items() if pair == (schema.ACTIVE, schema.ACTIVE)}
    assert untouched == {f"reader{n}@example.org" for n in (0, 3, 4, 7)}
    events = stored_events(world)
    assert [(e["kind"], e["email"]) for e in events] == [
        (schema.BOUNCE, "reader1@example.org"),
        (schema.BOUNCE, "reader2@example.org"),
        (schema.BOUNCE, "reader3@example.org"),
        (schema.DELIVERY_DELAY, "reader4@example.org"),
        (schema.COMPLAINT, "reader5@example.org"),
        (schema.UNSUBSCRIBE, "reader6@example.org"),
    ]
    return standing, events


def test_reading_a_maildir_applies_bounces_complaints_and_unsubscribes_once_and_leaves_the_rest(
    sent_world: World, tmp_path: Path
):
    world = sent_world
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    fill_maildir(world, maildir)

    result = world.cli("events", "inbox", "--once")

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == FIRST_SUMMARY
    standing, events = assert_applied_once(world)
    deliveries = world.deliveries()
    by_address = {row.email: subscriber_id for subscriber_id, row in deliveries.items()}
    # Each on its ledger row, found by the Message-ID the report quotes (or the signed token).
    assert all(e["issue_id"] is not None and e["delivery_id"] is not None for e in events)
    assert {e["subscriber_id"] for e in events} == {by_address[f"reader{n}@example.org"] for n in range(1, 7)}
    bounce1, bounce2, bounce3 = events[0]["detail"], events[1]["detail"], events[2]["detail"]
    assert (bounce1["source"], bounce1["permanent"], bounce1["bounce_subtype"]) == ("inbox", True, "NoEmail")
    assert bounce1["detail"].startswith("5.1.1 smtp; 550 5.1.1")
    assert (bounce2["permanent"], bounce2["detail"].split()[0]) == (True, "5.2.1")
    assert (bounce3["permanent"], bounce3["bounce_subtype"], bounce3["soft"]) == (False, "ContentRejected", False)
    assert events[4]["detail"]["complaint_feedback_type"] == "abuse"
    assert events[5]["detail"]["method"] == schema.BY_MAILTO and events[5]["detail"]["lists"] == ["default"]

    # Applied mail moved aside; what could not be read is where it was.
    assert names_in(maildir / "new") == ["9.broken-report", "9.garbage", "9.person"]
    assert names_in(maildir / APPLIED / "cur") == [
        "1.postfix",
        "2.exim",
        "3.exim-policy",
        "4.delay",
        "5.arf",
        "6.mailto",
        "7.stranger",
    ]

    # Again: nothing changes, and the junk is still counted.
    again = world.cli("events", "inbox", "--once")
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1] == SECOND_SUMMARY
    assert standings(world) == standing
    assert stored_events(world) == events
    assert names_in(maildir / "new") == ["9.broken-report", "9.garbage", "9.person"]


def test_a_mail_read_again_after_a_crash_before_it_was_moved_is_already_seen(sent_world: World, tmp_path: Path):
    world = sent_world
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    sent = sent_messages(world)
    bounce = returned_mail.postfix_bounce(sent["reader1@example.org"], "reader1@example.org")
    deliver(maildir, "1.postfix", bounce)
    assert world.cli("events", "inbox", "--once").returncode == 0
    events = stored_events(world)
    # The reader was stopped after its commit and before the move: the mail is still there.
    deliver(maildir, "1.postfix-again", bounce)

    result = world.cli("events", "inbox", "--once")

    assert result.returncode == 0, result.stderr
    assert "1 read: applied nothing; 1 already seen;" in result.stderr
    assert stored_events(world) == events
    assert names_in(maildir / "new") == []


def test_a_mailto_unsubscribe_leaves_only_the_list_of_its_issue(sent_world: World, tmp_path: Path):
    world = sent_world
    reader = world.deliveries()
    reader6 = next(sid for sid, row in reader.items() if row.email == "reader6@example.org")
    from newsletter.store.lists import get_or_create_list

    with world.store.begin() as conn:
        weekly = get_or_create_list(conn, "weekly")
        conn.execute(
            schema.memberships.insert().values(
                list_id=weekly,
                subscriber_id=reader6,
                status=schema.ACTIVE,
                created_at=schema.utcnow(),
                changed_at=schema.utcnow(),
                change_source="test",
            )
        )
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    deliver(
        maildir,
        "6.mailto",
        returned_mail.mailto_unsubscribe(sent_messages(world)["reader6@example.org"], "x@example.net"),
    )

    assert world.cli("events", "inbox", "--once").returncode == 0

    query = sa.select(schema.lists.c.slug, schema.memberships.c.status, schema.memberships.c.change_source).join(
        schema.lists, schema.lists.c.id == schema.memberships.c.list_id
    )
    with world.store.read() as conn:
        rows = {
            row[0]: (row[1], row[2]) for row in conn.execute(query.where(schema.memberships.c.subscriber_id == reader6))
        }
    assert rows == {"default": (schema.UNSUBSCRIBED, schema.BY_MAILTO), "weekly": (schema.ACTIVE, "test")}


def test_a_mail_to_the_unsubscribe_address_with_a_forged_token_is_left_and_changes_nothing(
    sent_world: World, tmp_path: Path
):
    world = sent_world
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    genuine = returned_mail.mailto_unsubscribe(sent_messages(world)["reader6@example.org"], "x@example.net")
    subject = next(line for line in genuine.split(b"\r\n") if line.startswith(b"Subject: "))
    token = subject.split()[-1]
    forged = genuine.replace(token, token[:-3] + (b"AAA" if not token.endswith(b"AAA") else b"BBB"))
    deliver(maildir, "forged", forged)
    before = standings(world)

    result = world.cli("events", "inbox", "--once")

    assert result.returncode == 0
    assert "without a valid unsubscribe token" in result.stdout
    assert standings(world) == before and stored_events(world) == []
    assert names_in(maildir / "new") == ["forged"]


def test_a_missing_maildir_is_one_line_and_exit_1(sent_world: World, tmp_path: Path):
    world = sent_world
    world.configure("events.inbox", url=f"maildir://{tmp_path / 'nowhere'}")
    result = world.cli("events", "inbox", "--once")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"error: maildir://{tmp_path / 'nowhere'}: not a Maildir (it needs new/, cur/ and tmp/)"
    )


def test_an_unknown_mailbox_scheme_names_the_key(sent_world: World):
    sent_world.configure("events.inbox", url="pop3://bounces@mail.example.com/")
    result = sent_world.cli("events", "inbox", "--once")
    assert result.returncode == 1
    assert "events.inbox.url" in result.stderr and "Traceback" not in result.stderr


def test_without_our_message_id_a_bounce_finds_the_subscriber_by_original_recipient_not_the_forward(
    sent_world: World, tmp_path: Path
):
    world = sent_world
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    # The original's headers are not ours (an MTA that rewrote them, or a forward's copy).
    foreign = b"Message-ID: <rewritten-1@relay.example.net>\r\nTo: reader1@example.org\r\n\r\n"
    deliver(
        maildir,
        "forwarded",
        returned_mail.postfix_bounce(foreign, "reader1@example.org", final_recipient="reader-one@example.net"),
    )

    assert world.cli("events", "inbox", "--once").returncode == 0

    assert standings(world)["reader1@example.org"] == (schema.BOUNCED, schema.ACTIVE)
    [event] = stored_events(world)
    # About the address, not a ledger row: no Message-ID of ours named one.
    assert (event["kind"], event["email"], event["issue_id"], event["delivery_id"]) == (
        schema.BOUNCE,
        "reader1@example.org",
        None,
        None,
    )


def test_a_bounce_naming_only_an_address_we_did_not_mail_lately_suppresses_nobody(sent_world: World, tmp_path: Path):
    """Anyone can mail the bounce mailbox: a report without our Message-ID counts only for
    someone we sent mail to in the last 14 days."""
    world = sent_world
    with world.store.begin() as conn:
        # reader3 was last mailed three weeks ago; reader4 today.
        reader3 = conn.execute(
            sa.select(schema.subscribers.c.id).where(schema.subscribers.c.email == "reader3@example.org")
        ).scalar_one()
        conn.execute(
            sa.update(schema.deliveries)
            .where(schema.deliveries.c.subscriber_id == reader3)
            .values(sent_at=schema.utcnow() - timedelta(days=21))
        )
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    for name, address in (("stale", "reader3@example.org"), ("fresh", "reader4@example.org")):
        foreign = f"Message-ID: <forged-{name}@attacker.example.net>\r\nTo: {address}\r\n\r\n".encode()
        deliver(maildir, name, returned_mail.postfix_bounce(foreign, address))

    result = world.cli("events", "inbox", "--once")

    assert result.returncode == 0, result.stderr
    assert standings(world)["reader3@example.org"] == (schema.ACTIVE, schema.ACTIVE)
    assert standings(world)["reader4@example.org"] == (schema.BOUNCED, schema.ACTIVE)
    assert [event["email"] for event in stored_events(world)] == ["reader4@example.org"]


def test_an_exim_bounce_without_a_delivery_status_part_is_read_from_x_failed_recipients(
    sent_world: World, tmp_path: Path
):
    world = sent_world
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    deliver(
        maildir,
        "exim",
        returned_mail.exim_plain_bounce(sent_messages(world)["reader2@example.org"], "reader2@example.org"),
    )

    result = world.cli("events", "inbox", "--once")

    assert result.returncode == 0, result.stderr
    assert standings(world)["reader2@example.org"] == (schema.BOUNCED, schema.ACTIVE)
    [event] = stored_events(world)
    assert event["delivery_id"] is not None  # the quoted Message-ID found its row
    assert names_in(maildir / "new") == []


def test_a_not_spam_report_suppresses_nobody_and_an_auth_failure_report_is_left(sent_world: World, tmp_path: Path):
    world = sent_world
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    sent = sent_messages(world)
    deliver(
        maildir,
        "not-spam",
        returned_mail.arf_report(sent["reader5@example.org"], "reader5@example.org", feedback_type="not-spam"),
    )
    deliver(
        maildir,
        "dmarc",
        returned_mail.arf_report(sent["reader6@example.org"], "reader6@example.org", feedback_type="auth-failure"),
    )

    result = world.cli("events", "inbox", "--once")

    assert result.returncode == 0, result.stderr
    assert "applied 1 complaint" in result.stderr and "1 left in the mailbox" in result.stderr
    assert "not a complaint" in result.stdout
    standing = standings(world)
    assert standing["reader5@example.org"] == standing["reader6@example.org"] == (schema.ACTIVE, schema.ACTIVE)
    assert [(e["kind"], e["email"]) for e in stored_events(world)] == [(schema.COMPLAINT, "reader5@example.org")]
    assert names_in(maildir / "new") == ["dmarc"]


def test_watching_applies_mail_as_it_arrives_and_stops_cleanly_on_sigterm(sent_world: World, tmp_path: Path):
    world = sent_world
    maildir = make_maildir(tmp_path / "Maildir")
    world.configure("events.inbox", url=f"maildir://{maildir}")
    watcher = world.start_newsletter("events", "inbox", "--interval", "1")
    try:
        time.sleep(0.5)
        deliver(
            maildir,
            "1.postfix",
            returned_mail.postfix_bounce(sent_messages(world)["reader1@example.org"], "reader1@example.org"),
        )
        deadline = time.monotonic() + 60
        while names_in(maildir / "new") and time.monotonic() < deadline:
            assert watcher.poll() is None, watcher.communicate()
            time.sleep(0.1)
        assert names_in(maildir / APPLIED / "cur") == ["1.postfix"]
        assert standings(world)["reader1@example.org"] == (schema.BOUNCED, schema.ACTIVE)
    finally:
        watcher.send_signal(signal.SIGTERM)
        _, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert err.strip().splitlines()[-1].startswith("1 read: applied 1 bounce;")
    assert err.strip().endswith("; stopped by a signal")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("5.1.1", ("Permanent", "NoEmail")),
        ("5.1.10", ("Permanent", "NoEmail")),
        ("5.2.1", ("Permanent", "General")),
        ("5.2.2", ("Transient", "MailboxFull")),
        ("5.3.4", ("Transient", "MessageTooLarge")),
        ("5.7.1", ("Transient", "ContentRejected")),
        ("5.7.26", ("Transient", "ContentRejected")),
        ("4.4.7", ("Transient", "General")),
        ("5.3.2", ("Undetermined", "General")),
        # Routing, and the sender's own address: nothing sure about the reader's address,
        # as our SMTP server's replies with these codes are read (transports/smtp_replies.py).
        ("5.4.4", ("Undetermined", "General")),
        ("5.1.8", ("Undetermined", "General")),
        (None, ("Undetermined", "Undetermined")),
    ],
)
def test_status_codes_read_as_rfc_3463_says(status, expected):
    assert bounce_kind(status) == expected


def test_the_fixture_bounces_parse_as_the_email_package_reads_them():
    # Guards the fixtures themselves: a typo in a boundary would make every test above
    # test the junk path instead.
    raw = returned_mail.postfix_bounce(b"Message-ID: <1.2.abc@example.com>\r\n\r\nx", "r@example.org")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]


def imap_env(dovecot, *, trust: bool = True) -> dict[str, str]:
    env = {"NEWSLETTER_INBOX_PASSWORD": dovecot.password}
    if trust:
        # OpenSSL reads the trust store from here when the default context loads it.
        env["SSL_CERT_FILE"] = str(dovecot.cert_file)
    return env


def subjects(messages: list[bytes]) -> list[str]:
    parser = BytesParser(policy=policy.default)
    return sorted(str(parser.parsebytes(raw, headersonly=True).get("Subject", "(none)")) for raw in messages)


def test_reading_an_imaps_mailbox_applies_each_mail_once_and_leaves_the_junk_in_the_inbox(sent_world: World, dovecot):
    world = sent_world
    mail = returned(world)
    for raw in mail.values():
        dovecot.append(raw)
    world.configure("events.inbox", url=dovecot.url("imaps"))

    result = world.cli("events", "inbox", "--once", env=imap_env(dovecot))

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == FIRST_SUMMARY
    standing, events = assert_applied_once(world)
    junk = [raw for name, raw in mail.items() if name.startswith("9.")]
    applied = [raw for name, raw in mail.items() if not name.startswith("9.")]
    assert subjects(dovecot.messages("INBOX")) == subjects(junk)
    assert subjects(dovecot.messages("newsletter-applied")) == subjects(applied)

    again = world.cli("events", "inbox", "--once", env=imap_env(dovecot))

    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1] == SECOND_SUMMARY
    assert (standings(world), stored_events(world)) == (standing, events)
    assert subjects(dovecot.messages("INBOX")) == subjects(junk)
    assert len(dovecot.messages("newsletter-applied")) == len(applied)


def test_plain_imap_on_loopback_reads_the_same_way(sent_world: World, dovecot):
    world = sent_world
    sent = sent_messages(world)
    dovecot.append(returned_mail.postfix_bounce(sent["reader1@example.org"], "reader1@example.org"))
    dovecot.append(returned_mail.JUNK["person"])
    world.configure("events.inbox", url=dovecot.url("imap"))

    result = world.cli("events", "inbox", "--once", env=imap_env(dovecot, trust=False))

    assert result.returncode == 0, result.stderr
    assert "2 read: applied 1 bounce; 0 already seen; 0 about no message of ours; 1 left" in result.stderr
    assert standings(world)["reader1@example.org"] == (schema.BOUNCED, schema.ACTIVE)
    assert subjects(dovecot.messages("INBOX")) == ["Re: your newsletter"]
    # Left unread: the reader fetched with BODY.PEEK, so a person still sees it as new.
    connection = dovecot.client()
    try:
        connection.select("INBOX", readonly=True)
        _, data = connection.uid("SEARCH", "UNSEEN")
        assert len(data[0].split()) == 1
    finally:
        connection.logout()


def test_an_imaps_server_whose_certificate_is_not_trusted_is_refused_in_one_line(sent_world: World, dovecot):
    dovecot.append(returned_mail.JUNK["person"])
    sent_world.configure("events.inbox", url=dovecot.url("imaps"))

    result = sent_world.cli("events", "inbox", "--once", env=imap_env(dovecot, trust=False))

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: imaps://{dovecot.user}@127.0.0.1:{dovecot.imaps_port}/INBOX: cannot connect: ")
    assert "CERTIFICATE_VERIFY_FAILED" in line


def test_a_wrong_imap_password_is_one_line_and_exit_1(sent_world: World, dovecot):
    sent_world.configure("events.inbox", url=dovecot.url("imap"))
    result = sent_world.cli("events", "inbox", "--once", env={"NEWSLETTER_INBOX_PASSWORD": "wrong"})
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        f"error: imap://{dovecot.user}@127.0.0.1:{dovecot.imap_port}/INBOX: login refused"
    )


def test_plain_imap_to_another_machine_is_refused_before_connecting(sent_world: World):
    sent_world.configure("events.inbox", url="imap://bounces@mail.example.com/INBOX")
    result = sent_world.cli("events", "inbox", "--once", env={"NEWSLETTER_INBOX_PASSWORD": "x"})
    assert result.returncode == 1
    assert "sends the password in clear" in result.stderr and "events.inbox.url" in result.stderr


def test_without_a_mailbox_configured_the_command_says_which_key_to_set(sent_world: World):
    result = sent_world.cli("events", "inbox", "--once")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "events.inbox.url" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("without", [("MOVE",), ("MOVE", "UIDPLUS")], ids=["no-move", "no-move-no-uidplus"])
def test_a_server_without_move_gets_copy_delete_and_expunge(sent_world: World, without):
    from tests.dovecot_server import start_dovecot

    world = sent_world
    sent = sent_messages(world)
    for server in start_dovecot(without=without):
        connection = server.client()
        _, announced = connection.capability()
        connection.logout()
        assert not set(without) & set(announced[0].decode().split())
        server.append(returned_mail.postfix_bounce(sent["reader1@example.org"], "reader1@example.org"))
        server.append(returned_mail.JUNK["person"])
        server.append(returned_mail.arf_report(sent["reader5@example.org"], "reader5@example.org"))
        world.configure("events.inbox", url=server.url("imap"))

        result = world.cli("events", "inbox", "--once", env={"NEWSLETTER_INBOX_PASSWORD": server.password})

        assert result.returncode == 0, result.stderr
        assert "3 read: applied 1 bounce, 1 complaint;" in result.stderr
        assert subjects(server.messages("INBOX")) == ["Re: your newsletter"]
        assert len(server.messages("newsletter-applied")) == 2


def test_mail_flagged_deleted_is_not_read(sent_world: World, dovecot):
    world = sent_world
    dovecot.append(returned_mail.postfix_bounce(sent_messages(world)["reader1@example.org"], "reader1@example.org"))
    connection = dovecot.client()
    try:
        connection.select("INBOX")
        connection.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
    finally:
        connection.logout()
    world.configure("events.inbox", url=dovecot.url("imap"))

    result = world.cli("events", "inbox", "--once", env={"NEWSLETTER_INBOX_PASSWORD": dovecot.password})

    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("0 read: applied nothing;")
    assert standings(world)["reader1@example.org"] == (schema.ACTIVE, schema.ACTIVE)
