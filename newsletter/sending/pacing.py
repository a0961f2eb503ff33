"""Pacing: sends spread evenly at the provider's rate, and the backoff between retries."""

from __future__ import annotations

import collections
import math
import random
import threading
import time
from collections.abc import Callable

# The provider counts a send when it arrives, which is some time after the pacer lets it go:
# a few milliseconds on a quiet machine, 100-160 ms when our process or the server's loses
# the CPU (measured against the SES test server on 2 shared cores: bench/RESULTS.md,
# "Pacing").  No spacing margin absorbs that, so the pacer judges each send by when its
# answer came back (see `Pacer`), and the schedule is only this much wider than 1/rate.
PACE_MARGIN = 0.005
# A send unanswered this long after it left is taken as having arrived when it left: it is
# an answer lost or slow, not a request still on its way (TCP would have given up resending
# it long before on a live connection), and the others must not wait for it any longer.
ANSWER_PATIENCE = 1.0
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


class Release:
    """One send the pacer let go: when, and when its answer came back (`Pacer.answered`).

    Whenever the request reached the provider, it was between the two: not before it left,
    and not after the provider answered it."""

    __slots__ = ("answered_at", "at")

    def __init__(self, at: float) -> None:
        self.at = at
        self.answered_at: float | None = None

    def arrived_by(self, now: float) -> float | None:
        """The latest the request can have arrived; None while that is not known yet."""
        if self.answered_at is not None:
            return self.answered_at
        if now >= self.at + ANSWER_PATIENCE:
            return self.at
        return None


class Pacer:
    """Spaces sends 1/rate seconds apart across all workers, and never lets more than
    `rate` of them reach the provider in any one second (SES quotes MaxSendRate in whole
    messages per second; a fractional rate allows its next whole number in some seconds,
    its average over time).

    The schedule alone does neither.  A worker that wakes late from its wait goes out late
    while the next goes out on time; and a send that is slow on its way (our process or the
    provider's losing the CPU for 100 ms) arrives next to the ones after it.  So before
    letting send n go, the pacer looks at send n - `burst` (`burst` = the rate, rounded
    down): n leaves no earlier than one second after that one's answer came back.  Every
    send arrives between leaving and being answered, so any `burst` + 1 arrivals span more
    than a second, however the way between delayed them.  The cost is the provider's round
    trip once a second: 1-5 ms on loopback, ~50 ms to SES over the internet, i.e. up to 5 %
    below the rate there; a burst over the rate would cost more (a 429 halves the rate).
    Until n - `burst` is answered the next send waits (ANSWER_PATIENCE at most).

    `wait` returns the `Release` of the send, which the caller hands to `answered` when the
    provider's answer (or the failure) came back.

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
        self._answers = threading.Condition(self._lock)
        # The last releases, oldest first; older ones are folded into the two figures below.
        self._released: collections.deque[Release] = collections.deque()
        self._last_folded_at = -math.inf  # when the newest folded release left
        self._arrived_by = -math.inf  # the latest any folded release can have arrived
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

    def _earliest(self, now: float) -> float | None:
        """When the next send may leave, by the releases before it; None while one it
        depends on is unanswered.  Called with the lock held."""
        released = self._released
        # Fold every release from `burst` back: the next send must keep a second from all
        # of them (not only from the one exactly `burst` back: a late answer can come
        # after the answers of sends that left later).
        while len(released) >= self.burst:
            arrived_by = released[0].arrived_by(now)
            if arrived_by is None:
                return None
            oldest = released.popleft()
            self._arrived_by = max(self._arrived_by, arrived_by)
            self._last_folded_at = oldest.at
        return max(self._last_folded_at + self.span, self._arrived_by + 1.0)

    def wait(self, stop: threading.Event) -> Release | None:
        """Block until this caller may send; None if `stop` was set meanwhile."""
        with self._lock:
            if not self.interval:
                now = self.clock()
                self._recent.append(now)
                return None if stop.is_set() else Release(now)
            now = self.clock()
            self._recover(now)
            slot = max(now, self._next)
            self._next = slot + self.interval
        while True:
            if not sleep_until(slot, stop, self.clock):
                return None
            with self._lock:
                now = self.clock()
                earliest = self._earliest(now)
                if earliest is None:
                    # Woken by `answered`, or soon enough to see `stop` (or patience run out).
                    self._answers.wait(0.05)
                    slot = now
                    continue
                if now >= earliest:
                    release = Release(now)
                    self._released.append(release)
                    self._recent.append(now)
                    return release
                slot = earliest

    def answered(self, release: Release) -> None:
        """The provider's answer to `release`'s send came back (or the send failed)."""
        with self._lock:
            if release.answered_at is None:
                release.answered_at = self.clock()
                self._answers.notify_all()


def sleep_until(at: float, stop: threading.Event, clock: Callable[[], float]) -> bool:
    """Wait until `clock()` reaches `at`; False if `stop` was set before or meanwhile."""
    delay = at - clock()
    if delay > 0 and stop.wait(delay):
        return False
    return not stop.is_set()


def backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (1-based): exponential with full jitter."""
    return random.uniform(0, min(MAX_BACKOFF, BASE_BACKOFF * 2 ** (attempt - 1)))
