"""One rate for every sender of an account: a schedule of send slots held in PostgreSQL.

The provider counts arrivals from all our senders together (SES `MaxSendRate` is the
account's), so senders sharing an issue, or sending two issues through one account, take
their send times from one row per account (`send_rates`).  The row holds the time of the
next free slot; taking `n` slots moves it on by `n` intervals in one UPDATE, and the sender
releases its messages at those times.  It is the virtual-scheduling form of a token bucket
with a bucket of one (the generic cell rate algorithm, ITU-T I.371 annex A): slots handed to
different senders never overlap, so the sum of all senders keeps the spacing one sender's
`Pacer` keeps, and no second holds more than the rate.

One statement per batch, a batch being a quarter of a second's messages, so at 1,000/s the
row is updated four times a second per sender rather than a thousand times.  The daily
quota is shared the same way: the row holds what is left of it, each batch takes its part,
and the sender that finds it spent stops as a spent SES quota stops a send.

A sender with no other sender alive also keeps `pacing.Pacer`'s rule (a send leaves a second
after the answers of those a second's worth of slots before it), so that a stall at the
provider does not bunch the delayed requests with the next second's; senders that share the
schedule keep to their slots (`SharedPacer._clear_at` says why).

Throttling halves the shared rate (once a second however many senders are refused) and it
recovers as `pacing.Pacer`'s does; a sender's own Pacer stays in charge on SQLite, where a
second sender cannot join.

The row's statements ride a database outage out as the ledger's do (sending/ride_out.py),
within the same bound; past it the sender's pacer releases nothing more and says why
(`stopped`), so the send stops as it does when the quota is spent.  A statement run again
after a COMMIT whose answer was lost takes (or gives back) one batch twice: a quarter of a
second's slots skipped, or that much of the quota the provider's own figure corrects.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from newsletter.config import Settings
from newsletter.errors import StoreError
from newsletter.sending.pacing import MIN_RATE, RECOVERY, THROTTLE_FACTOR, THROTTLE_QUIET, Release, sleep_until
from newsletter.sending.ride_out import DB_PATIENCE, is_transient, patiently
from newsletter.store import Store, ledger
from newsletter.store.schema import send_rates, senders, utcnow

# Slots are this much wider than 1/rate, a little more than a lone sender's PACE_MARGIN:
# two processes' wake-up delays add up where their slots meet (each oversleeps by its own
# amount), and the provider counts the sum.  1.6 % leaves room, within 2 % under the rate, for the
# slots dropped when every worker was busy (`SharedPacer.wait`).
SHARED_MARGIN = 0.016

# A batch is this many seconds of sending at the rate: short enough that slots a sender
# takes and then does not use (it stopped, or ran out of rows) cost the others little.
BATCH_SECONDS = 0.25

T = TypeVar("T")

QUOTA_SPENT = "the account's daily sending quota is spent (shared by every sender); the rest stays queued"
DATABASE_AWAY = "the database was away for longer than {patience:g} s ({error}); the rest stays queued"

_TAKE = sa.text(
    """
    WITH now AS (SELECT clock_timestamp() AS t),
    current AS (
        SELECT r.key,
               now.t,
               greatest(r.next_free_at, now.t) AS start,
               least(r.ceiling, r.rate + :recovery * r.ceiling
                     * greatest(0, extract(epoch FROM now.t - r.changed_at))) AS rate,
               CASE WHEN r.allowance IS NULL THEN :n
                    ELSE least(:n, greatest(r.allowance + :returned, 0)) END AS granted
        FROM send_rates r, now
        WHERE r.key = :key
        FOR UPDATE OF r
    )
    UPDATE send_rates s
    SET rate = current.rate,
        changed_at = current.t,
        next_free_at = current.start + make_interval(secs => current.granted * (1 + :margin) / current.rate),
        -- Slots this sender dropped unused since its last batch go back to the quota.
        allowance = s.allowance - current.granted + :returned
    FROM current
    WHERE s.key = current.key
    RETURNING current.granted AS granted,
              extract(epoch FROM current.start) AS start,
              -- No other sender is alive to take slots (any issue's: they share the account).
              NOT EXISTS (SELECT 1 FROM senders o
                          WHERE o.ended_at IS NULL AND o.name <> :me
                            AND o.heartbeat_at > current.t - make_interval(secs => :silence)) AS alone,
              (1 + :margin) / current.rate AS spacing,
              current.rate AS rate
    """
)

_THROTTLED = sa.text(
    """
    UPDATE send_rates
    SET rate = greatest(:floor, :factor * least(ceiling, rate + :recovery * ceiling
                        * greatest(0, extract(epoch FROM clock_timestamp() - changed_at)))),
        changed_at = clock_timestamp(),
        throttled_at = clock_timestamp()
    WHERE key = :key AND (throttled_at IS NULL OR throttled_at < clock_timestamp() - make_interval(secs => :quiet))
    RETURNING rate
    """
)


def account_key(settings: Settings) -> str:
    """What the provider counts one rate for: the SES account's region and endpoint, the
    SMTP server, the outbox directory."""
    transport = settings.transport
    if transport.kind == "ses":
        return f"ses:{transport.ses.region}:{transport.ses.endpoint_url or ''}"
    if transport.kind == "smtp":
        return f"smtp:{transport.smtp.host}:{transport.smtp.port}"
    return f"{transport.kind}:{settings.path(transport.outbox.path)}"


def join_rate(store: Store, key: str, rate: float, *, allowance: float | None) -> None:
    """Make `rate` the account's and, when known, `allowance` what is left of its daily
    quota (the provider's figure at this moment: it counts every sender's sends so far)."""
    values = {"key": key, "ceiling": rate, "rate": rate, "allowance": None if allowance is None else int(allowance)}
    with store.begin() as conn:
        # Any sender said it was alive lately (the one starting has no lease yet).
        recent = utcnow() - ledger.SENDER_SILENCE
        values["others_sending"] = bool(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(senders)
                .where(senders.c.ended_at.is_(None), senders.c.heartbeat_at > recent)
            ).scalar_one()
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO send_rates (key, ceiling, rate, next_free_at, changed_at, allowance)
                VALUES (:key, :ceiling, :rate, clock_timestamp(), clock_timestamp(), :allowance)
                ON CONFLICT (key) DO UPDATE
                SET ceiling = excluded.ceiling,
                    rate = least(send_rates.rate, excluded.ceiling),
                    -- While other senders are at work, what the row has left is the truth:
                    -- the provider's figure, read before their last batches, is not.
                    allowance = CASE
                        WHEN send_rates.allowance IS NOT NULL AND :others_sending
                        THEN least(send_rates.allowance, coalesce(excluded.allowance, send_rates.allowance))
                        ELSE coalesce(excluded.allowance, send_rates.allowance)
                    END
                """
            ),
            values,
        )


