"""The campaign: snapshot the audience, then claim, build, pace, send and record, resumably.

    plan = plan_send(settings, store, issue_file, options)   # what would happen; no mail
    summary = run_send(plan, progress=...)                   # do it

The ledger (`store/ledger.py`) is the truth.  The main thread is the only one that touches
the database: it claims rows (committing `sending` before any message leaves), hands them
to worker threads that build and send, and records their outcomes in batches.  Workers
never write, so SQLite sees one writer per process however many workers run.

Crash safety, by construction:
- a row is `sending` in the database before its message is handed to the provider, so a
  crash never loses a row: it is `queued` (not yet claimed, sent next time), `sent`, or
  `sending` (uncertain);
- uncertain rows are reported and left alone unless `--resend-uncertain`, so a crash never
  sends anyone a second copy; the outbox can tell for certain whether a message arrived, so
  its uncertain rows are settled exactly;
- the number of uncertain rows is bounded by the claim window (twice the workers; wider for
  the outbox, whose uncertain rows are settled exactly; never more than a second's sending).
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa

from newsletter.errors import InputError, NewsletterError, TransportError
from newsletter.feedback.apply import apply_feedback_event
from newsletter.feedback.event import EventKind, FeedbackEvent
from newsletter.feedback.suppression import SuppressionPolicy
from newsletter.interrupts import stop_on_signals
from newsletter.mail.message import OutgoingMessage, Recipient
from newsletter.sending.pacing import Pacer, Release, backoff
from newsletter.sending.plan import SendPlan
from newsletter.sending.retry import after_temporary_failure
from newsletter.sending.ride_out import DB_PATIENCE, RECORD_PATIENCE, in_transaction, patiently
from newsletter.sending.senders import SenderLease, in_flight
from newsletter.sending.shared_rate import SharedPacer, shared_pacer
from newsletter.sending.state import COMPLETE, INCOMPLETE, send_state
from newsletter.store import ledger
from newsletter.store.ledger import Claimed, LedgerCounts, Outcome
from newsletter.store.schema import (
    FAILED,
    PERMANENT,
    QUEUED,
    SENDING,
    SENT,
    SKIPPED,
    TEMPORARY,
    utcnow,
)
from newsletter.transports.base import (
    STOPPED,
    RecordingTransport,
    Transport,
    WirePacedTransport,
)
from newsletter.transports.configured import open_transport

# A throttled request is tried this many times within one claim, waiting as `pacing.backoff`
# says, before its row is handed back to be claimed again a little later (retry.py).
THROTTLED_TRIES = 4
# How often a sender says it is alive; with DB_PATIENCE it sets how long the others wait
# before taking a silent one for dead (ledger.SENDER_SILENCE says why 90 s).
HEARTBEAT_SECONDS = 5.0
OUTBOX_CLAIM_WINDOW = 200
# Seconds of sending claimed ahead at most (see _claim_window).
CLAIM_AHEAD = 1.0
# Permanent failures named in the summary; the rest are counted.
PERMANENT_NAMED = 10


@dataclass
class SendSummary:
    sent: int = 0
    failed_temporary: int = 0
    failed_permanent: int = 0
    skipped: int = 0
    uncertain: int = 0
    elapsed: float = 0.0
    stopped: str | None = None
    failures: Counter = field(default_factory=Counter)
    ledger: LedgerCounts = field(default_factory=LedgerCounts)
    complete: bool = False
    # What this run found and did that the editor should hear of once (settled uncertain rows).
    notes: list[str] = field(default_factory=list)
    # (address, reason) of rows failed permanently, for naming them (at most PERMANENT_NAMED).
    permanent_failures: list[tuple[str, str]] = field(default_factory=list)
    # Addresses suppressed because the provider refused them as unknown (hard bounces).
    suppressed: int = 0
    # Whether the stop needs a person (a paused account, refused credentials), not time.
    stopped_for_good: bool = False
    # Ledger transactions tried again because the database was away for a moment.
    database_retries: int = 0
    # Whether `stopped` is the database staying away past the bound (ride_out.DB_PATIENCE):
    # the retries above then did not all end in going on.
    stopped_for_database: bool = False
    # How often the provider throttled us (bursts, not refusals), and the lowest rate the
    # pacer went down to because of it.
    throttled: int = 0
    lowest_rate: float | None = None
    # When the earliest row failed temporarily is due to be tried again.
    next_retry_at: datetime | None = None
    # This process ("host:pid"), and the other senders of the issue still running when it
    # finished (PostgreSQL: sending/senders.py) with the rows they hold in flight.
    this_sender: str = ""
    other_senders: list[str] = field(default_factory=list)
    in_flight_elsewhere: int = 0

    @property
    def state(self) -> str:
        """COMPLETE or INCOMPLETE, by the one rule of sending/state.py."""
        return COMPLETE if self.complete else INCOMPLETE

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


ProgressCallback = Callable[[SendSummary, int], None]
T = TypeVar("T")


def run_send(
    plan: SendPlan, *, progress: ProgressCallback | None = None, transport: Transport | None = None
) -> SendSummary:
    """Send the issue to everyone still queued; resumable at any point."""
    if plan.blocked:
        failed = "; ".join(str(f) for f in plan.findings if f.failed)
        raise InputError(f"checks failed, nothing sent (use --force to send anyway): {failed}")
    if plan.refusal:
        raise NewsletterError(plan.refusal)
    campaign = _Campaign(plan, transport)
    return campaign.run(progress)


class _Campaign:
    def __init__(self, plan: SendPlan, transport: Transport | None) -> None:
        self.plan = plan
        self.store = plan.store
        self.settings = plan.settings
        self.issue_id = plan.stored.id
        self.lease = SenderLease(plan.store, plan.stored.id, plan.stored.slug)
        self.summary = SendSummary()
        self.own_transport = transport is None
        self.transport = transport or open_transport(plan.settings, workers=plan.workers)
        self.factory = plan.message_factory()
        self.tags = {"issue": plan.stored.slug, "list": plan.list_slug}
        self.sender = plan.settings.from_address
        # On PostgreSQL every sender of the account takes its send times from one shared
        # schedule (shared_rate.py); alone, on SQLite, its own Pacer spaces them.
        quota_left = plan.quota.remaining_24_hours if plan.quota is not None else None
        shared = self._ride_out(
            lambda: shared_pacer(plan.settings, plan.store, plan.rate, allowance=quota_left, sender=self.lease.name)
        )
        self.pacer = shared or Pacer(plan.rate)
        self.clock = plan.options.clock
        self.max_attempts = plan.settings.sending.max_attempts
        self.stop = threading.Event()
        self.work: queue.Queue[Claimed | None] = queue.Queue()
        self.results: queue.Queue[Outcome] = queue.Queue()
        # Hard bounces at send time, by row, from the workers to the main thread's record.
        self.bounces: dict[int, FeedbackEvent] = {}
        self.suppression = SuppressionPolicy.from_settings(plan.settings.events)

    # -- the main thread ----------------------------------------------------

    def run(self, progress: ProgressCallback | None) -> SendSummary:
        started = time.monotonic()
        self.summary.this_sender = self.lease.name
        leftovers = getattr(self.transport, "removed_leftovers", 0)
        if leftovers:
            self.summary.notes.append(
                f"removed {leftovers} partial files an earlier send left in the outbox's tmp/ (a full disk, "
                "or a process killed while writing)"
            )
        try:
            self._ride_out(self.lease.start)
            try:
                self._ride_out(self.lease.find_lost)
                others = self._ride_out(self.lease.others)
                if others:
                    self.summary.notes.append(
                        f"joined {len(others)} other sender(s) of {self.plan.stored.slug!r} ({', '.join(others)})"
                    )
                self._settle_uncertain(when="when an earlier send stopped")
                self._prepare_queue()
                self._loop(progress, started)
            finally:
                # Ended even through a blip: the other senders must not wait for this one.
                self._ride_out(lambda: self.lease.end(sent=self.summary.sent), patience=RECORD_PATIENCE)
        finally:
            if self.own_transport:
                self.transport.close()
        # Who else is still sending, read before the counts: a sender records its last
        # outcomes before it ends its lease, so once its lease reads as ended the counts
        # below include all it sent (read the other way round, a sender finishing between
        # the two reads would leave this one's summary neither complete nor someone else's).
        flight = self._ride_out(lambda: in_flight(self.store, self.issue_id))
        self.summary.uncertain = flight.uncertain
        self.summary.in_flight_elsewhere = flight.elsewhere
        self.summary.other_senders = flight.senders

        def finish(conn: sa.Connection) -> None:
            ledger.mark_complete_if_done(conn, self.issue_id)
            self.summary.ledger = ledger.counts(conn, self.issue_id)
            self.summary.permanent_failures = ledger.permanent_failures(conn, self.issue_id, limit=PERMANENT_NAMED)
            self.summary.next_retry_at = ledger.next_retry_at(conn, self.issue_id)

        self._write(finish)
        self.summary.complete = send_state(self.summary.ledger) == COMPLETE
        if isinstance(self.pacer, SharedPacer):
            # Slots taken and not used go back to the shared daily quota.
            self.pacer.close()
            self.summary.database_retries += self.pacer.database_retries
            self._stopped_by_pacer()
        self.summary.throttled = self.pacer.throttles
        self.summary.lowest_rate = self.pacer.lowest
        self.summary.elapsed = time.monotonic() - started
        return self.summary

    def _settle_uncertain(self, *, when: str) -> int:
        """Rows left in `sending` by senders that ended or died (never a live one's: those
        are in flight): settle them where the transport can tell, requeue them if asked,
        otherwise leave them (and report them).  Returns how many went back to the queue."""
        if isinstance(self.transport, RecordingTransport):
            # Adopted in one statement: of two senders racing for them, one gets each row.
            orphans = self._ride_out(self.lease.adopt_orphans)
            if not orphans.rows:
                return 0
            arrived = [
                row_id for row_id, message_id in orphans.rows if message_id and self.transport.contains(message_id)
            ]
            taken = set(arrived)
            missing = [row_id for row_id, _ in orphans.rows if row_id not in taken]
            self._ride_out(lambda: self.lease.settle_adopted(arrived=arrived, missing=missing))
            self.summary.notes.append(
                f"{len(orphans.rows)} messages were in flight {when}: "
                f"{len(arrived)} had reached the outbox, {len(missing)} had not and are sent now"
            )
            return len(missing)
        if self.plan.options.resend_uncertain:
            return self._ride_out(self.lease.requeue_orphans)
        return 0

    def _watch_other_senders(self) -> int:
        """Heartbeat time, and once more before finishing: find senders that died since;
        their rows are settled (outbox) or reported as uncertain, and the rest of the issue
        goes on here.  Returns how many of their rows went back to the queue."""
        lost = self._ride_out(self.lease.find_lost)
        if not lost:
            return 0
        names = ", ".join(lost)
        if isinstance(self.transport, RecordingTransport):
            return self._settle_uncertain(when=f"when sender {names} stopped answering")
        self.summary.notes.append(
            f"sender {names} stopped answering; the messages it had in flight may or may not have gone out"
        )
        return 0

    def _prepare_queue(self) -> None:
        def prepare(conn: sa.Connection) -> None:
            if self.plan.stored.snapshot_at is None:
                ledger.snapshot_audience(conn, self.issue_id, self.plan.list_id)
            if self.plan.options.retry_failed:
                ledger.requeue(conn, self.issue_id, status=FAILED, failure=TEMPORARY)

        self._write(prepare)

    def _loop(self, progress: ProgressCallback | None, started: float) -> None:
        workers = [
            threading.Thread(target=self._worker, name=f"send-{n}", daemon=True) for n in range(self.plan.workers)
        ]
        for worker in workers:
            worker.start()
        # A KeyboardInterrupt could land anywhere: between a claim's commit and the hand-over
        # to the workers (rows left `sending` that never left), or between taking outcomes
        # off the queue and recording them (rows that went out, then reported uncertain).
        # So Ctrl-C and SIGTERM only set the stop flag, which the loop checks between steps.
        try:
            with stop_on_signals(self.stop, on_stop=self._interrupted):
                self._claim_and_collect(progress, started)
        finally:
            for _ in workers:
                self.work.put(None)
            for worker in workers:
                worker.join()
            # Rows still in the work queue when we stopped were never tried.
            self._collect(block=False)

    def _interrupted(self) -> None:
        self.summary.stopped = self.summary.stopped or "interrupted"

    def _claim_and_collect(self, progress: ProgressCallback | None, started: float) -> None:
        in_flight = 0
        exhausted = False
        last_heartbeat = time.monotonic()
        while True:
            try:
                # Again each time round: the pacer's rate falls when throttled.
                window = self._claim_window()
                # Claim when the window is half empty, not after every message: one
                # transaction per half window instead of one per message.
                low_water = window // 2
                if not exhausted and not self.stop.is_set() and in_flight <= low_water:
                    wanted = self._allowed(window - in_flight)
                    claimed, skipped = self._claim_rows(wanted)
                    if self.plan.warmup is not None:
                        # Only messages count towards the warm-up cap, not rows skipped.
                        self.plan.warmup.give_back(wanted - len(claimed))
                    self.summary.skipped += len(skipped)
                    for item in claimed:
                        self.work.put(item)
                    in_flight += len(claimed)
                    exhausted = not claimed and not skipped
                if in_flight:
                    in_flight -= self._collect(block=in_flight > low_water or exhausted or self.stop.is_set())
                if progress is not None:
                    self.summary.elapsed = time.monotonic() - started
                    progress(self.summary, self.plan.audience)
                if (exhausted or self.stop.is_set()) and not in_flight:
                    if exhausted and not self.stop.is_set() and self._watch_other_senders():
                        # A sender that died left rows the outbox showed never left: ours now.
                        exhausted = False
                        continue
                    break
                if time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:
                    alive = self._ride_out(lambda: self.lease.heartbeat(sent=self.summary.sent))
                    if not alive:
                        # Silent past ledger.SENDER_SILENCE (a stalled machine): the others
                        # may already have taken this sender's rows over.
                        self.summary.stopped = "another sender took this one for dead (no heartbeat); stopped"
                        self.stop.set()
                        exhausted = True
                    else:
                        self._watch_other_senders()
                    last_heartbeat = time.monotonic()
            except KeyboardInterrupt:
                # Ctrl-C: let the messages in flight finish, hand back the rest.
                self.summary.stopped = self.summary.stopped or "interrupted"
                self.stop.set()

    def _claim_rows(self, wanted: int) -> tuple[list[Claimed], list[Outcome]]:
        now = self.clock()
        return self._write(
            lambda conn: ledger.claim(
                conn, self.issue_id, wanted, self.factory.message_id, now=now, sender_id=self.lease.id
            )
        )

    def _allowed(self, wanted: int) -> int:
        """`wanted` rows, or fewer when the warm-up's cap for today is near (warmup.py).
        Once it is spent the send stops as a spent SES daily quota stops it: nothing more is
        claimed, the rest stays queued.  The daily quota shared by several senders
        (shared_rate.py) stops the claims the same way."""
        if isinstance(self.pacer, SharedPacer) and self.pacer.stopped:
            self._stopped_by_pacer()
            return 0
        budget = self.plan.warmup
        if budget is None:
            return wanted
        granted = budget.take(wanted)
        if not granted and wanted:
            # Not the stop flag: the rows already claimed within today's cap still go out.
            self.summary.stopped = self.summary.stopped or budget.stop_reason()
        return granted

    def _stopped_by_pacer(self) -> None:
        """The shared pacer's reason to stop (a spent quota, the database away past the
        bound) as the send's, unless it stopped for another reason first."""
        if isinstance(self.pacer, SharedPacer) and self.pacer.stopped and self.summary.stopped is None:
            self.summary.stopped = self.pacer.stopped
            self.summary.stopped_for_database = self.pacer.stopped_for_database

    def _claim_window(self) -> int:
        """How many rows may be claimed and not yet recorded.

        After a crash these are the uncertain rows, so for SMTP and SES the window stays at
        twice the workers.  The outbox settles uncertain rows exactly (`contains`), so there
        a wide window only saves transactions.

        And never more than leave within CLAIM_AHEAD seconds at the pace: whether a reader is
        still subscribed is checked when their row is claimed, so a reader who unsubscribes
        after that still gets the issue.  The fault-injection run found the outbox's 200 rows
        claimed ahead at 5/s (40 s of sending): all 32 readers who left mid-send got it.
        """
        if isinstance(self.transport, RecordingTransport):
            window = OUTBOX_CLAIM_WINDOW
        else:
            window = max(2, self.plan.workers * 2)
        rate = self.pacer.rate
        if rate:
            window = min(window, max(1, math.ceil(rate * CLAIM_AHEAD)))
        return window

    def _collect(self, *, block: bool) -> int:
        """Record the outcomes that are in, waiting briefly for the first if `block`."""
        outcomes: list[Outcome] = []
        try:
            outcomes.append(self.results.get(timeout=0.2) if block else self.results.get_nowait())
            while len(outcomes) < 500:
                outcomes.append(self.results.get_nowait())
        except queue.Empty:
            pass
        if outcomes:
            bounces = [event for o in outcomes if (event := self.bounces.pop(o.delivery_id, None)) is not None]

            def record(conn: sa.Connection) -> int:
                ledger.record(conn, [o for o in outcomes if o.status != SENDING])
                # In the same transaction as the row's failure: the address is suppressed
                # (and the bounce counted in stats) exactly as a hard bounce SES reports later.
                return sum(len(apply_feedback_event(conn, event, self.suppression).suppressed) for event in bounces)

            # Outcomes the process knows must not be lost to a blip: they get the longest wait.
            self.summary.suppressed += self._write(record, patience=RECORD_PATIENCE)
            for outcome in outcomes:
                self._count(outcome)
        return len(outcomes)

    def _count(self, outcome: Outcome) -> None:
        summary = self.summary
        if outcome.status == SENT:
            summary.sent += 1
        elif outcome.status == FAILED:
            if outcome.failure == PERMANENT:
                summary.failed_permanent += 1
            else:
                summary.failed_temporary += 1
            summary.failures[(outcome.error or "unknown error").split("\n")[0][:120]] += 1
        elif outcome.status == SKIPPED:
            summary.skipped += 1

    def _write(
        self, work: Callable[[sa.Connection], T], *, patience: float = DB_PATIENCE, read_only: bool = False
    ) -> T:
        """One ledger transaction, ridden out while the database is briefly away (ride_out.py)."""
        return in_transaction(self.store, work, patience=patience, read_only=read_only, on_retry=self._database_away)

    def _ride_out(self, call: Callable[[], T], *, patience: float = DB_PATIENCE) -> T:
        """`call()`, whose transactions are its own (the lease's, the shared rate's), run
        again while the database is briefly away (ride_out.py)."""
        return patiently(call, patience=patience, on_retry=self._database_away)

    def _database_away(self, err: BaseException) -> None:
        self.summary.database_retries += 1
        self.lease.database_away_at = utcnow()

    def _bounce(self, item: Claimed, err: TransportError) -> FeedbackEvent:
        """The provider's refusal of the address at send time, as the bounce it is."""
        return FeedbackEvent(
            kind=EventKind.BOUNCE,
            source=self.settings.transport.kind,
            provider_message_id="",
            recipients=(item.email,),
            timestamp=utcnow(),
            dedupe_key=hashlib.sha256(f"refused at send:{item.message_id}".encode()).hexdigest(),
            message_id=item.message_id,
            bounce_type="Permanent",
            bounce_subtype="General",
            permanent=True,
            detail=str(err),
        )

    # -- worker threads -----------------------------------------------------

    def _worker(self) -> None:
        while True:
            item = self.work.get()
            if item is None:
                return
            try:
                outcome = self._deliver(item)
            except Exception as err:  # noqa: BLE001 - a bug must not leave its row claimed forever
                outcome = Outcome(item.delivery_id, QUEUED, error=f"internal error: {err!r}")
                self.stop.set()
                self.summary.stopped = f"internal error: {err!r}"
                self.summary.stopped_for_good = True
            self.results.put(outcome)

    def _deliver(self, item: Claimed) -> Outcome:
        if self.stop.is_set():
            return Outcome(item.delivery_id, QUEUED)
        try:
            message = self.factory.build(
                Recipient(item.subscriber_id, item.email, item.name), message_id=item.message_id
            )
        except InputError as err:
            return Outcome(item.delivery_id, FAILED, failure=PERMANENT, error=str(err))
        return self._send_with_retries(item, message)

    def _send_with_retries(self, item: Claimed, message: OutgoingMessage) -> Outcome:
        """Send `item`, trying again at once (after a backoff) only when throttled; any
        other temporary failure is recorded with the time its next try is due (retry.py)."""
        tries = 0
        while True:
            tries += 1
            # `attempts` of an Outcome counts the tries beyond the one its claim counted.
            extra = tries - 1
            try:
                provider_id = self._paced_send(message)
                return Outcome(item.delivery_id, SENT, provider_message_id=provider_id, attempts=extra)
            except TransportError as err:
                if err.code == STOPPED:
                    return Outcome(item.delivery_id, QUEUED, attempts=extra)
                if err.uncertain:
                    # It may have gone out: retrying could send a second copy.
                    return Outcome(item.delivery_id, SENDING, error=str(err), attempts=extra)
                if err.stops_send:
                    self.summary.stopped = self.summary.stopped or str(err)
                    self.summary.stopped_for_good = self.summary.stopped_for_good or err.permanent
                    self.stop.set()
                    return Outcome(item.delivery_id, QUEUED, attempts=extra)
                if err.permanent:
                    if err.hard_bounce:
                        self.bounces[item.delivery_id] = self._bounce(item, err)
                    return Outcome(item.delivery_id, FAILED, failure=PERMANENT, error=str(err), attempts=extra)
                if err.throttled:
                    self.pacer.throttled()
                if err.throttled and tries < THROTTLED_TRIES:
                    if self.stop.wait(backoff(tries)):
                        return Outcome(item.delivery_id, QUEUED, attempts=extra)
                    continue
                verdict = after_temporary_failure(
                    attempts=item.attempts + extra,
                    max_attempts=self.max_attempts,
                    now=self.clock(),
                    error=str(err),
                    throttled=err.throttled,
                )
                return Outcome(
                    item.delivery_id,
                    FAILED,
                    failure=verdict.failure,
                    error=verdict.error,
                    attempts=extra,
                    next_attempt_at=verdict.next_attempt_at,
                )

    def _paced_send(self, message: OutgoingMessage) -> str:
        """One try, released by the pacer: at the wire where the transport can do that.
        The pacer hears when the answer came back, whatever it was: it judges the sends after
        this one by it (pacing.Pacer)."""
        released: list[Release] = []

        def pace() -> bool:
            release = self.pacer.wait(self.stop)
            if release is None:
                return False
            released.append(release)
            return True

        try:
            if isinstance(self.transport, WirePacedTransport):
                return self.transport.send_paced(
                    message.data, sender=self.sender, recipient=message.recipient, tags=self.tags, pace=pace
                )
            if not pace():
                raise TransportError("stopped before sending", permanent=False, code=STOPPED)
            return self.transport.send(message.data, sender=self.sender, recipient=message.recipient, tags=self.tags)
        finally:
            for release in released:
                self.pacer.answered(release)
