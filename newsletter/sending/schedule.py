"""Scheduled sends: `send ISSUE --at TIME [--tz ZONE]` checks and freezes the issue now;
`newsletter serve` (a background thread) and `newsletter worker` send it when it is due.

    scheduled = schedule_send(settings, store, Path("issues/2026-12-02.md"), at="2026-12-02 08:00",
                              tz="Asia/Shanghai", options=SendOptions())
    run_due(settings, store)            # send whatever is due now, through the ledger

What is sent at the time is the render checked when it was scheduled (kept in the schedule
row), not the file as it is then.  A due send goes through the same plan, campaign and
ledger as `newsletter send`, so a crash or restart in the middle resumes where it stopped
and sends nobody twice; claiming a due schedule is atomic (store/schedule.py), so two
servers on one database never both start it.

A digest that goes out late is worse than none: a schedule more than 24 hours late, or an
issue dated more than 3 days before its send time, is refused unless it was scheduled
with --force, and `newsletter issues` says why.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Self

from newsletter.compose.issue.parse import parse_issue
from newsletter.compose.link_origins import LinkOrigin
from newsletter.compose.render import Rendered, SlottedText
from newsletter.config import Settings
from newsletter.errors import InputError, NewsletterError
from newsletter.sending.campaign import SendSummary, run_send
from newsletter.sending.plan import SendOptions, SendPlan, plan_rendered, plan_send
from newsletter.store import Store, ledger
from newsletter.store import schedule as queries
from newsletter.store.schedule import ScheduleRow
from newsletter.store.schema import CANCELLED, DONE, REFUSED, RUNNING, SCHEDULED, utcnow

LATE_LIMIT = timedelta(hours=24)
STALE_ISSUE_DAYS = 3
# After an attempt that could not run (transport down, the list gone, another sender), or
# that left rows queued (a spent daily quota), the next try waits this long.
RETRY_DELAY = timedelta(minutes=5)
# How often the runner looks for due schedules: the send starts within this of its time.
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0
TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


# ---- times and zones ----


def resolve_zone(settings: Settings, name: str | None) -> tuple[tzinfo | None, str]:
    """The zone `send --at` is read in: --tz, else [newsletter] timezone, else this machine's
    (None, ""), whose rules the C library applies (daylight saving included)."""
    import zoneinfo

    wanted = name or settings.newsletter.timezone
    if not wanted:
        return None, ""
    try:
        return zoneinfo.ZoneInfo(wanted), wanted
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InputError(f"--tz {wanted!r} is not a time zone; use an IANA name like Asia/Shanghai") from None


def parse_send_time(text: str, zone: tzinfo | None, *, now: datetime) -> datetime:
    """`YYYY-MM-DD HH:MM` (or `HH:MM`: the next such time) in `zone`, as UTC."""
    text = " ".join(text.split())
    naive: datetime | None = None
    for pattern in TIME_FORMATS:
        try:
            naive = datetime.strptime(text, pattern)
            break
        except ValueError:
            continue
    if naive is None:
        try:
            clock = datetime.strptime(text, "%H:%M").time()
        except ValueError:
            raise InputError(
                f"--at {text!r} is not a time; write it as 'YYYY-MM-DD HH:MM' (or 'HH:MM' for the next one)"
            ) from None
        local_now = _in_zone(now, zone).replace(tzinfo=None)
        naive = datetime.combine(local_now.date(), clock)
        if naive <= local_now:
            naive += timedelta(days=1)
    aware = naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()
    # A time the clocks skip (the hour daylight saving starts) does not exist; zoneinfo would
    # quietly move it, so refuse it rather than send at a time nobody asked for.
    if _in_zone(aware.astimezone(UTC), zone).replace(tzinfo=None) != naive:
        raise InputError(f"--at {text!r} does not exist in {_zone_label(zone)} (the clocks skip it); pick another time")
    return aware.astimezone(UTC)


def _in_zone(moment: datetime, zone: tzinfo | None) -> datetime:
    return moment.astimezone(zone) if zone is not None else moment.astimezone()


def _zone_label(zone: tzinfo | None) -> str:
    return str(zone) if zone is not None else "this machine's time zone"


def format_time(moment: datetime, zone_name: str) -> str:
    """`2026-12-02 08:00 CST` in the zone the editor used."""
    zone = _zone_from_name(zone_name)
    local = _in_zone(moment, zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or zone_name}"


def _zone_from_name(name: str) -> tzinfo | None:
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def today(settings: Settings) -> date:
    """Today in [newsletter] timezone, else on this machine."""
    zone, _ = resolve_zone(settings, None)
    return _in_zone(utcnow(), zone).date()


def stale_reason(send_at: datetime, issue_date: date, zone_name: str, *, now: datetime) -> str | None:
    """Why a send at `send_at` would be stale now, or None."""
    if now - send_at > LATE_LIMIT:
        return f"it was due {format_time(send_at, zone_name)}, more than 24 h ago"
    send_day = _in_zone(send_at, _zone_from_name(zone_name)).date()
    if (send_day - issue_date).days > STALE_ISSUE_DAYS:
        return (
            f"the issue is dated {issue_date.isoformat()}, more than {STALE_ISSUE_DAYS} days before its send "
            f"time {format_time(send_at, zone_name)}"
        )
    return None


# ---- scheduling and cancelling ----


@dataclass(frozen=True)
class Scheduled:
    plan: SendPlan
    # None when the checks failed: nothing was scheduled (the plan's findings say why).
    schedule: ScheduleRow | None

    @property
    def when(self) -> str:
        assert self.schedule is not None
        return format_time(self.schedule.send_at, self.schedule.timezone)


def schedule_send(
    settings: Settings,
    store: Store,
    issue_file: Path,
    *,
    at: str,
    tz: str | None,
    options: SendOptions,
    now: datetime | None = None,
) -> Scheduled:
    """Check the issue now, freeze its render and record when to send it."""
    zone, zone_name = resolve_zone(settings, tz)
    now = now or utcnow()
    send_at = parse_send_time(at, zone, now=now)
    if send_at <= now:
        raise InputError(
            f"--at {at!r} is in the past (it is {format_time(now, zone_name)} now); give a later time, "
            "or send now without --at"
        )
    plan = plan_send(settings, store, issue_file, options)
    if plan.blocked:
        return Scheduled(plan, None)
    if plan.snapshotted:
        raise InputError(
            f"the send of {plan.stored.slug!r} has already begun; run `newsletter send {issue_file}` to resume it"
        )
    reason = stale_reason(send_at, plan.issue.date, zone_name, now=now)
    if reason and not options.force:
        raise InputError(f"not scheduled: {reason}; a stale digest is worse than none (--force schedules it anyway)")
    source = Path(issue_file).read_text(encoding="utf-8-sig")
    rendered = plan.rendered
    links = [{"url": url, **origin.as_json()} for url, origin in zip(rendered.links, _origins(rendered), strict=True)]
    with store.begin() as conn:
        current = queries.schedule_of(conn, plan.stored.id)
        if current is not None and current.state == RUNNING:
            raise InputError(f"the scheduled send of {plan.stored.slug!r} is running now; it cannot be moved")
        row = queries.save_schedule(
            conn,
            plan.stored.id,
            send_at=send_at,
            timezone=zone_name,
            force=options.force,
            list_slug=plan.list_slug,
            source_path=str(issue_file),
            source=source,
            email_html=rendered.html.marked(),
            email_text=rendered.text.marked(),
            web_html=rendered.web_html,
            links=links,
        )
    return Scheduled(plan, row)


def _origins(rendered: Rendered) -> tuple[LinkOrigin, ...]:
    origins = rendered.link_origins
    return origins + (LinkOrigin(),) * (len(rendered.links) - len(origins))


def cancel_send(store: Store, slug: str) -> ScheduleRow:
    """Withdraw the schedule of issue `slug`; the issue stays a draft."""
    with store.begin() as conn:
        stored = ledger.get_issue(conn, slug)
        row = queries.cancel_schedule(conn, stored.id) if stored is not None else None
    if row is None or row.state == CANCELLED:
        raise InputError(f"issue {slug!r} is not scheduled; nothing to cancel")
    if row.state == RUNNING:
        raise InputError(f"the scheduled send of {slug!r} is running now; stop the server or worker sending it")
    if row.state in (DONE, REFUSED):
        raise InputError(f"the schedule of {slug!r} has already ended ({row.state}); nothing to cancel")
    return row


def pending_schedule(store: Store, slug: str) -> ScheduleRow | None:
    """The issue's schedule if it is waiting or running."""
    with store.read() as conn:
        stored = ledger.get_issue(conn, slug)
        row = queries.schedule_of(conn, stored.id) if stored is not None else None
    return row if row is not None and row.state in (SCHEDULED, RUNNING) else None


