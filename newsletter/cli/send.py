"""The terminal side of `newsletter send`: the plan, the question, the progress bar, the summary.

Kept apart from `send.py` so the campaign stays a library (the tests and a future web UI
drive it directly) and apart from `cli.py` so the CLI stays a list of commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.config import Settings
from newsletter.errors import InputError, NewsletterError
from newsletter.sending.campaign import SendSummary, run_send
from newsletter.sending.plan import SendOptions, SendPlan, plan_send
from newsletter.sending.probe import dry_run, send_test
from newsletter.sending.state import EXIT_COMPLETE, EXIT_ERROR, exit_status, pending
from newsletter.store import Store


def run_send_command(
    settings: Settings,
    issue_file: Path,
    options: SendOptions,
    *,
    test_addresses: list[str],
    dry_run: bool,
    assume_yes: bool,
) -> int:
    """Returns the exit status: 0 when everything asked for was done."""
    with Store.open(settings.database_url) as store:
        plan = plan_send(settings, store, issue_file, options)
        for warning in plan.issue.warnings:
            click.echo(str(warning), err=True)
        for finding in plan.findings:
            click.echo(str(finding), err=True)
        for note in plan.notes:
            click.echo(f"note: {note}", err=True)
        if plan.blocked:
            click.echo("checks failed: nothing sent (fix the issue, or use --force)", err=True)
            return 1
        if test_addresses:
            return _test_send(plan, test_addresses)
        if dry_run:
            return _dry_run(plan)
        return _real_send(plan, assume_yes)


def _test_send(plan: SendPlan, addresses: list[str]) -> int:
    failed = 0
    for result in send_test(plan, addresses):
        if result.error:
            failed += 1
            click.echo(f"{result.address}: failed: {result.error}", err=True)
        else:
            click.echo(f"{result.address}: sent ({result.provider_message_id})")
    _where_messages_are(plan)
    return 1 if failed else 0


def _dry_run(plan: SendPlan) -> int:
    click.echo(f"dry run: building {plan.audience} messages for list {plan.list_slug!r}; nothing will be sent")
    summary = dry_run(plan)
    for problem in summary.unsendable:
        click.echo(f"cannot send: {problem}", err=True)
    average = summary.bytes / summary.built / 1024 if summary.built else 0
    rate = summary.built / summary.elapsed if summary.elapsed else 0
    click.echo(
        f"built {summary.built} messages ({average:.1f} KB each) in {summary.elapsed:.1f} s, {rate:.0f}/s; "
        f"{len(summary.unsendable)} cannot be sent"
    )
    return 0


def _real_send(plan: SendPlan, assume_yes: bool) -> int:
    if plan.refusal:
        raise NewsletterError(plan.refusal)
    if not plan.snapshotted and not plan.audience:
        click.echo(f"list {plan.list_slug!r} has no active subscribers — nothing to send")
        return EXIT_COMPLETE
    if plan.audience:
        transport = plan.settings.transport.kind
        rate = f"{plan.rate:g}/s" if plan.rate else "as fast as it goes"
        left = plan.quota.remaining_24_hours if plan.quota is not None else None
        allowance = "" if left is None else f"; SES allows {int(left):,} more in the current 24 hours"
        question = (
            f"Send {plan.issue.subject!r} to {plan.audience} subscribers of {plan.list_slug!r} "
            f"via {transport} ({rate}, {plan.workers} workers{allowance})?"
        )
        if not assume_yes:
            if not sys.stdin.isatty():
                raise InputError(f"{question} — confirm with --yes (no terminal to ask on)")
            if not click.confirm(question, default=False, err=True):
                click.echo("nothing sent", err=True)
                return EXIT_ERROR
    # Run even with nothing queued: the campaign takes the sender lock first, so what it
    # reports about rows in flight is about an earlier send, never a live one's, and the
    # outbox settles those rows exactly.
    summary = _with_progress(plan)
    _report(plan, summary)
    if summary.stopped_for_good:
        return EXIT_ERROR
    return exit_status(summary.state)


def _with_progress(plan: SendPlan) -> SendSummary:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    # Ctrl-C and SIGTERM stop the send cleanly (newsletter/interrupts.py).
    with Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=not console.is_terminal,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("send", total=plan.audience, rate=0.0)

        def update(summary: SendSummary, total: int) -> None:
            done = summary.sent + summary.failed_permanent + summary.failed_temporary + summary.skipped
            progress.update(task, completed=done, rate=summary.rate)

        return run_send(plan, progress=update)


def _report(plan: SendPlan, summary: SendSummary) -> None:
    counts = summary.ledger
    slug = plan.stored.slug
    tried = summary.sent + summary.failed_permanent + summary.failed_temporary + summary.skipped
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    if tried or summary.stopped:
        click.echo(
            f"sent {summary.sent}, failed {summary.failed_permanent} permanently and "
            f"{summary.failed_temporary} temporarily, skipped {summary.skipped} in {summary.elapsed:.1f} s "
            f"({summary.rate:.1f}/s)"
        )
    for reason, number in summary.failures.most_common(10):
        click.echo(f"  {number} × {reason}", err=True)
    if summary.suppressed:
        click.echo(
            f"{summary.suppressed} addresses suppressed: the receiving server says they do not exist "
            "(a hard bounce); no issue goes to them again",
            err=True,
        )
    if summary.stopped:
        click.echo(f"stopped: {summary.stopped}", err=True)
    if counts.sending:
        click.echo(uncertain_line(counts.sending), err=True)
    if counts.queued:
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
            click.echo(
                f"{slug}: complete: {counts.sent} sent, {counts.failed_permanent} failed permanently, "
                f"{counts.skipped} skipped"
            )
            _name_permanent_failures(summary)
        elif tried:
            click.echo(f"{slug}: sent completely ({counts.sent} in all)")
        else:
            click.echo(f"{slug}: already sent completely ({counts.sent} sent) — nothing to do")
    else:
        click.echo(
            f"{slug}: incomplete ({counts.sent} sent, {pending(counts)} not yet: {counts.queued} queued, "
            f"{counts.failed_temporary} failed temporarily, {counts.sending} uncertain)"
        )
    _where_messages_are(plan)


def uncertain_line(number: int) -> str:
    """The one wording for rows whose fate is unknown (DESIGN.md, "The ledger is the truth")."""
    return (
        f"{number} messages may or may not have gone out (in flight when a send stopped, or the provider "
        "did not answer): they are not resent unless you run again with --resend-uncertain"
    )


def _name_permanent_failures(summary: SendSummary) -> None:
    for address, reason in summary.permanent_failures:
        click.echo(f"  failed permanently: {address}: {reason.splitlines()[0] if reason else ''}")
    more = summary.ledger.failed_permanent - len(summary.permanent_failures)
    if more > 0:
        click.echo(f"  ... and {more} more failed permanently")


def _where_messages_are(plan: SendPlan) -> None:
    if plan.settings.transport.kind == "outbox":
        path = plan.settings.path(plan.settings.transport.outbox.path)
        click.echo(f"messages are in the Maildir {path}/new/ (one file each; open one with any mail reader)")
