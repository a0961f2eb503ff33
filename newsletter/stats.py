"""What happened to an issue: the numbers behind `newsletter stats` and `/stats/SLUG`.

    stats = issue_stats(store, "2026-11-30")     # IssueStats, frozen
    stats.as_json()                              # plain JSON types

Definitions (each a count of subscribers, not of events, unless it says otherwise):

- recipients: ledger rows (the audience snapshotted when the send began);
- sent / failed (temporary, permanent) / skipped / pending: ledger rows by status;
- delivered, bounced, complained, rejected, delayed: rows with that SES event; a subscriber
  with a permanent bounce is `hard`, one with only transient bounces `soft`;
- unsubscribed: subscribers who left this issue's list by a link of this issue's mail (our
  link, Gmail's one-click button, the preference page, a mailto, or SES's list
  management); leaving only another list from this issue's preference page does not count;
- opens and clicks: people and machines.  A subscriber is a person when at least one of
  their opens (clicks) was not marked as a machine's (scanner, privacy proxy, a click within
  seconds of delivery), otherwise a machine; so people + machines = all who opened;
- links: every link of the email with its clicks (events, machines included), machine
  clicks, and the people who clicked it;
- timeline: opens and clicks (events) per hour, hour 0 being the hour the send started;
  hours with nothing are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from newsletter.errors import InputError
from newsletter.sending.state import send_state
from newsletter.store import Store, ledger
from newsletter.store import stats as queries
from newsletter.store.memberships import list_of_issue
from newsletter.store.schema import (
    BOUNCE,
    COMPLAINT,
    DELIVERY,
    DELIVERY_DELAY,
    REJECT,
    UNSUBSCRIBE,
)

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Audience:
    """People, and machines standing in for them."""

    people: int = 0
    machines: int = 0

    @property
    def total(self) -> int:
        return self.people + self.machines


@dataclass(frozen=True)
class LinkStats:
    index: int
    url: str
    clicks: int
    machine_clicks: int
    people: int
    # The link's words and the entry it sits in (None for a template's own links).
    text: str | None = None
    entry: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class EntryStats:
    """Clicks on the links of one entry (a story), related news, or the template's links."""

    # None for the links outside every entry and the related news: the template's own.
    title: str | None
    category: str | None
    clicks: int
    machine_clicks: int
    people: int


@dataclass(frozen=True)
class CategoryStats:
    category: str
    clicks: int
    machine_clicks: int
    people: int


@dataclass(frozen=True)
class TimelineHour:
    hour: int  # hours since the hour the send started
    start: datetime
    opens: int  # by people
    clicks: int
    machine_opens: int
    machine_clicks: int


NOT_SENT = "not sent"


@dataclass(frozen=True)
class IssueStats:
    slug: str
    title: str
    subject: str
    language: str
    issue_date: date
    send_started_at: datetime | None
    completed_at: datetime | None
    recipients: int
    sent: int
    pending: int
    skipped: int
    failed_temporary: int
    failed_permanent: int
    delivered: int
    bounced_hard: int
    bounced_soft: int
    complained: int
    rejected: int
    delayed: int
    unsubscribed: int
    opens: Audience
    clicks: Audience
    links: tuple[LinkStats, ...]
    timeline: tuple[TimelineHour, ...]
    # Clicks per entry in the issue's order (then related news, then the template's links),
    # and per category, most clicked first.
    entries: tuple[EntryStats, ...] = ()
    categories: tuple[CategoryStats, ...] = ()
    # complete | incomplete (newsletter/sending/state.py), or "not sent" before the send began.
    state: str = NOT_SENT

    @property
    def undelivered(self) -> int:
        """Rows another run may still deliver: queued, uncertain, failed temporarily."""
        return self.pending + self.failed_temporary

    @property
    def failed(self) -> int:
        return self.failed_temporary + self.failed_permanent

    @property
    def bounced(self) -> int:
        return self.bounced_hard + self.bounced_soft

    def share_of_sent(self, number: int) -> float | None:
        """`number` as a fraction of the messages sent (None before anything was sent)."""
        return number / self.sent if self.sent else None

    def summary(self) -> tuple[SummaryRow, ...]:
        """The summary table of `newsletter stats` and `/stats/SLUG`, in its order."""
        return tuple(
            SummaryRow(name, label, value(self), self.share_of_sent(value(self)) if share else None)
            for name, label, value, share in _SUMMARY
        )

    def as_json(self) -> dict[str, Any]:
        """Plain JSON types; times in ISO 8601 UTC."""
        data = _jsonable(dataclasses.asdict(self))
        data["failed"] = self.failed
        data["bounced"] = self.bounced
        return data