# ---- running due sends ----


@dataclass(frozen=True)
class DueOutcome:
    slug: str
    state: str  # the schedule's state afterwards
    note: str
    summary: SendSummary | None = None

    def describe(self) -> str:
        return f"{self.slug}: {self.note}"


def run_due(
    settings: Settings,
    store: Store,
    *,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] = utcnow,
) -> list[DueOutcome]:
    """Send every schedule that is due (or was left running by a process that died), one
    after another, until none is left or `stop` is set."""
    stop = stop or threading.Event()
    me = ledger.this_sender()
    outcomes: list[DueOutcome] = []
    while not stop.is_set():
        with store.read() as conn:
            if not queries.anything_due(conn, now()):
                break
        with store.begin() as conn:
            row = queries.claim_due(conn, now(), me, ledger.sender_alive)
        if row is None:
            break
        outcomes.append(_run_one(settings, store, row, me, stop, now))
    return outcomes


def _run_one(
    settings: Settings, store: Store, row: ScheduleRow, me: str, stop: threading.Event, now: Callable[[], datetime]
) -> DueOutcome:
    def release(
        state: str, note: str, *, retry: bool = False, at: datetime | None = None, summary: SendSummary | None = None
    ) -> DueOutcome:
        next_try = at or (now() + RETRY_DELAY if retry else None)
        with store.begin() as conn:
            queries.release(conn, row.id, me, state=state, note=note, next_try_at=next_try)
        return DueOutcome(row.slug, state, note, summary)

    try:
        issue = parse_issue(row.source, path=row.source_path, default_language=settings.newsletter.language)
        with store.read() as conn:
            stored = ledger.get_issue(conn, row.slug)
        begun = stored is not None and stored.snapshot_at is not None
        reason = None if begun or row.force else stale_reason(row.send_at, issue.date, row.timezone, now=now())
        if reason:
            return release(REFUSED, f"not sent: {reason}; a stale digest is worse than none (reschedule with --force)")
        rendered = Rendered(
            issue=issue,
            html=SlottedText.parse(row.email_html),
            text=SlottedText.parse(row.email_text),
            web_html=row.web_html,
            links=tuple(link["url"] for link in row.links),
            link_origins=tuple(
                LinkOrigin(link.get("text") or "", link.get("entry_idx"), link.get("entry"), link.get("category"))
                for link in row.links
            ),
        )
        plan = plan_rendered(
            settings, store, rendered, [], SendOptions(list_slug=row.list_slug, force=row.force, clock=now)
        )
        summary = run_send(plan, progress=_progress(store, row.id, me, stop))
    except NewsletterError as err:
        return release(SCHEDULED, f"attempt failed, trying again in 5 minutes: {err}", retry=True)
    except Exception as err:
        # A bug: hand the schedule back (or it would stay ours, and stuck, while we run)
        # and let the caller log the traceback.
        release(SCHEDULED, f"attempt failed (internal error {err!r}), trying again in 5 minutes", retry=True)
        raise
    counts = summary.ledger
    if summary.stopped == "interrupted" and counts.queued:
        return release(SCHEDULED, f"stopped with {counts.queued} still queued; resumes when a server or worker runs")
    if counts.queued:
        note = f"{counts.queued} still queued ({summary.stopped or 'stopped'}); trying again in 5 minutes"
        return release(SCHEDULED, note, retry=True, summary=summary)
    if counts.failed_temporary and summary.next_retry_at is not None and not summary.stopped_for_good:
        # Automatic retries (retry.py): the schedule comes round again when the first is due.
        due = max(summary.next_retry_at, now())
        note = (
            f"sent {counts.sent}; {counts.failed_temporary} failed temporarily, "
            f"tried again from {due:%Y-%m-%d %H:%M:%S} UTC"
        )
        return release(SCHEDULED, note, at=due, summary=summary)
    note = f"sent {counts.sent}" + (
        "" if summary.complete and not (counts.failed_temporary or counts.sending) else " (incomplete: see issues)"
    )
    return release(DONE, note, summary=summary)


