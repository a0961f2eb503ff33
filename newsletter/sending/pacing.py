"""Pacing: sends spread evenly at the provider's rate, and the backoff between retries."""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from collections.abc import Callable

# Measured against LocalSes: requests reach the server ~5 ms after the pacer lets them go,
# give or take ~10 ms on a quiet machine, which with exact 1/rate spacing puts rate + 1 of them
# into some one-second window (and SES answers 429).  With 1.5 % wider spacing any rate + 1
# consecutive releases are >= 1.015 s apart, at the cost of sending 1.5 % below the rate; the
# rarer longer delays of a loaded machine still show (bench/RESULTS.md, "Pacing").
PACE_MARGIN = 0.015
# Retries wait 1, 2, 4... seconds (with full jitter, so throttled workers do not retry in
# lockstep) up to MAX_BACKOFF.
BASE_BACKOFF = 1.0
MAX_BACKOFF = 30.0


# On throttling the rate is halved (multiplicative decrease), at most once per
# THROTTLE_QUIET seconds so that the many refusals of one burst count once, and never below
# MIN_RATE; it then grows back by RECOVERY of the configured rate per second (additive
# increase: from half to full in 25 s).  The scheme is TCP's congestion control (RFC 5681
# section 3.1), the one AWS recommends for throttled clients ("Exponential backoff and
# jitter", AWS Architecture Blog; the SDKs' adaptive retry mode).
THROTTLE_FACTOR = 0.5
THROTTLE_QUIET = 1.0
RECOVERY = 0.02
MIN_RATE = 0.5


class Pacer:
    """Spaces sends 1/rate seconds apart across all workers, and never lets more than
    `rate` of them go in any one second (SES quotes MaxSendRate in whole messages per second;
    a fractional rate allows its next whole number in some seconds, its average over time).

    The schedule alone does not ensure the second part: a worker that wakes late from its
    wait (a loaded machine oversleeps by tens of milliseconds) goes out late while the next
    goes out on time, and `rate` + 1 sends land inside one second.  So each worker checks,
    when it wakes, the actual times of the last `burst` releases and waits on if sending now
    would crowd them.  The spacing is PACE_MARGIN wider than 1/rate, because a send reaches
    the provider some milliseconds after the pacer lets it go, by an amount that varies
    (thread scheduling, request signing, the network).

    `throttled()` lowers the rate when the provider says we are too fast; it recovers slowly
    to the configured rate.  Without a configured rate the first throttling sets one: half of
    what was released in the second before it, recovering up to that.
    """

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.configured = rate or None
        self._ceiling = self.configured
        self._next = 0.0
        self._lock = threading.Lock()
        self._released: collections.deque[float] = collections.deque(maxlen=1)
        self._recent: collections.deque[float] = collections.deque(maxlen=1_000)
        self._last_change = clock()
        self._last_throttle: float | None = None
        # What the editor hears of: how often, and how low the rate went.
        self.throttles = 0
        self.lowest: float | None = None
        self._set_rate(self.configured)

    @property
    def rate(self) -> float | None:
        return self._rate

    def _set_rate(self, rate: float | None) -> None:
        self._rate = rate
        self.interval = (1.0 + PACE_MARGIN) / rate if rate else 0.0
        # Any burst + 1 consecutive releases span at least `span` (>= 1 s for rate >= 1).
        self.burst = max(1, math.floor(rate)) if rate else 1
        self.span = self.burst * self.interval
        if self._released.maxlen != self.burst:
            self._released = collections.deque(self._released, maxlen=self.burst)

    def throttled(self) -> None:
        """The provider refused a send for its rate: slow down (see THROTTLE_FACTOR)."""
        with self._lock:
            now = self.clock()
            if self._last_throttle is not None and now - self._last_throttle < THROTTLE_QUIET:
                return
            self._last_throttle = now
            self.throttles += 1
            if self._rate is None:
                measured = sum(1 for at in self._recent if at > now - 1.0)
                self._ceiling = max(MIN_RATE, float(measured))
                current = self._ceiling
            else:
                current = self._rate
            lowered = max(MIN_RATE, current * THROTTLE_FACTOR)
            self._set_rate(lowered)
            self._last_change = now
            self.lowest = lowered if self.lowest is None else min(self.lowest, lowered)

    def _recover(self, now: float) -> None:
        ceiling = self._ceiling
        if ceiling is None or self._rate is None or self._rate >= ceiling:
            self._last_change = now
            return
        grown = self._rate + RECOVERY * ceiling * max(0.0, now - self._last_change)
        self._last_change = now
        self._set_rate(min(ceiling, grown))

    def wait(self, stop: threading.Event) -> bool:
        """Block until this caller may send; False if `stop` was set meanwhile."""
        with self._lock:
            if not self.interval:
                self._recent.append(self.clock())
                return not stop.is_set()
            now = self.clock()
            self._recover(now)
            slot = max(now, self._next)
            self._next = slot + self.interval
        while True:
            delay = slot - self.clock()
            if delay > 0 and stop.wait(delay):
                return False
            if stop.is_set():
                return False
            with self._lock:
                now = self.clock()
                released = self._released
                if len(released) < self.burst or now >= released[0] + self.span:
                    released.append(now)
                    self._recent.append(now)
                    return True
                slot = released[0] + self.span


def backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (1-based): exponential with full jitter."""
    return random.uniform(0, min(MAX_BACKOFF, BASE_BACKOFF * 2 ** (attempt - 1)))
