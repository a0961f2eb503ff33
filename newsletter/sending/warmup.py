"""Warm-up: a new sending domain's daily volume grows from a small start, so that receivers
learn it from the reactions of its most engaged readers before it sends at full volume.

Gmail's and Yahoo's sender guidelines ask a new domain or IP to ramp up gradually, and SES
warms dedicated IPs the same way; Ghost ramps new domains over weeks.  With
`[sending] warmup = true` the cap of day N (day 1 being `warmup_start`, or the day the first
message of any issue went out) is

    warmup_daily_start * warmup_daily_growth ** (N - 1)    (default 200, 300, 450, 675, ...)

messages, counted over every issue in the UTC day.  A send over today's cap sends the rows
first in the ledger, which are the readers who joined the list first, up to the cap, and
stops as a spent SES daily quota stops it: the rest stays queued, the send is incomplete
(exit 75), and running it again tomorrow goes on where it stopped.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from newsletter.config import Settings
from newsletter.errors import ConfigError
from newsletter.store import Store
from newsletter.store import warmup as queries

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def daily_cap(start: int, growth: float, day: int) -> int:
    """Messages allowed on warm-up day `day` (1 is the first)."""
    return math.floor(start * growth ** (max(day, 1) - 1))


@dataclass
class WarmupBudget:
    """Today's remaining allowance, taken as rows are claimed (thread-safe)."""

    day: int
    cap: int
    sent_today: int
    remaining: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, wanted: int) -> int:
        """Up to `wanted` of what is left today; the caller gives back what it did not use."""
        with self._lock:
            granted = max(0, min(wanted, self.remaining))
            self.remaining -= granted
            return granted

    def give_back(self, count: int) -> None:
        with self._lock:
            self.remaining += max(0, count)

    @property
    def spent(self) -> bool:
        return self.remaining <= 0

    def stop_reason(self) -> str:
        return (
            f"warm-up day {self.day}: today's cap of {self.cap:,} messages is reached; "
            "the rest stay queued: run the send again tomorrow (UTC)"
        )


def todays_budget(settings: Settings, store: Store, clock: Clock = utc_now) -> WarmupBudget | None:
    """Today's budget, or None when warm-up is off."""
    sending = settings.sending
    if not sending.warmup:
        return None
    now = clock().astimezone(UTC)
    today = now.date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    with store.read() as conn:
        first = queries.first_sent_at(conn)
        sent_today = queries.sent_between(conn, midnight, midnight + timedelta(days=1))
    start = _start_day(settings) or (first.astimezone(UTC).date() if first else today)
    day = (today - start).days + 1
    cap = daily_cap(sending.warmup_daily_start, sending.warmup_daily_growth, day)
    return WarmupBudget(day=day, cap=cap, sent_today=sent_today, remaining=max(0, cap - sent_today))


def _start_day(settings: Settings) -> date | None:
    text = settings.sending.warmup_start
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise ConfigError(
            f"must be a date like 2026-12-01, not {text!r}", key="sending.warmup_start", source=settings.source
        ) from err
