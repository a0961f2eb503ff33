"""What `newsletter send` says while and after it sends: progress lines without a terminal,
the summary in words, and the summary as one JSON object (`--json`) for scripts.

A cron job or a CI log has no terminal, so rich's progress bar draws nothing there; instead
one line every PROGRESS_EVERY seconds says how far the send is, and the summary at the end
says what happened and what is left, in the words of newsletter/sending/state.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from newsletter.errors import NewsletterError
from newsletter.sending.campaign import SendSummary
from newsletter.sending.plan import SendPlan
from newsletter.sending.state import pending

# Seconds between two progress lines without a terminal.
PROGRESS_EVERY = 10.0


class ProgressLines:
    """A progress callback for the campaign that prints a line every PROGRESS_EVERY seconds."""

    def __init__(self, plan: SendPlan, clock: Callable[[], float] = time.monotonic) -> None:
        self.plan = plan
        self.clock = clock
        self.next_at = clock() + PROGRESS_EVERY

    def __call__(self, summary: SendSummary, total: int) -> None:
        now = self.clock()
        if now < self.next_at:
            return
        self.next_at = now + PROGRESS_EVERY
        click.echo(progress_line(self.plan.stored.slug, summary, total), err=True)


def progress_line(slug: str, summary: SendSummary, total: int) -> str:
    done = summary.sent + summary.failed_permanent + summary.failed_temporary + summary.skipped
    left = max(0, total - done)
    rate = summary.rate
    eta = _duration(left / rate) if rate > 0 and left else ("0 s" if not left else "unknown")
    failed = summary.failed_permanent + summary.failed_temporary
    return (
        f"{slug}: {summary.sent:,} sent, {failed:,} failed, {left:,} pending, "
        f"{rate:.1f}/s, ETA {eta} ({summary.elapsed:.0f} s elapsed)"
    )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def left_to_others(summary: SendSummary) -> bool:
    """Whether all that keeps the issue from complete is the work of senders still running
    (PostgreSQL, sending/senders.py): rows they hold, and queued rows they go on with (a
    claim that skipped the rows another sender was locking, `FOR UPDATE SKIP LOCKED`, ends
    this one's part early)."""
    return (
        bool(summary.other_senders)
        and not summary.stopped
        and not summary.ledger.failed_temporary
        and not summary.uncertain
    )


def error_json(issue: str, error: NewsletterError) -> dict[str, Any]:
    """What `send --json` prints when the send could not start or stopped on an error, so a
    script that parses stdout always finds one object (the line on stderr says the same)."""
    return {"issue": issue, "state": "error", "exit_status": error.exit_code, "error": str(error)}


def summary_json(plan: SendPlan, summary: SendSummary, exit_status: int) -> dict[str, Any]:
    """The summary for scripts: state, counts by outcome (this run and the whole ledger) and
    by reason, elapsed time and achieved rate."""
    counts = summary.ledger
    return {
        "issue": plan.stored.slug,
        "state": summary.state,
        "exit_status": exit_status,
        "this_run": {
            "sent": summary.sent,
            "failed_permanent": summary.failed_permanent,
            "failed_temporary": summary.failed_temporary,
            "skipped": summary.skipped,
            "suppressed": summary.suppressed,
        },
        # This process's part when several senders share the issue (the counts above are
        # this run's too; `ledger` is the whole issue's).
        "this_sender": {"name": summary.this_sender, "sent": summary.sent},
        "other_senders": summary.other_senders,
        "ledger": {
            "total": counts.total,
            "sent": counts.sent,
            "skipped": counts.skipped,
            "failed_permanent": counts.failed_permanent,
            "failed_temporary": counts.failed_temporary,
            "queued": counts.queued,
            "uncertain": summary.uncertain,
            "in_flight_with_other_senders": summary.in_flight_elsewhere,
            "pending": pending(counts),
        },
        "reasons": dict(summary.failures.most_common()),
        "permanent_failures": [{"address": a, "reason": r} for a, r in summary.permanent_failures],
        "throttled": {"times": summary.throttled, "lowest_rate": summary.lowest_rate},
        "database_retries": summary.database_retries,
        "stopped": summary.stopped,
        "next_retry_at": summary.next_retry_at.isoformat().replace("+00:00", "Z") if summary.next_retry_at else None,
        "elapsed_seconds": round(summary.elapsed, 3),
        "rate_per_second": round(summary.rate, 3),
    }


def report(plan: SendPlan, summary: SendSummary, *, to_stderr: bool = False) -> None:
    """The summary as lines; with `to_stderr` (for --json) nothing goes to stdout."""

    def say(line: str) -> None:
        click.echo(line, err=to_stderr)

    counts = summary.ledger
    slug = plan.stored.slug
    tried = summary.sent + summary.failed_permanent + summary.failed_temporary + summary.skipped
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    if tried or summary.stopped:
        say(
            f"sent {summary.sent}, failed {summary.failed_permanent} permanently and "
            f"{summary.failed_temporary} temporarily, skipped {summary.skipped} in {summary.elapsed:.1f} s "
            f"({summary.rate:.1f}/s)"
        )
    for reason, number in summary.failures.most_common(10):
        click.echo(f"  {number} × {reason}", err=True)
    if summary.throttled and summary.lowest_rate is not None:
        configured = f" from {plan.rate:g}/s" if plan.rate else ""
        click.echo(
            f"throttled {summary.throttled} times by the provider: the pace went down to "
            f"{summary.lowest_rate:.2g}/s{configured} and back up as it allowed",
            err=True,
        )
    if summary.database_retries and summary.stopped_for_database:
        # The `stopped:` line below says how long it was away: the last wait did not end.
        click.echo(
            "the database was away during the send (a restart or a dropped connection): the send waited and "
            f"tried again {summary.database_retries} times, until it stayed away too long",
            err=True,
        )
    elif summary.database_retries:
        click.echo(
            f"the database was away {summary.database_retries} times during the send (a restart or a dropped "
            "connection); each time the send waited and went on",
            err=True,
        )
    if summary.suppressed:
        click.echo(
            f"{summary.suppressed} addresses suppressed: the receiving server says they do not exist "
            "(a hard bounce); no issue goes to them again",
            err=True,
        )
    if summary.stopped:
        click.echo(f"stopped: {summary.stopped}", err=True)
    if summary.uncertain:
        click.echo(uncertain_line(summary.uncertain), err=True)
    if summary.other_senders:
        say(
            f"this sender ({summary.this_sender}) sent {summary.sent}; {summary.in_flight_elsewhere} messages are "
            f"in flight with the other senders of {slug} ({', '.join(summary.other_senders)})"
        )
    if counts.queued and summary.other_senders:
        click.echo(f"{counts.queued} still queued: the other senders go on with them", err=True)
    elif counts.queued:
        click.echo(f"{counts.queued} still queued: run the same command again to resume", err=True)
    if counts.failed_temporary:
        due = f" from {summary.next_retry_at:%Y-%m-%d %H:%M:%S} UTC" if summary.next_retry_at else ""
        click.echo(
            f"{counts.failed_temporary} failed temporarily: the next run of the same command retries them{due} "
            "(at once with --retry-failed)",
            err=True,
        )
    if summary.complete:
        if counts.failed_permanent:
            say(
                f"{slug}: complete: {counts.sent} sent, {counts.failed_permanent} failed permanently, "
                f"{counts.skipped} skipped"
            )
            _name_permanent_failures(summary, say)
        elif tried:
            say(f"{slug}: sent completely ({counts.sent} in all)")
        else:
            say(f"{slug}: already sent completely ({counts.sent} sent) — nothing to do")
    elif left_to_others(summary):
        say(f"{slug}: sending ({counts.sent} sent; the other senders go on with the last {pending(counts)})")
    else:
        elsewhere = summary.in_flight_elsewhere
        say(
            f"{slug}: incomplete ({counts.sent} sent, {pending(counts)} not yet: {counts.queued} queued, "
            f"{counts.failed_temporary} failed temporarily, {max(0, counts.sending - elsewhere)} uncertain"
            + (f", {elsewhere} in flight with other senders)" if elsewhere else ")")
        )
    where_messages_are(plan, say)


def uncertain_line(number: int) -> str:
    """The one wording for rows whose fate is unknown (DESIGN.md, "The ledger is the truth")."""
    return (
        f"{number} messages may or may not have gone out (in flight when a send stopped, or the provider "
        "did not answer): they are not resent unless you run again with --resend-uncertain"
    )


def _name_permanent_failures(summary: SendSummary, say: Callable[[str], None]) -> None:
    for address, reason in summary.permanent_failures:
        say(f"  failed permanently: {address}: {reason.splitlines()[0] if reason else ''}")
    more = summary.ledger.failed_permanent - len(summary.permanent_failures)
    if more > 0:
        say(f"  ... and {more} more failed permanently")


def where_messages_are(plan: SendPlan, say: Callable[[str], None] = click.echo) -> None:
    if plan.settings.transport.kind == "outbox":
        path = plan.settings.path(plan.settings.transport.outbox.path)
        say(f"messages are in the Maildir {path}/new/ (one file each; open one with any mail reader)")