@dataclass(frozen=True)
class SummaryRow:
    """One line of an issue's summary table."""

    # Names the row: the web page's words are `stats_<name>` in i18n.py.
    name: str
    # The terminal's label (English, like the rest of the command line).
    label: str
    value: int
    # The value as a share of the messages sent; None for rows that are not about sent
    # messages (recipients, sent, and those never sent) and before anything was sent.
    share: float | None


# (name, label, value, shown as a share of sent) in the order an editor reads a send: how
# many it went to, what happened on the way, what readers did.
_SUMMARY: tuple[tuple[str, str, Callable[[IssueStats], int], bool], ...] = (
    ("recipients", "recipients", lambda s: s.recipients, False),
    ("sent", "sent", lambda s: s.sent, False),
    ("pending", "not sent yet", lambda s: s.pending, False),
    ("skipped", "skipped", lambda s: s.skipped, False),
    ("failed_temporary", "failed (temporary)", lambda s: s.failed_temporary, False),
    ("failed_permanent", "failed (permanent)", lambda s: s.failed_permanent, False),
    ("delivered", "delivered", lambda s: s.delivered, True),
    ("bounced_hard", "bounced (hard)", lambda s: s.bounced_hard, True),
    ("bounced_soft", "bounced (soft)", lambda s: s.bounced_soft, True),
    ("complained", "complained", lambda s: s.complained, True),
    ("rejected", "rejected by SES", lambda s: s.rejected, True),
    ("delayed", "delivery delayed", lambda s: s.delayed, True),
    ("unsubscribed", "unsubscribed", lambda s: s.unsubscribed, True),
    ("opened_people", "opened (people)", lambda s: s.opens.people, True),
    ("opened_machines", "opened (machines)", lambda s: s.opens.machines, True),
    ("clicked_people", "clicked (people)", lambda s: s.clicks.people, True),
    ("clicked_machines", "clicked (machines)", lambda s: s.clicks.machines, True),
)


@dataclass(frozen=True)
class IssueSummary:
    """One line of the list of issues."""

    slug: str
    title: str
    issue_date: date
    send_started_at: datetime | None
    completed_at: datetime | None
    recipients: int
    sent: int
    opened: int  # people
    clicked: int  # people


def issue_stats(store: Store, slug: str) -> IssueStats:
    """The numbers of the issue `slug`; InputError if there is no such issue."""
    with store.read() as conn:
        issue = queries.issue_row(conn, slug)
        if issue is None:
            raise InputError(_no_issue(slug, [row.slug for row in queries.issue_rows(conn)]))
        tally = ledger.counts(conn, issue.id)
        first_sent = queries.first_sent_at(conn, issue.id)
        hard, soft = _bounces(queries.event_details(conn, issue.id, BOUNCE))
        opens = Audience(*queries.people_and_machines(conn, issue.id, queries.OPEN_KINDS))
        clicks = Audience(*queries.people_and_machines(conn, issue.id, queries.CLICK_KINDS))
        link_rows = queries.link_rows(conn, issue.id)
        by_entry = queries.entry_clicks(conn, issue.id)
        by_category = queries.category_clicks(conn, issue.id)
        hourly = queries.hourly_activity(conn, issue.id)
        with_event = {
            kind: queries.recipients_with(conn, issue.id, (kind,))
            for kind in (DELIVERY, COMPLAINT, REJECT, DELIVERY_DELAY)
        }
        issue_list = list_of_issue(conn, issue.id)
        with_event[UNSUBSCRIBE] = _left_the_list(
            queries.event_details(conn, issue.id, UNSUBSCRIBE), issue_list.slug if issue_list else None
        )
    started = issue.snapshot_at or first_sent
    return IssueStats(
        state=send_state(tally) if issue.snapshot_at is not None else NOT_SENT,
        slug=issue.slug,
        title=issue.title,
        subject=issue.subject,
        language=issue.language,
        issue_date=issue.issue_date,
        send_started_at=started,
        completed_at=issue.completed_at,
        recipients=tally.total,
        sent=tally.sent,
        pending=tally.queued + tally.sending,
        skipped=tally.skipped,
        failed_temporary=tally.failed_temporary,
        failed_permanent=tally.failed_permanent,
        delivered=with_event[DELIVERY],
        bounced_hard=hard,
        bounced_soft=soft,
        complained=with_event[COMPLAINT],
        rejected=with_event[REJECT],
        delayed=with_event[DELIVERY_DELAY],
        unsubscribed=with_event[UNSUBSCRIBE],
        opens=opens,
        clicks=clicks,
        links=tuple(
            LinkStats(r.idx, r.url, r.clicks, r.machine_clicks, r.people, r.text, r.entry, r.category)
            for r in link_rows
        ),
        timeline=_timeline(hourly, started),
        entries=_entries(by_entry),
        categories=tuple(
            CategoryStats(row.key[0], row.clicks, row.machine_clicks, row.people)
            for row in sorted(by_category, key=lambda row: (-row.clicks, -row.people, row.key[0] or ""))
            if row.key[0]
        ),
    )


