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
    """

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = (1.0 + PACE_MARGIN) / rate if rate else 0.0
        self.clock = clock
        self._next = 0.0
        self._lock = threading.Lock()
        # Any burst + 1 consecutive releases span at least `span` (>= 1 s for rate >= 1).
        self.burst = max(1, math.floor(rate)) if rate else 1
        self.span = self.burst * self.interval
        self._released: collections.deque[float] = collections.deque(maxlen=self.burst)

    def wait(self, stop: threading.Event) -> bool:
        """Block until this caller may send; False if `stop` was set meanwhile."""
        if not self.interval:
            return not stop.is_set()
        with self._lock:
            slot = max(self.clock(), self._next)
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
                    return True
                slot = released[0] + self.span


def backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (1-based): exponential with full jitter."""
    return random.uniform(0, min(MAX_BACKOFF, BASE_BACKOFF * 2 ** (attempt - 1)))