class SharedPacer:
    """`pacing.Pacer`'s interface (`wait`, `answered`, `throttled`, `rate`, `throttles`,
    `lowest`) over the account's row in `send_rates`."""

    def __init__(
        self,
        store: Store,
        key: str,
        rate: float,
        *,
        sender: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.key = key
        # This sender's name in `senders` ("host:pid"), so that it does not count itself.
        self.sender = sender or ledger.this_sender()
        self.configured = rate
        self.clock = clock
        self.wall_clock = wall_clock
        self._rate = rate
        self._slots: collections.deque[float] = collections.deque()
        self._spacing = 1.0 / rate
        self._dropped = 0
        self._lock = threading.Lock()
        # This sender's releases, a heap by slot (a send held past its slot leaves after the
        # next slot's), and the latest any release folded out of it can have arrived
        # (`_clear_at`).
        self._released: list[tuple[float, int, Release]] = []
        self._release_numbers = itertools.count()  # ties between equal slots
        self._arrived_by = -math.inf
        # No other sender was alive at the last batch (`_take`): this one's sends are all
        # the provider counts.
        self._alone = False
        self.throttles = 0
        self.lowest: float | None = None
        # Set when the shared daily quota is spent: why this sender stopped.
        self.stopped: str | None = None
        # Whether it stopped because the database stayed away past the bound (`_ride_out`).
        self.stopped_for_database = False
        # Statements run against the row, for the benchmarks (statements per message).
        self.statements = 0
        # Statements run again because the database was away (the send's summary counts them).
        self.database_retries = 0

    @property
    def rate(self) -> float:
        return self._rate

    def _take(self) -> None:
        """Take the next batch of slots from the row; called with the lock held."""
        wanted = max(1, math.ceil(self._rate * BATCH_SECONDS))
        values = {
            "key": self.key,
            "n": wanted,
            "returned": self._dropped,
            "recovery": RECOVERY,
            "margin": SHARED_MARGIN,
            "me": self.sender,
            "silence": ledger.SENDER_SILENCE.total_seconds(),
        }
        row = self._ride_out(lambda conn: conn.execute(_TAKE, values).one())
        if row is None:
            return
        self._dropped = 0
        self.statements += 1
        self._rate = float(row.rate)
        granted = int(row.granted)
        self._alone = bool(row.alone)
        if granted <= 0:
            self.stopped = QUOTA_SPENT
            return
        # The slots are points in time on the database server's clock, taken as such on
        # this machine's (one clock for senders on one machine; NTP keeps machines within
        # milliseconds), not as "so long after the answer came", which would add each
        # answer's own delay (a lock wait, a busy thread) to its slots.
        start = self.clock() + (float(row.start) - self.wall_clock())
        spacing = self._spacing = float(row.spacing)
        self._slots.extend(start + k * spacing for k in range(granted))

    def wait(self, stop: threading.Event) -> Release | None:
        """Block until this caller's slot; None if `stop` was set (or the quota is spent)."""
        while True:
            with self._lock:
                # A slot whose time has passed by half a spacing is dropped, not caught up
                # on: workers that were all busy must not then go out together, crowding the
                # other senders' slots of the same second.  Alone, the rule of
                # `_clear_at` keeps any catching up within the rate.
                late = self.clock() - self._spacing / 2
                while self._slots and self._slots[0] < late and not self._alone:
                    self._slots.popleft()
                    self._dropped += 1
                # Once the quota is spent, slots skipped since the last batch are taken
                # back up here: given back only at the end, they would be lost to everyone.
                if not self._slots and (self.stopped is None or (self.stopped == QUOTA_SPENT and self._dropped)):
                    self._take()
                if not self._slots:
                    # Not the stop flag: other workers' messages hold slots (and quota) already
                    # taken, and go out; the campaign claims nothing more (`stopped`).
                    return None
                slot = self._slots.popleft()
            if not sleep_until(slot, stop, self.clock):
                return None
            with self._lock:
                alone = self._alone
                clear_at = self._clear_at(slot, self.clock(), strict=alone)
            # A slot may be taken up to half a spacing late, as a late wake-up's is (above).
            # Later it would crowd the slots of other senders: the slot goes unused (and its
            # quota back to the row), unless nobody else is taking slots.
            while clear_at is None and alone:
                if stop.wait(0.05):
                    return None
                with self._lock:
                    clear_at = self._clear_at(slot, self.clock(), strict=True)
            if clear_at is None or (clear_at > slot + self._spacing / 2 and not alone):
                with self._lock:
                    self._dropped += 1
                continue
            if not sleep_until(clear_at, stop, self.clock):
                return None
            with self._lock:
                release = Release(self.clock())
                heapq.heappush(self._released, (slot, next(self._release_numbers), release))
                return release

    def _clear_at(self, slot: float, now: float, *, strict: bool) -> float | None:
        """When the send at `slot` may leave by `pacing.Pacer`'s rule applied to this
        sender's own sends: a second after the answers of those `burst` slots or more before
        it (None while one of them may still be on its way).

        A sender alone on the schedule (`strict`) keeps the rule as a lone Pacer does, waiting
        past its slot if it must: its sends are all the provider counts, so no second gets
        more than the rate however the way delays them.  Senders that share the schedule
        cannot: a send after its slot crowds another sender's, and none of them sees the
        others' sends.  They keep to their slots (SHARED_MARGIN absorbs small delays) and
        skip one only while a send of their own a second's worth of slots back is still
        unanswered (ANSWER_PATIENCE), which could land among the next second's.  Keeping the
        whole rule there would skip a
        slot for every slow answer, and on a loaded machine most slow answers are our own
        process waiting for the CPU after the answer came, not late arrivals (measured with two
        senders at 100/s: 88-96/s reached at load 9-15, against 98/s without it).  Called with the lock
        held."""
        spacing = self._spacing
        burst = max(1, math.floor(self._rate))
        horizon = slot - burst * spacing + spacing / 2
        released = self._released
        while released and released[0][0] <= horizon:
            arrived_by = released[0][2].arrived_by(now)
            if arrived_by is None:
                return None
            heapq.heappop(released)
            if strict:
                self._arrived_by = max(self._arrived_by, arrived_by)
        return max(slot, self._arrived_by + 1.0)

    def answered(self, release: Release) -> None:
        """The provider's answer to `release`'s send came back (or the send failed)."""
        with self._lock:
            if release.answered_at is None:
                release.answered_at = self.clock()

    def close(self) -> None:
        """Give the daily quota of the slots taken and not used back to the other senders."""
        with self._lock:
            unused, self._slots = len(self._slots) + self._dropped, collections.deque()
            self._dropped = 0
        if not unused:
            return

        def give_back() -> None:
            with self.store.begin() as conn:
                conn.execute(
                    sa.update(send_rates)
                    .where(send_rates.c.key == self.key, send_rates.c.allowance.is_not(None))
                    .values(allowance=send_rates.c.allowance + unused)
                )

        # After the send's last record: a database that stays away is the send's error.
        patiently(give_back, patience=DB_PATIENCE, on_retry=self._database_away)
        self.statements += 1

    def throttled(self) -> None:
        """The provider refused a send for its rate: halve the account's rate, once a second
        for all senders together."""
        values = {
            "key": self.key,
            "floor": MIN_RATE,
            "factor": THROTTLE_FACTOR,
            "recovery": RECOVERY,
            "quiet": THROTTLE_QUIET,
        }
        answer = self._ride_out(lambda conn: conn.execute(_THROTTLED, values).scalars().all())
        if answer is None:
            return
        self.statements += 1
        if not answer:
            # Another sender's refusal lowered it within the quiet second.
            return
        (lowered,) = answer
        with self._lock:
            self.throttles += 1
            self._rate = float(lowered)
            self.lowest = self._rate if self.lowest is None else min(self.lowest, self._rate)
            # Slots taken at the old rate would keep the old pace for a batch more.
            self._slots.clear()

    def _ride_out(self, statement: Callable[[sa.Connection], T]) -> T | None:
        """`statement` in a transaction of its own, run again while the database is briefly
        away; None, and `stopped` set, when it stays away past the bound (the workers call
        this: a traceback there would stop the send as an internal error)."""

        def attempt() -> T:
            with self.store.begin() as conn:
                return statement(conn)

        try:
            return patiently(attempt, patience=DB_PATIENCE, on_retry=self._database_away)
        except (StoreError, sa.exc.DBAPIError) as err:
            if not is_transient(err):
                raise
            if self.stopped is None:
                self.stopped = DATABASE_AWAY.format(patience=DB_PATIENCE, error=err)
                self.stopped_for_database = True
            return None

    def _database_away(self, err: BaseException) -> None:
        self.database_retries += 1


def shared_pacer(
    settings: Settings, store: Store, rate: float | None, *, allowance: float | None, sender: str | None = None
):
    """The pacer for a send: the shared one on PostgreSQL when there is a rate to share,
    None otherwise (the caller keeps its own `Pacer`)."""
    if store.dialect != "postgresql" or not rate:
        return None
    key = account_key(settings)
    join_rate(store, key, rate, allowance=allowance)
    return SharedPacer(store, key, rate, sender=sender)
