"""Warm-up: a new domain's daily cap (200, then x1.5 a day), sending the readers who joined
first, stopping cleanly at the cap and going on the next day; three days simulated with the
send's settable clock against the outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletter.errors import ConfigError
from newsletter.sending.warmup import daily_cap
from newsletter.store.schema import memberships
from tests.send_world import World, recipients_of

pytest_plugins = ["tests.send_world"]


def test_the_daily_cap_grows_by_the_factor_from_the_start():
    assert [daily_cap(200, 1.5, day) for day in range(1, 6)] == [200, 300, 450, 675, 1012]
    assert daily_cap(50, 2.0, 3) == 200


def joined_in_reverse(world: World, ids: list[int]) -> list[str]:
    """Make the last-added reader the longest-standing member; the addresses, oldest first."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with world.store.begin() as conn:
        for rank, subscriber_id in enumerate(reversed(ids)):
            conn.execute(
                sa.update(memberships)
                .where(memberships.c.subscriber_id == subscriber_id)
                .values(created_at=start + timedelta(minutes=rank))
            )
    emails = world.emails()
    return [emails[subscriber_id] for subscriber_id in reversed(ids)]


def test_three_days_send_200_then_300_then_the_rest_oldest_members_first_and_nobody_twice(world: World):
    ids = world.add_subscribers(600)
    oldest_first = joined_in_reverse(world, ids)
    world.configure("sending", warmup=True)
    day1 = datetime.now(UTC)

    first = world.send(clock=lambda: day1)
    assert first.sent == 200 and not first.complete
    assert first.stopped and "warm-up day 1" in first.stopped and "200" in first.stopped
    assert first.ledger.queued == 400 and first.ledger.sending == 0
    assert set(recipients_of(world.outbox_headers())) == set(oldest_first[:200])

    again = world.send(clock=lambda: day1 + timedelta(minutes=5))
    assert again.sent == 0 and "warm-up day 1" in again.stopped, "the same day's cap is spent"

    second = world.send(clock=lambda: day1 + timedelta(days=1))
    assert second.sent == 300 and not second.complete and "warm-up day 2" in second.stopped
    assert set(recipients_of(world.outbox_headers())) == set(oldest_first[:500])

    third = world.send(clock=lambda: day1 + timedelta(days=2))
    assert third.sent == 100 and third.complete and third.stopped is None
    received = recipients_of(world.outbox_headers())
    assert len(received) == 600 and set(received.values()) == {1}, "everybody once, nobody twice"


def test_the_plan_says_where_the_send_will_stop(world: World):
    world.add_subscribers(5)
    world.configure("sending", warmup=True, warmup_daily_start=2, warmup_daily_growth=2.0)
    plan = world.plan(clock=lambda: datetime.now(UTC))
    assert plan.warmup is not None and (plan.warmup.day, plan.warmup.cap, plan.warmup.remaining) == (1, 2, 2)
    assert any("warm-up day 1" in note and "stops after 2" in note for note in plan.notes)


def test_day_one_may_be_set_and_a_later_day_allows_more(world: World):
    world.add_subscribers(10)
    today = datetime.now(UTC)
    start = (today - timedelta(days=2)).date().isoformat()
    world.configure("sending", warmup=True, warmup_daily_start=2, warmup_daily_growth=2.0, warmup_start=start)
    summary = world.send(clock=lambda: today)
    assert summary.sent == 8 and "warm-up day 3" in summary.stopped


def test_without_warm_up_there_is_no_cap(world: World):
    world.add_subscribers(250)
    summary = world.send()
    assert summary.sent == 250 and summary.complete and world.plan().warmup is None


def test_send_command_says_it_stopped_at_the_cap_and_exits_incomplete(world: World):
    world.add_subscribers(4)
    world.configure("sending", warmup=True, warmup_daily_start=3)
    result = world.cli("send", str(world.issue_file), "--yes")
    # Incomplete, as after a spent SES quota (DESIGN.md: 75 once issue 9's exit codes land).
    assert result.returncode != 0, result.stderr
    assert "1 still queued" in result.stderr
    assert "warm-up day 1: today's cap of 3 messages is reached" in result.stderr
    assert world.outbox_count() == 3


@pytest.mark.parametrize(
    "values, key",
    [
        ({"warmup_start": "next tuesday"}, "sending.warmup_start"),
        ({"warmup_daily_start": 0}, "sending.warmup_daily_start"),
        ({"warmup_daily_growth": 0.5}, "sending.warmup_daily_growth"),
    ],
)
def test_a_warm_up_setting_that_cannot_work_is_one_config_error_naming_the_key(world: World, values, key):
    world.add_subscribers(1)
    world.configure("sending", warmup=True, **values)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        world.plan()
