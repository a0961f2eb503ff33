"""Several senders of one issue on PostgreSQL (issue 14): real `newsletter send` processes
that join each other, one killed with SIGKILL, two resumes racing for a dead sender's rows.

Everything here runs against the PostgreSQL server (NEWSLETTER_TEST_DATABASE_URL); on
SQLite a second sender is refused (tests/test_send_crash.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

import pytest
import sqlalchemy as sa

from newsletter.store.schema import issues, senders

pytest.register_assert_rewrite("tests.send_world")
from tests.send_world import World
from tests.test_send_crash import check_one_each_in_the_outbox, wait_until

pytest_plugins = ["tests.send_world"]


# Every test here is PostgreSQL's: that is where senders join and share a rate.
pytestmark = pytest.mark.only_on("postgresql")


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def leases(world: World) -> list[dict]:
    with world.store.read() as conn:
        return [dict(row) for row in conn.execute(sa.select(senders).order_by(senders.c.id)).mappings()]


def test_three_senders_share_one_issue_and_send_everyone_once(world: World):
    ids = world.add_subscribers(5_000)
    issue = str(world.issue_file)
    # Paced so that none of them is through the list before the others have started (an
    # interpreter takes seconds to start on a loaded machine).
    running = [world.start_newsletter("send", issue, "--yes", "--rate", "150") for _ in range(3)]
    results = [finish(process) for process in running]

    for code, _out, err in results:
        assert code == 0, err
    assert world.statuses() == {"sent": 5_000}
    check_one_each_in_the_outbox(world, ids)
    assert world.issue_row()["completed_at"] is not None
    # Each sender sent a share, and the shares add up.
    shares = {row["name"]: row["sent"] for row in leases(world)}
    assert set(shares) == {f"{socket.gethostname()}:{process.pid}" for process in running}
    assert all(share > 0 for share in shares.values()), shares
    assert sum(shares.values()) == 5_000
    assert all(row["ended_at"] is not None and not row["lost"] for row in leases(world))
    # One of them finished the issue; each says what it sent itself.
    assert sum("sent completely (5000 in all)" in out for _code, out, _err in results) >= 1
    for (_code, out, _err), process in zip(results, running, strict=True):
        assert f"sent {shares[f'{socket.gethostname()}:{process.pid}']}," in out


def test_a_sender_killed_mid_send_leaves_the_others_to_finish(world: World):
    ids = world.add_subscribers(5_000)
    issue = str(world.issue_file)
    running = [world.start_newsletter("send", issue, "--yes", "--rate", "250") for _ in range(3)]
    victim, survivors = running[0], running[1:]
    wait_until(lambda: world.outbox_count() >= 1_500, process=victim)
    world.kill(victim)
    held = world.statuses().get("sending", 0)
    results = [finish(process) for process in survivors]

    for code, _out, err in results:
        assert code == 0, err
    victim_name = f"{socket.gethostname()}:{victim.pid}"
    # The dead sender's rows in flight were reported, once, and settled from the outbox.
    notes = [line for _c, _o, err in results for line in err.splitlines() if f"sender {victim_name}" in line]
    assert len(notes) == 1, notes
    assert "messages were in flight when sender" in notes[0] and "had reached the outbox" in notes[0]
    assert held > 0
    by_name = {row["name"]: row for row in leases(world)}
    assert by_name[victim_name]["lost"] and by_name[victim_name]["ended_at"] is not None
    assert world.statuses() == {"sent": 5_000}
    check_one_each_in_the_outbox(world, ids)

    again = world.cli("send", issue, "--yes", "--resend-uncertain")
    assert again.returncode == 0, again.stderr
    assert "already sent completely (5000 sent)" in again.stdout
    check_one_each_in_the_outbox(world, ids)


def test_two_resumes_racing_settle_a_dead_senders_rows_once(world: World):
    """Issue 9's finding: with the issue row held by another transaction, two resumes both
    took the lock (check, then set), and both settled the dead sender's rows."""
    ids = world.add_subscribers(1_500)
    issue = str(world.issue_file)
    first = world.start_newsletter("send", issue, "--yes", "--rate", "400")
    wait_until(lambda: world.outbox_count() >= 300, process=first)
    world.kill(first)
    in_flight = world.statuses().get("sending", 0)
    assert in_flight > 0

    # Hold the issue's row, as a long transaction elsewhere would (the schedule runner, an
    # admin's session), while both resumes start and reach the lock.
    holder = world.store.engine.connect()
    transaction = holder.begin()
    holder.execute(sa.select(issues.c.id).with_for_update())
    resumes = [world.start_newsletter("send", issue, "--yes") for _ in range(2)]
    waiting = threading.Event()

    def both_wait() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with world.store.read() as conn:
                blocked = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            if blocked >= 2:
                waiting.set()
                return
            if any(process.poll() is not None for process in resumes):
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=both_wait)
    watcher.start()
    watcher.join()
    transaction.rollback()
    holder.close()
    results = [finish(process) for process in resumes]
    assert waiting.is_set(), [err for _c, _o, err in results]

    for code, _out, err in results:
        assert code == 0, err
    # One of them settled the dead sender's rows, and said so; the other found none.
    reports = [line for _c, _o, err in results for line in err.splitlines() if "had reached the outbox" in line]
    assert len(reports) == 1, [err for _c, _o, err in results]
    assert f"note: {in_flight} messages were in flight when an earlier send stopped: " in reports[0]
    assert world.statuses() == {"sent": 1_500}
    check_one_each_in_the_outbox(world, ids)


