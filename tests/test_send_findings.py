"""The findings of the fault-injection run (issue 9, item 8), each pinned by a test that
failed before its fix: throttling lowers the rate, an unsubscribe while claimed, the
database going away mid-send, a full outbox disk, the reports, the pace at --rate 20.
"""

from __future__ import annotations

from collections import Counter

import pytest

pytest.register_assert_rewrite("tests.send_world", "tests.transport_servers")
from tests.cut_relay import CutRelay
from tests.send_world import SENDER, World, recipients_of
from tests.transport_servers import LocalSes

pytest_plugins = ["tests.transport_servers", "tests.send_world"]


def accepted_in_window(local_ses: LocalSes, start: float, seconds: float = 1.0) -> int:
    return sum(1 for r in local_ses.requests if r.status == 200 and start <= r.at < start + seconds)


def test_throttling_halves_the_rate_then_it_recovers_slowly_and_is_reported(world: World, local_ses: LocalSes):
    local_ses.verify(SENDER)
    local_ses.set_quota(max_send_rate=20)
    world.use_ses(local_ses)
    world.add_subscribers(90)
    # One burst of throttling once the send is under way.
    sent_before = []

    def progress(summary, total):
        if summary.sent >= 20 and not sent_before:
            sent_before.append(summary.sent)
            local_ses.throttle_next(3)

    summary = world.send(progress=progress)

    assert summary.sent == 90 and summary.complete
    (first_refusal,) = [r.at for r in local_ses.requests if r.status == 429][:1]
    # At 20/s about 20 would be accepted in the second after it (19 were, before the fix); at
    # the halved rate (10/s, growing by 2 % of 20/s each second) about 11, and a stall of a
    # loaded machine bunching a few of them into the window still leaves it well under 20.
    assert accepted_in_window(local_ses, first_refusal + 0.1) <= 15
    assert summary.throttled == 1 and summary.lowest_rate == pytest.approx(10)
    counted = recipients_of(d.message for d in local_ses.received())
    assert Counter(counted.values()) == Counter({1: 90})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_halves_once_per_burst_and_grows_back_by_two_percent_a_second():
    import threading

    from newsletter.sending.pacing import Pacer

    clock = Clock()
    pacer = Pacer(20, clock=clock)
    pacer.throttled()
    pacer.throttled()  # the same burst
    assert pacer.rate == 10 and pacer.throttles == 1
    clock.now += 5
    stop = threading.Event()
    stop.set()  # wait() recovers, then returns at once
    pacer.wait(stop)
    assert pacer.rate == pytest.approx(12)
    clock.now += 100
    pacer.wait(stop)
    assert pacer.rate == 20 and pacer.lowest == 10


def test_a_pacer_without_a_rate_takes_half_of_what_it_released_when_throttled():
    import threading

    from newsletter.sending.pacing import Pacer

    clock = Clock()
    pacer = Pacer(None, clock=clock)
    stop = threading.Event()
    for _ in range(30):
        assert pacer.wait(stop)
    pacer.throttled()
    assert pacer.rate == 15


def test_readers_who_unsubscribe_mid_send_at_a_slow_rate_are_not_sent_to(world: World):
    from newsletter.audience.subscribers import unsubscribe

    ids = world.add_subscribers(40)
    leaving = ids[10:]
    left: list[int] = []

    def progress(summary, total):
        if summary.sent >= 3 and not left:
            for subscriber_id in leaving:
                unsubscribe(world.store, subscriber_id=subscriber_id)
            left.extend(leaving)

    summary = world.send(progress=progress, rate=5)

    assert left
    got = recipients_of(world.outbox_headers())
    late = [n for n in range(10, 40) if f"reader{n}@example.org" in got]
    # At 5/s at most about a second's worth (5) were claimed when they left; before the fix
    # the outbox had claimed 200 rows ahead and all 30 got the issue.
    assert len(late) <= 6, late
    assert summary.skipped == 30 - len(late) and summary.complete


