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
  the outbox, whose uncertain rows are settled exactly).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import queue
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from newsletter import config as config_module
from newsletter.compose.checks import Finding, check_rendered
from newsletter.config import Settings
from newsletter.errors import ConfigError, InputError, NewsletterError, TransportError
from newsletter.compose.issue.parse import Issue, load_issue
from newsletter.mail.message import MessageFactory, OutgoingMessage, Recipient, random_message_id
from newsletter.compose.render import Rendered, Renderer, SlottedText
from newsletter.store import Store, ledger
from newsletter.store.lists import find_list_id
from newsletter.store.ledger import Claimed, LedgerCounts, Outcome, StoredIssue
from newsletter.store.schema import FAILED, PERMANENT, QUEUED, SENDING, SENT, SKIPPED, TEMPORARY
from newsletter.tokens import Links, Tokens
from newsletter.transports.base import STOPPED, RecordingTransport, SendQuota, Transport, WirePacedTransport, open_transport

# Temporary failures are retried this many times in all, waiting 1, 2, 4... seconds (with
# full jitter, so throttled workers do not retry in lockstep) up to MAX_BACKOFF.
MAX_ATTEMPTS = 4
BASE_BACKOFF = 1.0
MAX_BACKOFF = 30.0
HEARTBEAT_SECONDS = 5.0
# Measured against LocalSes: requests reach the server ~5 ms after the pacer lets them go,
# give or take ~10 ms on a quiet machine, which with exact 1/rate spacing puts rate + 1 of them
# into some one-second window (and SES answers 429).  With 1.5 % wider spacing any rate + 1
# consecutive releases are >= 1.015 s apart, at the cost of sending 1.5 % below the rate; the
# rarer longer delays of a loaded machine still show (bench/RESULTS.md, "Pacing").
PACE_MARGIN = 0.015
TEST_SUBJECT_PREFIX = "[TEST] "
OUTBOX_CLAIM_WINDOW = 200


@dataclass(frozen=True)
class SendOptions:
    list_slug: str | None = None
    rate: float | None = None
    workers: int | None = None
    retry_failed: bool = False
    resend_uncertain: bool = False
    force: bool = False
    templates_dir: Path | None = None


@dataclass
class SendPlan:
    """What `run_send` will do; everything the CLI shows before asking for confirmation."""

    settings: Settings
    store: Store
    options: SendOptions
    issue: Issue
    rendered: Rendered
    stored: StoredIssue
    list_slug: str
    list_id: int
    counts: LedgerCounts
    # Rows that will be attempted: the queued ones, or the whole audience before the snapshot.
    audience: int
    findings: list[Finding]
    rate: float | None
    workers: int
    quota: SendQuota | None
    notes: list[str] = field(default_factory=list)

    @property
    def snapshotted(self) -> bool:
        return self.stored.snapshot_at is not None

    @property
    def complete(self) -> bool:
        return self.stored.completed_at is not None and not self.audience

    def message_factory(self, *, subject_prefix: str = "") -> MessageFactory:
        return MessageFactory(
            self.settings,
            self.rendered,
            issue_id=self.stored.id,
            issue_uid=self.stored.uid,
            list_slug=self.list_slug,
            links=Links(self.settings.base_url, Tokens(self.settings.newsletter.secret)),
            subject_prefix=subject_prefix,
        )

    @property
    def blocked(self) -> bool:
        return any(f.failed for f in self.findings) and not self.options.force


@dataclass
class SendSummary:
    sent: int = 0
    failed_temporary: int = 0
    failed_permanent: int = 0
    skipped: int = 0
    uncertain: int = 0
    handed_back: int = 0
    elapsed: float = 0.0
    stopped: str | None = None
    failures: Counter = field(default_factory=Counter)
    ledger: LedgerCounts = field(default_factory=LedgerCounts)
    complete: bool = False

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


ProgressCallback = Callable[[SendSummary, int], None]


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