def test_a_second_sender_joins_and_says_so(world: World):
    world.add_subscribers(600)
    issue = str(world.issue_file)
    first = world.start_newsletter("send", issue, "--yes", "--rate", "60")
    wait_until(lambda: world.outbox_count() >= 20, process=first)

    second = world.start_newsletter("send", issue, "--yes", "--rate", "60", "--json")
    code, out, err = finish(second)
    first_code, first_out, first_err = finish(first)
    summary = json.loads(out)

    assert code == 0, err
    assert first_code == 0, first_err
    first_name = f"{socket.gethostname()}:{first.pid}"
    assert f"note: joined 1 other sender(s) of '2026-11-30' ({first_name})" in err
    # The live sender's rows are not reported as left by an earlier send.
    assert "when an earlier send stopped" not in err
    assert world.statuses() == {"sent": 600}
    assert world.issue_row()["completed_at"] is not None
    shares = {row["name"]: row["sent"] for row in leases(world)}
    second_name = f"{socket.gethostname()}:{second.pid}"
    assert shares[first_name] > 0 and shares[second_name] > 0
    # --json: what this sender sent, beside the issue's counts.
    assert summary["this_sender"] == {"name": second_name, "sent": shares[second_name]}
    assert summary["ledger"]["total"] == 600 and summary["exit_status"] == 0
    assert "sent completely (600 in all)" in first_out or summary["state"] == "complete"