def relayed(world: World) -> tuple[CutRelay, str]:
    """A relay to the test's PostgreSQL server (tests/cut_relay.py) and the test database's
    URL through it: a cut takes the database away from this test's connections only, not
    from other tests sharing the server and its database."""
    import sqlalchemy as sa

    direct = sa.make_url(world.database_url)
    relay = CutRelay(direct.port or 5432)
    return relay, direct.set(port=relay.port).render_as_string(hide_password=False)


# The relay stands for a PostgreSQL restart; a SQLite lock past its 30 s busy timeout takes too long.
@pytest.mark.only_on("postgresql")
def test_a_send_rides_out_the_database_dropping_its_connections_and_records_what_it_sent(world: World):
    import threading

    import sqlalchemy as sa

    from newsletter.sending.campaign import run_send
    from newsletter.sending.plan import SendOptions, plan_send
    from newsletter.store import Store

    world.add_subscribers(60)
    relay, url = relayed(world)
    store = Store.open(url)
    back: list[threading.Timer] = []

    def cut_before_recording(conn, cursor, statement, parameters, context, executemany):
        # The moment that matters: messages are out, their outcomes about to be written.
        if back or not (statement.lstrip().startswith("UPDATE deliveries") and "sent_at" in statement):
            return
        relay.cut()
        # Away for a moment, as a restart takes it: this statement and the next tries meet
        # a closed connection, then a refused one.
        back.append(threading.Timer(1.0, relay.restore))
        back[0].start()

    sa.event.listen(store.engine, "before_cursor_execute", cut_before_recording)
    try:
        summary = run_send(plan_send(world.settings, store, world.issue_file, SendOptions(rate=40)))
    finally:
        for timer in back:
            timer.join()
        store.close()
        relay.close()

    assert back, "the relay was never cut: the test did not inject its fault"
    assert summary.database_retries >= 1
    assert summary.sent == 60 and summary.complete and summary.uncertain == 0
    assert world.statuses() == {"sent": 60}
    counted = recipients_of(world.outbox_headers())
    assert Counter(counted.values()) == Counter({1: 60})


@pytest.mark.only_on("postgresql")
def test_a_send_the_database_stays_away_from_past_the_bound_says_it_stopped_not_that_it_went_on(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    """The report of a send that waited for the database and then stopped: it does not say
    "each time the send waited and went on" above its "stopped:" line."""
    import threading
    import time

    from newsletter.sending import shared_rate
    from tests.test_send_crash import wait_until

    world.add_subscribers(200)
    relay, url = relayed(world)
    world.configure("newsletter", database=url)
    # The bound (60 s) cut short for the shared rate's slots only, so that a 4 s outage is
    # longer than it for them: they stop the send, while the claims and records keep their
    # 60 s and 300 s and ride the outage out (nothing the send knows goes unrecorded).
    monkeypatch.setattr(shared_rate, "DB_PATIENCE", 1.0)

    def outage() -> None:
        wait_until(lambda: world.outbox_count() >= 20)
        relay.cut()
        time.sleep(4)
        relay.restore()

    away = threading.Thread(target=outage)
    away.start()
    try:
        result = world.cli("send", str(world.issue_file), "--yes", "--rate", "20")
    finally:
        away.join()
        relay.close()

    assert relay.cuts >= 1, "the relay was never cut: the test did not inject its fault"
    assert result.returncode == 75, result.stdout + result.stderr
    assert "stopped: the database was away for longer than 1 s" in result.stderr, result.stderr
    assert "went on" not in result.stderr, result.stderr
    assert "the send waited and tried again" in result.stderr, result.stderr
    statuses = world.statuses()
    assert set(statuses) == {"sent", "queued"} and statuses["sent"] + statuses["queued"] == 200, statuses
    assert Counter(recipients_of(world.outbox_headers()).values()) == Counter({1: statuses["sent"]})


# The file-size limit would stop SQLite's own file first; PostgreSQL writes elsewhere.
@pytest.mark.only_on("postgresql")
def test_a_full_outbox_leaves_no_partial_files_and_the_next_run_sends_everyone_once(world: World):
    import resource
    import signal
    import subprocess

    world.add_subscribers(5)
    (world.outbox / "tmp").mkdir(parents=True, exist_ok=True)

    def outbox_disk_of_40_kb() -> None:
        # The kernel refuses writes past 40 KB (EFBIG) as a full disk refuses them (ENOSPC):
        # the first part of the message is written, the rest is not.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    full = subprocess.run(
        world.command("send", str(world.issue_file), "--yes"),
        cwd=world.root,
        env=world.environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=outbox_disk_of_40_kb,
        check=False,
    )
    assert full.returncode == 1, full.stdout + full.stderr
    assert "cannot write to the outbox" in full.stderr
    assert list((world.outbox / "tmp").iterdir()) == []
    assert world.outbox_count() == 0

    again = world.cli("send", str(world.issue_file), "--yes")
    assert again.returncode == 0, again.stderr
    assert Counter(recipients_of(world.outbox_headers()).values()) == Counter({1: 5})