def _left_the_list(unsubscribes: list[tuple[int | None, Any]], list_slug: str | None) -> int:
    """Distinct subscribers whose unsubscribe took them off `list_slug`.  An event names the
    lists it left (`detail.lists`); one without (SES list management, events from before
    per-list standings) left everything."""
    left = set()
    for subscriber_id, detail in unsubscribes:
        lists = detail.get("lists") if isinstance(detail, Mapping) else None
        if subscriber_id is not None and (lists is None or list_slug is None or list_slug in lists):
            left.add(subscriber_id)
    return len(left)


def issue_summaries(store: Store) -> list[IssueSummary]:
    """Every stored issue, newest first, with its headline numbers."""
    summaries = []
    with store.read() as conn:
        for issue in queries.issue_rows(conn):
            tally = ledger.counts(conn, issue.id)
            opened, _ = queries.people_and_machines(conn, issue.id, queries.OPEN_KINDS)
            clicked, _ = queries.people_and_machines(conn, issue.id, queries.CLICK_KINDS)
            summaries.append(
                IssueSummary(
                    slug=issue.slug,
                    title=issue.title,
                    issue_date=issue.issue_date,
                    send_started_at=issue.snapshot_at,
                    completed_at=issue.completed_at,
                    recipients=tally.total,
                    sent=tally.sent,
                    opened=opened,
                    clicked=clicked,
                )
            )
    return summaries


def resolve_issue_slug(argument: str, *, default_language: str) -> str:
    """ISSUE as the editor types it: a slug, or the issue's Markdown file."""
    path = Path(argument)
    if argument.endswith(".md") or path.is_file():
        from newsletter.compose.issue.parse import load_issue

        if not path.is_file():
            raise InputError(f"{argument}: no such issue file")
        return load_issue(path, default_language=default_language).slug
    return argument


def _entries(rows: list[queries.GroupRow]) -> tuple[EntryStats, ...]:
    def order(row: queries.GroupRow) -> tuple[int, int]:
        index, title, _ = row.key
        # Entries in the issue's order, then related news, then the template's links.
        return (0, index) if index is not None else (1 if title else 2, 0)

    return tuple(
        EntryStats(row.key[1], row.key[2], row.clicks, row.machine_clicks, row.people)
        for row in sorted(rows, key=order)
    )


def _no_issue(slug: str, known: list[str]) -> str:
    if not known:
        return f"no issue {slug!r}: nothing has been sent from this database yet"
    shown = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
    return f"no issue {slug!r} in the database (issues: {shown})"


def _bounces(rows: list[tuple[int | None, dict[str, Any] | None]]) -> tuple[int, int]:
    hard: set[int] = set()
    bounced: set[int] = set()
    for subscriber_id, detail in rows:
        if subscriber_id is None:
            continue
        bounced.add(subscriber_id)
        if isinstance(detail, Mapping) and detail.get("permanent"):
            hard.add(subscriber_id)
    return len(hard), len(bounced - hard)


def _timeline(hourly: list[tuple[datetime, str, bool, int]], started: datetime | None) -> tuple[TimelineHour, ...]:
    if not hourly:
        return ()
    hours = sorted({moment for moment, _, _, _ in hourly})
    origin = started.replace(minute=0, second=0, microsecond=0) if started else hours[0]
    # Events stamped before the send (clock skew between machines) still show, at hour 0.
    origin = min(origin, hours[0])
    cells: dict[datetime, dict[str, int]] = {}
    for moment, kind, machine, number in hourly:
        kind_name = "clicks" if kind in queries.CLICK_KINDS else "opens"
        name = f"machine_{kind_name}" if machine else kind_name
        cell = cells.setdefault(moment, {"opens": 0, "clicks": 0, "machine_opens": 0, "machine_clicks": 0})
        cell[name] += number
    return tuple(TimelineHour(hour=int((moment - origin) / HOUR), start=moment, **cells[moment]) for moment in hours)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value