def test_three_senders_ride_out_the_database_going_away_mid_send(world: World):
    """Issue 9's rule (a brief outage does not abort a send, nothing known goes unrecorded)
    for joined senders: their leases, heartbeats, the search for lost senders and the shared
    rate's slots meet the outage too, not only the claims and records."""
    from tests.cut_relay import CutRelay

    direct = sa.make_url(world.database_url)
    relay = CutRelay(direct.port or 5432)
    # The senders reach the database through the relay; the test's own store does not.
    world.configure("newsletter", database=direct.set(port=relay.port).render_as_string(hide_password=False))
    try:
        ids = world.add_subscribers(3_000)
        issue = str(world.issue_file)
        running = [world.start_newsletter("send", issue, "--yes", "--rate", "200") for _ in range(3)]
        # All three at work, then the database gone for longer than a heartbeat's interval
        # (HEARTBEAT_SECONDS) and more than a shared-rate batch, as a restart would take it.
        wait_until(lambda: len(leases(world)) == 3 and world.outbox_count() >= 300, process=running[0])
        # Cut inside a claim: once the server has answered its SELECT of queued rows, so the
        # claim's UPDATE of them (one psycopg pipeline, SQLAlchemy's executemany) meets the
        # closed connection; psycopg's logger writes a line of its own at that moment, and a
        # cut at a random moment only sometimes finds it.
        relay.cut_after_answer_to(b"::VARCHAR ORDER BY deliveries.id")
        wait_until(lambda: relay.cuts == 1, process=running[0])
        away_from = world.outbox_count()
        time.sleep(8)
        relay.restore()
        results = [finish(process) for process in running]
    finally:
        relay.close()

    for code, out, err in results:
        assert code == 0, out + err
        assert "Traceback" not in err, err
        # Our one line about the outage and none of psycopg's ("error ignored terminating
        # <psycopg.Pipeline [BAD] ...>: the connection is lost"): cli/main.py keeps it out.
        assert "error ignored" not in err and "psycopg" not in err, err
    # Each of them waited for the database and went on (none of them died of it).
    assert all("the database was away" in err for _c, _o, err in results), [err for _c, _o, err in results]
    assert away_from < 3_000
    assert world.statuses() == {"sent": 3_000}
    check_one_each_in_the_outbox(world, ids)
    assert world.issue_row()["completed_at"] is not None
    # Nobody was taken for dead: every lease ended by its own sender, and the shares add up.
    assert all(row["ended_at"] is not None and not row["lost"] for row in leases(world))
    assert sum(row["sent"] for row in leases(world)) == 3_000


def test_a_sender_that_saw_the_database_away_counts_the_others_silence_from_then(world: World):
    """A sender on another machine is judged by its heartbeat; one that could not beat
    because the database was away is not taken for dead by a sender that saw the outage."""
    from datetime import timedelta

    from newsletter.sending.senders import SenderLease
    from newsletter.store import leases as lease_rows
    from newsletter.store import ledger
    from newsletter.store.schema import utcnow

    world.add_subscribers(1)
    stored = world.plan().stored
    elsewhere = "sender.example.com:4242"
    with world.store.begin() as conn:
        other = lease_rows.open_lease(conn, stored.id, elsewhere)
        silent_since = utcnow() - ledger.SENDER_SILENCE - timedelta(seconds=5)
        conn.execute(sa.update(senders).where(senders.c.id == other).values(heartbeat_at=silent_since))
    lease = SenderLease(world.store, stored.id, stored.slug)
    lease.start()
    first = lease.id
    # Run again (a COMMIT whose answer was lost): the same lease, not a second one.
    lease.start()
    assert lease.id == first and len(leases(world)) == 2

    lease.database_away_at = utcnow() - timedelta(seconds=10)
    assert lease.find_lost() == [] and lease.others() == [elsewhere]
    lease.database_away_at = None
    assert lease.find_lost() == [elsewhere] and lease.others() == []


def test_a_live_sender_beats_again_after_an_outage_it_rides_out_before_it_counts_as_silent():
    """The numbers of ledger.SENDER_SILENCE's comment: its last heartbeat's interval, the
    longest outage a sender rides out, the last pause of the ride-out, and room for a round
    of the send's loop on a loaded machine."""
    from newsletter.sending.campaign import HEARTBEAT_SECONDS
    from newsletter.sending.ride_out import DB_PATIENCE, LONGEST_PAUSE
    from newsletter.store import ledger

    silent_at_most = HEARTBEAT_SECONDS + DB_PATIENCE + LONGEST_PAUSE
    assert silent_at_most + 15 <= ledger.SENDER_SILENCE.total_seconds()
