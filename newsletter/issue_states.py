"""Every issue and where it stands: the numbers behind `newsletter issues`.

    states = issue_states(settings, store)     # newest first

An issue is each Markdown file in issues/ and each issue in the database (a file may be
gone, an issue may never have been stored).  Its state:

- draft: never sent (nor scheduled);
- scheduled: waiting for its time (`send --at`);
- refused: its schedule was not sent because it was stale (`note` says why);
- sending: a send is running now (a live sender, or a scheduled send in progress);
- sent: complete, every ledger row sent, skipped or failed permanently;
- incomplete: begun, and rows are left queued, failed temporarily or uncertain (in flight
  when a send stopped), which another run may still deliver.

Complete and incomplete are decided by `newsletter.sending.state`, the rule `send` and
`stats` use too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.sending.state import COMPLETE, pending, send_state
from newsletter.store import Store, ledger
from newsletter.store import schedule as queries
from newsletter.store.schema import REFUSED, RUNNING, SCHEDULED

DRAFT, SCHEDULED_STATE, REFUSED_STATE, SENDING, SENT, INCOMPLETE = (
    "draft",
    "scheduled",
    "refused",
    "sending",
    "sent",
    "incomplete",
)


@dataclass(frozen=True)
class IssueState:
    slug: str
    title: str
    issue_date: date | None
    state: str
    file: str | None = None
    scheduled_at: datetime | None = None
    timezone: str = ""
    recipients: int = 0
    sent: int = 0
    queued: int = 0
    failed_temporary: int = 0
    uncertain: int = 0
    completed_at: datetime | None = None
    note: str = ""
    # When rows failed temporarily are due again (sending/retry.py).
    next_retry_at: datetime | None = None

    @property
    def left(self) -> int:
        """Rows another run may still deliver: queued, failed temporarily, uncertain."""
        return self.queued + self.failed_temporary + self.uncertain

    def as_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "title": self.title,
            "date": self.issue_date.isoformat() if self.issue_date else None,
            "state": self.state,
            "file": self.file,
            "scheduled_at": _iso(self.scheduled_at),
            "timezone": self.timezone or None,
            "recipients": self.recipients,
            "sent": self.sent,
            "queued": self.queued,
            "failed_temporary": self.failed_temporary,
            "uncertain": self.uncertain,
            "completed_at": _iso(self.completed_at),
            "next_retry_at": _iso(self.next_retry_at),
            "note": self.note or None,
        }


def issue_states(settings: Settings, store: Store) -> list[IssueState]:
    """Every issue file and stored issue with its state, newest first."""
    from newsletter.compose.issue.parse import load_issue
    from newsletter.sending.schedule import format_time

    found: dict[str, IssueState] = {}
    directory = settings.path("issues")
    for path in sorted(directory.glob("*.md")) if directory.is_dir() else []:
        shown = _shown(path)
        try:
            issue = load_issue(path, default_language=settings.newsletter.language)
        except NewsletterError as err:
            found[path.stem] = IssueState(path.stem, "", None, DRAFT, file=shown, note=f"does not parse: {err}")
            continue
        found[issue.slug] = IssueState(issue.slug, issue.title, issue.date, DRAFT, file=shown)
    with store.read() as conn:
        schedules = queries.all_schedules(conn)
        for row in queries.issue_overview_rows(conn):
            counts = ledger.counts(conn, row.id)
            schedule = schedules.get(row.id)
            state, note = _state(row, counts, schedule)
            next_retry = ledger.next_retry_at(conn, row.id) if counts.failed_temporary else None
            if state == INCOMPLETE and next_retry is not None:
                note += f"; the next run retries {counts.failed_temporary} from {next_retry:%Y-%m-%d %H:%M} UTC"
            if schedule is not None and state in (SCHEDULED_STATE, REFUSED_STATE) and schedule.note:
                note = schedule.note
            elif schedule is not None and state == SCHEDULED_STATE:
                note = f"sends {format_time(schedule.send_at, schedule.timezone)}"
            known = found.get(row.slug)
            found[row.slug] = IssueState(
                slug=row.slug,
                title=row.title,
                issue_date=row.issue_date,
                state=state,
                file=known.file if known else None,
                scheduled_at=schedule.send_at if schedule is not None and schedule.state != "cancelled" else None,
                timezone=schedule.timezone if schedule is not None else "",
                recipients=counts.total,
                sent=counts.sent,
                queued=counts.queued,
                failed_temporary=counts.failed_temporary,
                uncertain=counts.sending,
                completed_at=row.completed_at,
                note=note,
                next_retry_at=next_retry,
            )
    return sorted(found.values(), key=lambda s: (s.issue_date or date.min, s.slug), reverse=True)


def _state(row: queries.IssueOverviewRow, counts: ledger.LedgerCounts, schedule) -> tuple[str, str]:
    running = schedule is not None and schedule.state == RUNNING
    live_sender = bool(row.sender) and ledger.sender_alive(row.sender or "", row.sender_seen_at)
    if row.snapshot_at is None:
        if running:
            return SENDING, "starting"
        if schedule is not None and schedule.state == SCHEDULED:
            return SCHEDULED_STATE, ""
        if schedule is not None and schedule.state == REFUSED:
            return REFUSED_STATE, ""
        return DRAFT, ""
    if running or live_sender:
        return SENDING, f"{counts.sent} of {counts.total} sent so far"
    left = pending(counts)
    if send_state(counts) == COMPLETE:
        failed = f", {counts.failed_permanent} failed permanently" if counts.failed_permanent else ""
        return SENT, f"{counts.sent} sent{failed}"
    if schedule is not None and schedule.state == SCHEDULED:
        return INCOMPLETE, f"{left} left; its schedule resumes it"
    return INCOMPLETE, f"{left} of {counts.total} not delivered yet (queued, failed temporarily or uncertain)"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