def plan_send(settings: Settings, store: Store, issue_file: Path, options: SendOptions) -> SendPlan:
    """Render and check the issue, store it, and work out audience, rate and workers.

    Writes only the issue's own row (content, links); no ledger row changes here.
    """
    require_sending_secret(settings)
    issue = load_issue(issue_file, default_language=settings.newsletter.language)
    fresh = Renderer(settings, options.templates_dir).render(issue)
    findings = check_rendered(fresh, settings)
    email_html, email_text = fresh.html.marked(), fresh.text.marked()
    source_sha = ledger.source_digest(email_html + email_text + fresh.web_html)
    notes: list[str] = []
    with store.begin() as conn:
        stored = ledger.get_issue(conn, issue.slug)
        list_slug = _list_slug(settings, options, issue, stored, conn)
        list_id = find_list_id(conn, list_slug)
        if list_id is None:
            raise InputError(
                f"there is no list {list_slug!r}; import subscribers into it first "
                f"(newsletter subscribers import FILE --list {list_slug})"
            )
        stored = ledger.save_issue(
            conn,
            slug=issue.slug,
            title=issue.title,
            subject=issue.subject,
            preheader=issue.preheader,
            issue_date=issue.date,
            language=issue.language,
            list_id=list_id,
            email_html=email_html,
            email_text=email_text,
            web_html=fresh.web_html,
            source_sha256=source_sha,
            link_urls=fresh.links,
        )
        if stored.snapshot_at is not None:
            rendered = _frozen(stored, issue, ledger.issue_links(conn, stored.id))
            if stored.source_sha256 != source_sha:
                notes.append(
                    f"{issue_file} changed since this issue's send began; the rest of its audience gets "
                    "the version already being sent, so everyone receives the same issue"
                )
            counts = ledger.counts(conn, stored.id)
            audience = counts.queued
            if options.retry_failed:
                audience += counts.failed_temporary
            if options.resend_uncertain:
                audience += counts.sending
        else:
            rendered = fresh
            counts = LedgerCounts()
            audience = ledger.count_audience(conn, list_id)
    quota = _quota(settings)
    rate = _effective_rate(settings, options, quota, notes)
    workers = options.workers or _default_workers(settings, rate)
    if quota is not None and quota.remaining_24_hours is not None and audience > quota.remaining_24_hours:
        notes.append(
            f"SES allows {int(quota.remaining_24_hours)} more messages in the current 24 hours; the send will stop "
            "there and resume when you run it again"
        )
    return SendPlan(
        settings=settings,
        store=store,
        options=options,
        issue=issue,
        rendered=rendered,
        stored=stored,
        list_slug=list_slug,
        list_id=list_id,
        counts=counts,
        audience=audience,
        findings=findings,
        rate=rate,
        workers=workers,
        quota=quota,
        notes=notes,
    )


def require_sending_secret(settings: Settings) -> None:
    Tokens(settings.newsletter.secret)  # raises ConfigError naming the key when it is empty
    if settings.newsletter.secret == config_module.DEMO_SECRET and settings.transport.kind != "outbox":
        raise ConfigError(
            "is the example configuration's demo secret; set a long random one (NEWSLETTER_SECRET) "
            "before sending real mail",
            key="newsletter.secret",
            source=settings.source,
        )


def _list_slug(settings: Settings, options: SendOptions, issue: Issue, stored: StoredIssue | None, conn) -> str:
    wanted = options.list_slug or issue.list or settings.newsletter.list
    if stored is not None and stored.snapshot_at is not None and stored.list_id is not None:
        sent_to = ledger.list_slug(conn, stored.list_id)
        if options.list_slug and options.list_slug != sent_to:
            raise InputError(
                f"issue {issue.slug!r} is being sent to list {sent_to!r}; it cannot go to {options.list_slug!r} as well"
            )
        return sent_to
    return wanted


def _frozen(stored: StoredIssue, issue: Issue, link_urls: list[str]) -> Rendered:
    """The issue as stored when its send began."""
    return Rendered(
        issue=dataclasses.replace(issue, subject=stored.subject),
        html=SlottedText.parse(stored.email_html),
        text=SlottedText.parse(stored.email_text),
        web_html=stored.web_html,
        links=tuple(link_urls),
    )


def _quota(settings: Settings) -> SendQuota | None:
    if settings.transport.kind != "ses":
        return None
    with open_transport(settings) as transport:
        return transport.quota()


