"""Scheduled sends: `send --at`, `--cancel`, the stale rules, and due sends run by real
`newsletter serve` processes (and `newsletter worker`) through the ledger: on time and not
before (by the recorded timestamps), once, resumed after SIGKILL, once with two servers on
one database."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from ports import free_port

from newsletter.errors import InputError
from newsletter.issue_states import issue_states
from newsletter.sending.plan import SendOptions
from newsletter.sending.schedule import parse_send_time, run_due, schedule_send
from newsletter.store.schema import deliveries, schedules

pytest.register_assert_rewrite("tests.send_world", "tests.transport_servers")
from tests.send_world import World, recipients_of

pytest_plugins = ["tests.transport_servers", "tests.send_world"]

WAIT_SECONDS = 90.0  # an upper bound for waiting on a process, never a measured time


def dated_today(world: World) -> None:
    """The example issue, dated today (UTC): the stale rule refuses an issue dated more
    than 3 days before its send, and these tests must pass on any day."""
    today = datetime.now(UTC).date()
    text = world.issue_file.read_text(encoding="utf-8")
    world.issue_file.write_text(
        text.replace("2026年11月30日", f"{today.year}年{today.month:02d}月{today.day:02d}日"), encoding="utf-8"
    )


def in_seconds(seconds: float) -> tuple[str, datetime]:
    moment = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    return moment.strftime("%Y-%m-%d %H:%M:%S"), moment


def schedule_ahead(world: World, seconds: float) -> datetime:
    """Schedule the world's issue `seconds` ahead of now, as `send --at` does.  Scheduling
    itself (checks, render) can take longer than that on a loaded machine, so "now" is taken
    once, before it: the time cannot have passed by the time it is checked."""
    at, moment = in_seconds(seconds)
    now = datetime.now(UTC)
    scheduled = schedule_send(
        world.settings, world.store, world.issue_file, at=at, tz="UTC", options=SendOptions(), now=now
    )
    assert scheduled.schedule is not None and scheduled.schedule.send_at == moment
    return moment


def schedule_row(world: World) -> dict:
    with world.store.read() as conn:
        return dict(conn.execute(sa.select(schedules)).mappings().one())


def wait_for(check, *, seconds: float = WAIT_SECONDS, every: float = 0.05):
    deadline = time.monotonic() + seconds
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = check()
    return value


def start_server(world: World) -> subprocess.Popen:
    port = free_port()
    process = world.start_newsletter("serve", "--port", str(port))

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/feed.xml", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    assert wait_for(answers), "newsletter serve did not start"
    return process


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return stderr


def sent_rows(world: World) -> list[dict]:
    with world.store.read() as conn:
        return [dict(row) for row in conn.execute(sa.select(deliveries)).mappings()]


# ---------------------------------------------------------------------------------------
# Reading the time
# ---------------------------------------------------------------------------------------


def test_a_time_is_read_in_the_given_zone_and_stored_in_utc():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_send_time("2026-12-02 08:00", shanghai, now=now) == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    # HH:MM alone is the next such time: 08:00 in Shanghai has passed today (20:00 there).
    assert parse_send_time("08:00", shanghai, now=now) == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    assert parse_send_time("21:30", shanghai, now=now) == datetime(2026, 12, 1, 13, 30, tzinfo=UTC)


def test_a_time_the_clocks_skip_and_a_malformed_time_are_refused():
    now = datetime(2027, 3, 1, tzinfo=UTC)
    with pytest.raises(InputError, match="does not exist in America/New_York"):
        parse_send_time("2027-03-14 02:30", ZoneInfo("America/New_York"), now=now)
    with pytest.raises(InputError, match="is not a time; write it as 'YYYY-MM-DD HH:MM'"):
        parse_send_time("next tuesday", None, now=now)


# ---------------------------------------------------------------------------------------
# Scheduling, in process
# ---------------------------------------------------------------------------------------


def test_send_at_checks_freezes_and_records_the_schedule_and_exits(world: World):
    world.add_subscribers(3)
    dated_today(world)
    at, moment = in_seconds(3600)
    result = world.cli("send", str(world.issue_file), "--at", at, "--tz", "UTC")
    assert result.returncode == 0, result.stderr
    assert "scheduled for" in result.stdout and "3 subscribers now" in result.stdout
    row = schedule_row(world)
    assert (row["state"], row["send_at"], row["timezone"]) == ("scheduled", moment, "UTC")
    assert "端侧大模型走进千元机" in row["email_html"] and world.outbox_count() == 0 and not sent_rows(world)
    states = {s.slug: s for s in issue_states(world.settings, world.store)}
    assert states["2026-11-30"].state == "scheduled" and states["2026-11-30"].scheduled_at == moment


def test_the_frozen_render_is_sent_even_if_the_file_changes_afterwards(world: World):
    world.add_subscribers(2)
    dated_today(world)
    scheduled = schedule_send(
        world.settings, world.store, world.issue_file, at=in_seconds(3600)[0], tz="UTC", options=SendOptions()
    )
    text = world.issue_file.read_text(encoding="utf-8")
    world.issue_file.write_text(text.replace("端侧大模型走进千元机", "改过的标题"), encoding="utf-8")
    assert scheduled.schedule is not None
    due = scheduled.schedule.send_at + timedelta(seconds=1)
    (outcome,) = run_due(world.settings, world.store, now=lambda: due)
    assert outcome.state == "done" and outcome.note == "sent 2"
    bodies = [path.read_bytes() for path in world.outbox_files()]
    assert len(bodies) == 2 and all("改过的标题".encode() not in body for body in bodies)


def test_cancel_withdraws_the_schedule_and_nothing_is_sent(world: World):
    world.add_subscribers(2)
    dated_today(world)
    at, moment = in_seconds(3600)
    assert world.cli("send", str(world.issue_file), "--at", at, "--tz", "UTC").returncode == 0
    result = world.cli("send", "2026-11-30", "--cancel")
    assert result.returncode == 0 and "is cancelled" in result.stdout
    assert run_due(world.settings, world.store, now=lambda: moment + timedelta(minutes=1)) == []
    assert world.outbox_count() == 0 and schedule_row(world)["state"] == "cancelled"
    again = world.cli("send", "2026-11-30", "--cancel")
    assert again.returncode == 1 and "is not scheduled; nothing to cancel" in again.stderr


def test_a_schedule_more_than_24_hours_late_is_refused_and_issues_says_why(world: World):
    world.add_subscribers(2)
    dated_today(world)
    at, moment = in_seconds(3600)
    assert world.cli("send", str(world.issue_file), "--at", at, "--tz", "UTC").returncode == 0
    (outcome,) = run_due(world.settings, world.store, now=lambda: moment + timedelta(hours=25))
    assert outcome.state == "refused" and "more than 24 h ago" in outcome.note
    assert world.outbox_count() == 0 and not sent_rows(world)
    (state,) = [s for s in issue_states(world.settings, world.store) if s.slug == "2026-11-30"]
    assert state.state == "refused" and "more than 24 h ago" in state.note
    listed = world.cli("issues")
    assert "refused" in listed.stdout and "24 h ago" in listed.stdout.replace("\n", " ")


def test_an_issue_dated_more_than_3_days_before_its_send_is_refused_unless_forced(world: World):
    world.add_subscribers(1)
    dated_today(world)
    later = (datetime.now(UTC) + timedelta(days=5)).strftime("%Y-%m-%d 08:00")
    refused = world.cli("send", str(world.issue_file), "--at", later, "--tz", "UTC")
    assert refused.returncode == 1
    assert "more than 3 days before its send time" in refused.stderr and "--force" in refused.stderr
    forced = world.cli("send", str(world.issue_file), "--at", later, "--tz", "UTC", "--force")
    assert forced.returncode == 0, forced.stderr


def test_a_time_in_the_past_is_refused_and_an_immediate_send_of_a_scheduled_issue_too(world: World):
    world.add_subscribers(1)
    dated_today(world)
    past = world.cli("send", str(world.issue_file), "--at", "2020-01-01 08:00", "--tz", "UTC")
    assert past.returncode == 1 and "is in the past" in past.stderr
    assert world.cli("send", str(world.issue_file), "--at", in_seconds(3600)[0], "--tz", "UTC").returncode == 0
    now = world.cli("send", str(world.issue_file), "--yes")
    assert now.returncode == 1 and "is scheduled for" in now.stderr and "--cancel" in now.stderr
    assert world.outbox_count() == 0


# ---------------------------------------------------------------------------------------
# Due sends, by real `newsletter serve` processes
# ---------------------------------------------------------------------------------------


def test_serve_sends_a_schedule_once_at_its_time_and_not_before(world: World):
    world.add_subscribers(5)
    dated_today(world)
    server = start_server(world)
    try:
        moment = schedule_ahead(world, 3)
        assert wait_for(lambda: schedule_row(world)["state"] == "done"), schedule_row(world)
    finally:
        stderr = stop(server)
    assert "Traceback" not in stderr
    rows = sent_rows(world)
    assert [row["status"] for row in rows] == ["sent"] * 5
    # Nothing before the time: every row was claimed and sent at or after it.
    assert all(row["claimed_at"] >= moment and row["sent_at"] >= moment for row in rows)
    assert world.issue_row()["snapshot_at"] >= moment and world.issue_row()["completed_at"] is not None
    counted = recipients_of(world.outbox_headers())
    assert sorted(counted.values()) == [1] * 5


def test_a_server_killed_mid_send_resumes_on_restart_and_sends_nobody_twice(world: World, local_smtp):
    count = 30
    world.add_subscribers(count)
    dated_today(world)
    world.use_smtp(local_smtp)
    # Paced so that the send is still going when it is killed.
    world.configure("transport.smtp", rate=10)
    server = start_server(world)
    schedule_ahead(world, 3)
    assert wait_for(lambda: sum(row["status"] == "sent" for row in sent_rows(world)) >= 5)
    server.send_signal(signal.SIGKILL)
    server.communicate(timeout=30)
    before = sent_rows(world)
    assert any(row["status"] == "queued" for row in before), "the send ended before it was killed"
    assert schedule_row(world)["state"] == "running"  # left by the dead process

    restarted = start_server(world)
    try:
        assert wait_for(lambda: schedule_row(world)["state"] == "done"), schedule_row(world)
    finally:
        stop(restarted)
    rows = sent_rows(world)
    statuses = [row["status"] for row in rows]
    # Resumed: nothing is left queued; rows in flight at the kill stay uncertain, not resent.
    assert "queued" not in statuses and statuses.count("sent") + statuses.count("sending") == count
    counted = recipients_of(delivery.message for delivery in local_smtp.received)
    assert max(counted.values()) == 1, "somebody got two copies"
    # Every row sent arrived; a row in flight at the kill may or may not have arrived.
    assert statuses.count("sent") <= len(counted) <= statuses.count("sent") + statuses.count("sending")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_servers_on_one_postgresql_database_send_a_schedule_once(world: World):
    count = 40
    world.add_subscribers(count)
    dated_today(world)
    servers = [start_server(world), start_server(world)]
    try:
        schedule_ahead(world, 3)
        assert wait_for(lambda: schedule_row(world)["state"] == "done"), schedule_row(world)
    finally:
        errors = [stop(server) for server in servers]
    assert all("Traceback" not in stderr for stderr in errors)
    counted = recipients_of(world.outbox_headers())
    assert len(counted) == count and set(counted.values()) == {1}
    assert [row["status"] for row in sent_rows(world)] == ["sent"] * count


def test_worker_once_sends_what_is_due_and_exits(world: World):
    world.add_subscribers(2)
    dated_today(world)
    moment = schedule_ahead(world, 1)
    assert wait_for(lambda: datetime.now(UTC) > moment, every=0.1)
    result = world.newsletter("worker", "--once")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2026-11-30: sent 2"
    assert world.outbox_count() == 2 and schedule_row(world)["state"] == "done"


def test_at_is_read_in_the_configured_time_zone_without_tz(world: World):
    world.add_subscribers(1)
    dated_today(world)
    world.configure("newsletter", timezone="Asia/Shanghai")
    tomorrow = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).date()
    result = world.cli("send", str(world.issue_file), "--at", f"{tomorrow.isoformat()} 08:00")
    assert result.returncode == 0, result.stderr
    assert "08:00 CST" in result.stdout
    row = schedule_row(world)
    assert row["timezone"] == "Asia/Shanghai"
    assert row["send_at"] == datetime(tomorrow.year, tomorrow.month, tomorrow.day, 0, 0, tzinfo=UTC)


def test_an_unknown_configured_time_zone_is_an_error_naming_the_key(world: World):
    world.configure("newsletter", timezone="Mars/Olympus_Mons")
    result = world.cli("issues")
    assert result.returncode == 1
    assert "newsletter.timezone: 'Mars/Olympus_Mons' is not a time zone" in result.stderr


def test_a_scheduled_send_with_temporary_failures_comes_round_again_when_their_retry_is_due(world: World, local_smtp):
    world.use_smtp(local_smtp)
    world.add_subscribers(3)
    dated_today(world)
    moment = schedule_ahead(world, 3600)
    local_smtp.rcpt_replies["reader1@example.org"] = "451 4.7.1 Greylisted, try again later"
    due = moment + timedelta(seconds=1)
    (first,) = run_due(world.settings, world.store, now=lambda: due)

    assert first.state == "scheduled" and "1 failed temporarily, tried again from" in first.note
    row = schedule_row(world)
    assert due < row["next_try_at"] <= due + timedelta(minutes=1)
    # Not yet: nothing is due before then.
    assert run_due(world.settings, world.store, now=lambda: row["next_try_at"] - timedelta(seconds=1)) == []

    local_smtp.rcpt_replies.clear()
    (second,) = run_due(world.settings, world.store, now=lambda: row["next_try_at"])
    assert second.state == "done" and second.note == "sent 3"
    assert sorted(r for d in local_smtp.received for r in d.rcpt_tos) == [f"reader{n}@example.org" for n in range(3)]