def _progress(store: Store, schedule_id: int, me: str, stop: threading.Event):
    """The campaign's progress callback: says the schedule's holder is alive, and stops the
    send cleanly (as Ctrl-C does) when the server is shutting down."""
    last = time.monotonic()

    def progress(summary: SendSummary, total: int) -> None:
        nonlocal last
        if stop.is_set():
            raise KeyboardInterrupt
        if time.monotonic() - last > HEARTBEAT_SECONDS:
            with store.begin() as conn:
                queries.heartbeat(conn, schedule_id, me)
            last = time.monotonic()

    return progress


def run_worker(
    settings: Settings,
    store: Store,
    *,
    stop: threading.Event,
    report: Callable[[str], None],
    poll: float = POLL_SECONDS,
    once: bool = False,
) -> None:
    """Run due sends until `stop` is set (or, with `once`, until nothing is due)."""
    while not stop.is_set():
        try:
            for outcome in run_due(settings, store, stop=stop):
                report(outcome.describe())
        except NewsletterError as err:
            # The database went away for a moment: say so and keep going.
            report(f"scheduled sends: {err}")
        except Exception:  # noqa: BLE001 - the server must go on serving; the schedule was handed back
            import traceback

            report(f"scheduled sends: internal error\n{traceback.format_exc()}")
        if once or stop.wait(poll):
            return


class ScheduleRunner:
    """`newsletter serve`'s background thread running due sends; stops cleanly with it."""

    def __init__(self, settings: Settings, store: Store, *, report: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.report = report or _to_stderr
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scheduled-sends", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        run_worker(self.settings, self.store, stop=self.stop, report=self.report)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