def _effective_rate(settings: Settings, options: SendOptions, quota: SendQuota | None, notes: list[str]) -> float | None:
    """--rate, else the configured rate, else SES's MaxSendRate; never above MaxSendRate."""
    configured = {"smtp": settings.transport.smtp.rate, "ses": settings.transport.ses.rate}.get(settings.transport.kind, 0)
    rate = options.rate or configured or None
    if quota is not None and quota.max_send_rate > 0:
        if rate is None:
            rate = quota.max_send_rate
        elif rate > quota.max_send_rate:
            notes.append(f"SES allows {quota.max_send_rate:g} messages/s; sending at that rate instead of {rate:g}")
            rate = quota.max_send_rate
    return rate


def _default_workers(settings: Settings, rate: float | None) -> int:
    """Enough threads to reach the rate: an SES call takes ~50-150 ms, an SMTP transaction
    longer; the outbox writes local files, where more threads only fight over the GIL."""
    if settings.transport.kind == "outbox":
        return 1
    latency = 0.15 if settings.transport.kind == "ses" else 0.3
    wanted = math.ceil((rate or 20) * latency) + 1
    return max(1, min(wanted, 32 if settings.transport.kind == "ses" else 8))


# ---------------------------------------------------------------------------
# Pacing
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


def run_send(plan: SendPlan, *, progress: ProgressCallback | None = None, transport: Transport | None = None) -> SendSummary:
    """Send the issue to everyone still queued; resumable at any point."""
    if plan.blocked:
        failed = "; ".join(str(f) for f in plan.findings if f.failed)
        raise InputError(f"checks failed, nothing sent (use --force to send anyway): {failed}")
    campaign = _Campaign(plan, transport)
    return campaign.run(progress)


