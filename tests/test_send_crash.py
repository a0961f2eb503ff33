"""Crash safety: `kill -9` at any moment, run again, and everyone has exactly one message.

The big tests run the real command in a subprocess and SIGKILL it mid-send (the runs after
the kill are the same command in this process, `world.cli`); the small ones
recreate, in-process and exactly, the two states a crash can leave a row in (claimed but not
sent; sent but not recorded) and check that the next run settles each correctly.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections import Counter

import pytest

from newsletter.mail.message import MessageFactory, Recipient
from newsletter.sending.campaign import OUTBOX_CLAIM_WINDOW, run_send
from newsletter.store import ledger
from newsletter.tokens import Links, Tokens
from newsletter.transports.outbox import OutboxTransport

pytest.register_assert_rewrite("tests.send_world", "tests.transport_servers")
from tests.send_world import World
from tests.transport_servers import LocalSmtp

pytest_plugins = ["tests.transport_servers", "tests.send_world"]


def wait_until(condition, *, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the send ended (exit {process.returncode}) before the kill point:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the kill point")
        time.sleep(0.01)


def check_one_each_in_the_outbox(world: World, subscriber_ids: list[int]) -> None:
    """Every subscriber has exactly one file, whose Message-ID is the one in the ledger."""
    rows = world.deliveries()
    by_address = {row.email: row for row in rows.values()}
    seen: Counter[str] = Counter()
    for headers in world.outbox_headers():
        address = headers["To"].addresses[0].addr_spec
        seen[address] += 1
        assert headers["Message-ID"] == by_address[address].message_id
    assert set(seen) == {rows[i].email for i in subscriber_ids}
    assert {n for n in seen.values()} == {1}, [a for a, n in seen.items() if n > 1][:10]


def test_sigkill_at_two_points_then_resume_sends_everyone_exactly_once(world: World):
    ids = world.add_subscribers(2_000)
    issue = str(world.issue_file)
    observed = []

    # Kill 1: early, once the snapshot is written and the first messages are out.
    first = world.start_newsletter("send", issue, "--yes", "--workers", "4")
    wait_until(lambda: world.outbox_count() >= 5, process=first)
    world.kill(first)
    observed.append((world.outbox_count(), world.statuses()))

    # Kill 2: around the middle, with another number of workers.
    second = world.start_newsletter("send", issue, "--yes", "--workers", "2")
    wait_until(lambda: world.outbox_count() >= 1_000, process=second)
    world.kill(second)
    observed.append((world.outbox_count(), world.statuses()))

    for files, statuses in observed:
        # Nothing is ever recorded sent that is not in the outbox; what is in the outbox
        # and not recorded sent is in flight (`sending`), at most the outbox's claim window.
        assert statuses.get("sent", 0) <= files <= statuses.get("sent", 0) + statuses.get("sending", 0)
        assert statuses.get("sending", 0) <= OUTBOX_CLAIM_WINDOW
        assert sum(statuses.values()) == 2_000
    assert observed[0][0] < 1_000 <= observed[1][0] < 2_000

    last = world.cli("send", issue, "--yes", "--workers", "4")
    assert last.returncode == 0, last.stderr
    if observed[1][1].get("sending"):
        # The resume says how many of the messages in flight had arrived.
        assert re.search(r"\d+ messages were in flight .*: \d+ had reached the outbox", last.stderr), last.stderr
    assert "sent completely (2000 in all)" in last.stdout
    assert world.statuses() == {"sent": 2_000}
    check_one_each_in_the_outbox(world, ids)


def test_sigkill_with_smtp_reports_uncertain_rows_and_resends_nobody(world: World, local_smtp: LocalSmtp):
    world.use_smtp(local_smtp)
    ids = world.add_subscribers(250)
    issue = str(world.issue_file)

    first = world.start_newsletter("send", issue, "--yes", "--workers", "4")
    wait_until(lambda: len(local_smtp.received) >= 50, process=first)
    world.kill(first)
    uncertain = {row.email for row in world.deliveries().values() if row.status == "sending"}
    assert 1 <= len(uncertain) <= 8
    received_before = len(local_smtp.received)

    again = world.cli("send", issue, "--yes", "--workers", "4")
    # Reported once, in one wording; the issue is incomplete (exit 75), not "sent completely".
    assert again.stderr.count("may or may not have gone out") == 1
    assert f"{len(uncertain)} messages may or may not have gone out" in again.stderr
    assert "not resent" in again.stderr and "in flight" in again.stderr
    assert "sent completely" not in again.stdout and "incomplete" in again.stdout
    assert again.returncode == 75

    counted = Counter(rcpt for delivery in local_smtp.received for rcpt in delivery.rcpt_tos)
    rows = world.deliveries()
    everyone = {rows[i].email for i in ids}
    for address in everyone - uncertain:
        assert counted[address] == 1, address
    for address in uncertain:
        # Sent before the kill or not at all, and not again since.
        assert counted[address] <= 1
        assert rows[next(i for i in ids if rows[i].email == address)].status == "sending"
    assert sum(counted[a] for a in uncertain) == sum(
        1 for d in local_smtp.received[:received_before] for r in d.rcpt_tos if r in uncertain
    )
    assert world.statuses() == {"sent": 250 - len(uncertain), "sending": len(uncertain)}

    # A third run still resends nobody, and says why.
    third = world.cli("send", issue, "--yes")
    assert "not resent" in third.stderr and "sent completely" not in third.stdout
    assert "nothing to do" not in third.stdout
    assert (
        f"({250 - len(uncertain)} sent, {len(uncertain)} not yet: 0 queued, 0 failed temporarily, {len(uncertain)} uncertain)"
        in third.stdout
    )
    assert third.returncode == 75
    assert len(local_smtp.received) == sum(counted.values())


# On PostgreSQL a second sender joins the first (tests/test_senders.py).
@pytest.mark.only_on("sqlite")
def test_a_second_send_while_one_is_running_is_refused(world: World):
    world.add_subscribers(120)
    issue = str(world.issue_file)
    running = world.start_newsletter("send", issue, "--yes", "--rate", "10")
    wait_until(lambda: world.outbox_count() >= 3, process=running)

    refused = world.cli("send", issue, "--yes")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert f"another send of '2026-11-30' is running ({socket.gethostname()}:{running.pid})" in lines[-1]
    assert "joining a running send needs PostgreSQL" in lines[-1]
    # Its rows are the live sender's, not "in flight when an earlier send stopped".
    assert "in flight" not in refused.stderr
    before = world.outbox_count()

    # SIGTERM stops the first like Ctrl-C: in-flight messages finish, the rest stay queued.
    running.send_signal(signal.SIGTERM)
    _out, err = running.communicate(timeout=60)
    assert "stopped: interrupted" in err and "still queued" in err
    statuses = world.statuses()
    assert "sending" not in statuses and statuses["queued"] > 0
    assert world.outbox_count() == statuses["sent"] >= before

    finished = world.cli("send", issue, "--yes", "--workers", "4")
    assert finished.returncode == 0, finished.stderr
    assert world.statuses() == {"sent": 120}
    check_one_each_in_the_outbox(world, list(world.deliveries()))


# ---------------------------------------------------------------------------------------
# The two in-flight states, made exactly
# ---------------------------------------------------------------------------------------


def crash_mid_window(world: World, *, deliver: list[int], claim: int) -> tuple[list[int], dict[int, str]]:
    """The ledger and outbox as a `kill -9` leaves them: `claim` rows moved to `sending`
    (as the campaign's claim does), of which those at positions `deliver` were also
    written to the outbox before the process died; nothing recorded after."""
    plan = world.plan()
    with world.store.begin() as conn:
        ledger.snapshot_audience(conn, plan.stored.id, plan.list_id)
    factory = MessageFactory(
        plan.settings,
        plan.rendered,
        issue_id=plan.stored.id,
        issue_uid=plan.stored.uid,
        list_slug=plan.list_slug,
        links=Links(plan.settings.base_url, Tokens(plan.settings.newsletter.secret)),
    )
    with world.store.begin() as conn:
        claimed, _ = ledger.claim(conn, plan.stored.id, claim, factory.message_id)
    outbox = OutboxTransport(world.outbox)
    for position in deliver:
        item = claimed[position]
        message = factory.build(Recipient(item.subscriber_id, item.email, item.name), message_id=item.message_id)
        outbox.send(message.data, sender=plan.settings.from_address, recipient=message.recipient)
    return [item.subscriber_id for item in claimed], {item.subscriber_id: item.email for item in claimed}


def test_crash_between_claim_and_send_resends_nobody_and_skips_nobody(world: World):
    ids = world.add_subscribers(10)
    _claimed, _ = crash_mid_window(world, deliver=[], claim=4)
    assert world.statuses() == {"sending": 4, "queued": 6}

    summary = world.send()
    assert summary.sent == 10 and summary.complete
    check_one_each_in_the_outbox(world, ids)


def test_crash_between_send_and_record_resends_nobody(world: World):
    ids = world.add_subscribers(10)
    _claimed, _emails = crash_mid_window(world, deliver=[0, 2], claim=4)
    assert len(world.outbox_files()) == 2

    plan = world.plan()
    summary = run_send(plan)
    # Two were settled as sent from the outbox, two requeued and sent, six sent fresh.
    assert summary.sent == 8 and summary.complete
    assert any("2 had reached the outbox, 2 had not" in note for note in summary.notes), summary.notes
    assert world.statuses() == {"sent": 10}
    check_one_each_in_the_outbox(world, ids)


def test_without_a_recording_transport_uncertain_rows_wait_for_resend_uncertain(world: World, local_smtp: LocalSmtp):
    ids = world.add_subscribers(6)
    claimed, _emails = crash_mid_window(world, deliver=[], claim=2)
    world.use_smtp(local_smtp)

    summary = world.send()
    assert summary.sent == 4 and summary.uncertain == 2 and not summary.complete
    assert sorted(r for d in local_smtp.received for r in d.rcpt_tos) == sorted(
        world.deliveries()[i].email for i in ids if i not in claimed
    )

    resent = world.send(resend_uncertain=True)
    assert resent.sent == 2 and resent.complete
    assert Counter(r for d in local_smtp.received for r in d.rcpt_tos) == Counter(
        world.deliveries()[i].email for i in ids
    )