def test_partial_files_of_a_writer_that_died_are_removed_by_the_next_run(world: World):
    import os
    import subprocess
    import sys

    from newsletter.transports import outbox

    world.add_subscribers(3)
    tmp = world.outbox / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)
    left = tmp / f"{'a' * 32}.{'0' * 32}.{dead_pid}.{outbox._HOST}"
    left.write_bytes(b"Subject: half a message\r\n\r\nThe disk filled up here")
    # A live writer's file (this process) is its own to finish.
    live = tmp / f"{'b' * 32}.{'1' * 32}.{os.getpid()}.{outbox._HOST}"
    live.write_bytes(b"being written")

    result = world.cli("send", str(world.issue_file), "--yes")
    assert result.returncode == 0, result.stderr
    assert not left.exists() and live.exists()
    assert "removed 1 partial files an earlier send left in the outbox's tmp/" in result.stderr
    assert world.outbox_count() == 3


def test_xml_throttling_answers_mid_send_are_retried_and_everyone_gets_one(world: World, local_ses: LocalSes):
    from tests.test_ses_errors import xml_error

    local_ses.verify(SENDER)
    local_ses.set_quota(max_send_rate=200)
    world.use_ses(local_ses)
    world.add_subscribers(40)
    # The fault-injection run: an SES-compatible server throttling with the query protocol's
    # XML body, which botocore's sesv2 parser reads as code "400"; 101 of 1,000 readers were
    # failed for good.
    local_ses.fail_next_raw(12, 400, xml_error("Throttling", "Maximum sending rate exceeded."))
    summary = world.send()

    assert summary.failed_permanent == 0 and summary.throttled >= 1
    assert summary.sent == 40 and summary.complete
    counted = recipients_of(d.message for d in local_ses.received())
    assert Counter(counted.values()) == Counter({1: 40})


def test_at_rate_20_no_second_gets_more_than_20_arrivals_when_the_server_stalls(world: World, local_ses: LocalSes):
    from tests.test_send import max_in_one_second

    local_ses.verify(SENDER)
    local_ses.set_quota(max_send_rate=20)
    # Answered without moto, whose own work per message would add stalls of its own.
    local_ses.keep_messages = False
    # The fault-injection run's finding: a stall of 100-160 ms (the server's process, or
    # ours, losing the CPU), after which the delayed requests arrived next to the ones
    # released after them: up to 22 in one second.  Here the server stalls 150 ms every
    # 30th request (every 1.5 s), so whatever the machine's load, stalls happen.
    local_ses.stall_every(30, 0.15)
    world.use_ses(local_ses)
    world.add_subscribers(120)
    summary = world.send()

    assert summary.sent == 120 and summary.complete
    arrivals = [request.at for request in local_ses.requests]
    assert len(arrivals) == 120
    assert max_in_one_second(arrivals) <= 20
    # What the stalls cost: the sends a second after each are held back by its length (one
    # sender alone waits, ~5 % here; senders sharing a schedule skip those slots, ~10 %).
    achieved = (len(arrivals) - 1) / (max(arrivals) - min(arrivals))
    assert 0.8 * 20 <= achieved <= 20, achieved