class _Campaign:
    def __init__(self, plan: SendPlan, transport: Transport | None) -> None:
        self.plan = plan
        self.store = plan.store
        self.settings = plan.settings
        self.issue_id = plan.stored.id
        self.me = ledger.this_sender()
        self.own_transport = transport is None
        self.transport = transport or open_transport(plan.settings, workers=plan.workers)
        self.factory = plan.message_factory()
        self.tags = {"issue": plan.stored.slug, "list": plan.list_slug}
        self.sender = plan.settings.from_address
        self.pacer = Pacer(plan.rate)
        self.stop = threading.Event()
        self.summary = SendSummary()
        self.work: queue.Queue[Claimed | None] = queue.Queue()
        self.results: queue.Queue[Outcome] = queue.Queue()

    # -- the main thread ----------------------------------------------------

    def run(self, progress: ProgressCallback | None) -> SendSummary:
        started = time.monotonic()
        try:
            with self.store.begin() as conn:
                other = ledger.claim_sender(conn, self.issue_id, self.me)
            if other is not None:
                raise NewsletterError(
                    f"another send of {self.plan.stored.slug!r} is running ({other}); wait for it or stop it first"
                )
            try:
                self._settle_uncertain()
                self._prepare_queue()
                self._loop(progress, started)
            finally:
                with self.store.begin() as conn:
                    ledger.release_sender(conn, self.issue_id, self.me)
        finally:
            if self.own_transport:
                self.transport.close()
        with self.store.begin() as conn:
            self.summary.complete = ledger.mark_complete_if_done(conn, self.issue_id)
            self.summary.ledger = ledger.counts(conn, self.issue_id)
        self.summary.uncertain = self.summary.ledger.sending
        self.summary.elapsed = time.monotonic() - started
        return self.summary

    def _settle_uncertain(self) -> None:
        """Rows left in `sending` by a crash: settle them where the transport can tell,
        requeue them if asked, otherwise leave them (and report them)."""
        with self.store.read() as conn:
            uncertain = list(ledger.uncertain_rows(conn, self.issue_id))
        if not uncertain:
            return
        if isinstance(self.transport, RecordingTransport):
            arrived = [Outcome(row_id, SENT) for row_id, message_id, _ in uncertain if message_id and self.transport.contains(message_id)]
            missing = [row_id for row_id, message_id, _ in uncertain if not (message_id and self.transport.contains(message_id))]
            with self.store.begin() as conn:
                ledger.record(conn, arrived)
                if missing:
                    ledger.requeue(conn, self.issue_id, status=SENDING, ids=missing)
            self.plan.notes.append(
                f"{len(uncertain)} messages were in flight when an earlier send stopped: "
                f"{len(arrived)} had reached the outbox, {len(missing)} had not and are sent now"
            )
        elif self.plan.options.resend_uncertain:
            with self.store.begin() as conn:
                ledger.requeue(conn, self.issue_id, status=SENDING)

    def _prepare_queue(self) -> None:
        with self.store.begin() as conn:
            if self.plan.stored.snapshot_at is None:
                ledger.snapshot_audience(conn, self.issue_id, self.plan.list_id)
            if self.plan.options.retry_failed:
                ledger.requeue(conn, self.issue_id, status=FAILED, failure=TEMPORARY)

    def _loop(self, progress: ProgressCallback | None, started: float) -> None:
        workers = [threading.Thread(target=self._worker, name=f"send-{n}", daemon=True) for n in range(self.plan.workers)]
        for worker in workers:
            worker.start()
        window = self._claim_window()
        # Claim when the window is half empty, not after every message: one transaction
        # per half window instead of one per message.
        low_water = window // 2
        in_flight = 0
        exhausted = False
        last_heartbeat = time.monotonic()
        restore_signals = self._stop_on_signals()
        try:
            while True:
                try:
                    if not exhausted and not self.stop.is_set() and in_flight <= low_water:
                        with self.store.begin() as conn:
                            claimed, skipped = ledger.claim(conn, self.issue_id, window - in_flight, self.factory.message_id)
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
                        break
                    if time.monotonic() - last_heartbeat > HEARTBEAT_SECONDS:
                        with self.store.begin() as conn:
                            ledger.refresh_sender(conn, self.issue_id, self.me)
                        last_heartbeat = time.monotonic()
                except KeyboardInterrupt:
                    # Ctrl-C: let the messages in flight finish, hand back the rest.
                    self.summary.stopped = self.summary.stopped or "interrupted"
                    self.stop.set()
        finally:
            restore_signals()
            for _ in workers:
                self.work.put(None)
            for worker in workers:
                worker.join()
            # Rows still in the work queue when we stopped were never tried.
            self._collect(block=False)

    def _claim_window(self) -> int:
        """How many rows may be claimed and not yet recorded.

        After a crash these are the uncertain rows, so for SMTP and SES the window stays at
        twice the workers.  The outbox settles uncertain rows exactly (`contains`), so there
        a wide window only saves transactions.
        """
        if isinstance(self.transport, RecordingTransport):
            return OUTBOX_CLAIM_WINDOW
        return max(2, self.plan.workers * 2)

    def _stop_on_signals(self) -> Callable[[], None]:
        """While the loop runs, Ctrl-C and SIGTERM set the stop flag instead of raising.

        A KeyboardInterrupt can land anywhere: between a claim's commit and the hand-over to
        the workers (rows left `sending` that never left), or between taking outcomes off the
        queue and recording them (rows that went out, then reported uncertain).  A second
        Ctrl-C raises as usual, for an editor who will not wait.  Returns the undo.
        """
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def interrupted(signum, frame) -> None:
            self.summary.stopped = self.summary.stopped or "interrupted"
            self.stop.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = {number: signal.signal(number, interrupted) for number in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for number, handler in previous.items():
                signal.signal(number, handler)

        return restore

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
            with self.store.begin() as conn:
                ledger.record(conn, [o for o in outcomes if o.status != SENDING])
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
        elif outcome.status == QUEUED:
            summary.handed_back += 1

    # -- worker threads -----------------------------------------------------

    def _worker(self) -> None:
        while True:
            item = self.work.get()
            if item is None:
                return
            try:
                outcome = self._deliver(item)
            except Exception as err:  # a bug must not leave its row claimed forever
                outcome = Outcome(item.delivery_id, QUEUED, error=f"internal error: {err!r}")
                self.stop.set()
                self.summary.stopped = f"internal error: {err!r}"
            self.results.put(outcome)

    def _deliver(self, item: Claimed) -> Outcome:
        if self.stop.is_set():
            return Outcome(item.delivery_id, QUEUED)
        try:
            message = self.factory.build(Recipient(item.subscriber_id, item.email, item.name), message_id=item.message_id)
        except InputError as err:
            return Outcome(item.delivery_id, FAILED, failure=PERMANENT, error=str(err))
        return self._send_with_retries(item, message)

    def _send_with_retries(self, item: Claimed, message: OutgoingMessage) -> Outcome:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                provider_id = self._paced_send(message)
                return Outcome(item.delivery_id, SENT, provider_message_id=provider_id, attempts=attempt - 1)
            except TransportError as err:
                if err.code == STOPPED:
                    return Outcome(item.delivery_id, QUEUED, attempts=attempt - 1)
                if err.uncertain:
                    # It may have gone out: retrying could send a second copy.
                    return Outcome(item.delivery_id, SENDING, error=str(err))
                if err.stops_send:
                    self.summary.stopped = str(err)
                    self.stop.set()
                    return Outcome(item.delivery_id, QUEUED, attempts=attempt - 1)
                if err.permanent:
                    return Outcome(item.delivery_id, FAILED, failure=PERMANENT, error=str(err), attempts=attempt - 1)
                if attempt == MAX_ATTEMPTS:
                    return Outcome(item.delivery_id, FAILED, failure=TEMPORARY, error=str(err), attempts=attempt - 1)
                if self.stop.wait(backoff(attempt)):
                    return Outcome(item.delivery_id, QUEUED, attempts=attempt)
        raise AssertionError("unreachable")  # pragma: no cover


    def _paced_send(self, message: OutgoingMessage) -> str:
        """One try, released by the pacer: at the wire where the transport can do that."""
        pace = lambda: self.pacer.wait(self.stop)  # noqa: E731
        if isinstance(self.transport, WirePacedTransport):
            return self.transport.send_paced(
                message.data, sender=self.sender, recipient=message.recipient, tags=self.tags, pace=pace
            )
        if not pace():
            raise TransportError("stopped before sending", permanent=False, code=STOPPED)
        return self.transport.send(message.data, sender=self.sender, recipient=message.recipient, tags=self.tags)


# ---------------------------------------------------------------------------
# Test sends and dry runs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    address: str
    provider_message_id: str | None
    error: str | None


def send_test(plan: SendPlan, addresses: list[str], *, transport: Transport | None = None) -> list[TestResult]:
    """Send the issue to `addresses` only, subject prefixed [TEST], no ledger rows.

    Its links and unsubscribe link work (they name subscriber 0, whom the web side treats as
    a test reader), so the editor can click through what subscribers will get.
    """
    from newsletter.audience.subscribers import normalize_address

    factory = plan.message_factory(subject_prefix=TEST_SUBJECT_PREFIX)
    results = []
    owned = transport is None
    transport = transport or open_transport(plan.settings)
    try:
        for raw in addresses:
            address = normalize_address(raw).email
            message = factory.build(Recipient(0, address), message_id=random_message_id(plan.settings.sender_domain))
            try:
                provider_id = transport.send(
                    message.data, sender=plan.settings.from_address, recipient=message.recipient, tags={"issue": plan.stored.slug, "test": "yes"}
                )
                results.append(TestResult(address, provider_id, None))
            except TransportError as err:
                results.append(TestResult(address, None, str(err)))
    finally:
        if owned:
            transport.close()
    return results


@dataclass
class DryRunSummary:
    built: int = 0
    bytes: int = 0
    unsendable: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def dry_run(plan: SendPlan, *, progress: Callable[[int], None] | None = None) -> DryRunSummary:
    """Build every message the send would send, and send none; the ledger is not touched.

    Recipients are streamed from the database, so memory stays flat in the audience size.
    """
    import sqlalchemy as sa

    from newsletter.store.schema import deliveries, subscribers

    factory = plan.message_factory()
    if plan.snapshotted:
        # The rows the send would take: as `_prepare_queue` and `_settle_uncertain` requeue.
        wanted = deliveries.c.status == QUEUED
        if plan.options.retry_failed:
            wanted = wanted | ((deliveries.c.status == FAILED) & (deliveries.c.failure == TEMPORARY))
        if plan.options.resend_uncertain:
            wanted = wanted | (deliveries.c.status == SENDING)
        query = (
            sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.name)
            .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
            .where(deliveries.c.issue_id == plan.stored.id, wanted)
        )
    else:
        query = ledger.audience_query(plan.list_id)
    summary = DryRunSummary()
    started = time.monotonic()
    with plan.store.read() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
        for subscriber_id, email, name in rows:
            try:
                message = factory.build(Recipient(subscriber_id, email, name))
            except InputError as err:
                summary.unsendable.append(str(err))
                continue
            summary.built += 1
            summary.bytes += len(message.data)
            if progress is not None and summary.built % 1000 == 0:
                progress(summary.built)
    summary.elapsed = time.monotonic() - started
    return summary
