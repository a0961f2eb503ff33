"""The terminal side of `newsletter send`: the plan, the question, the progress bar, the summary.

Kept apart from `send.py` so the campaign stays a library (the tests and a future web UI
drive it directly) and apart from `cli.py` so the CLI stays a list of commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from newsletter.cli.send_report import ProgressLines, left_to_others, report, summary_json, where_messages_are
from newsletter.config import Settings
from newsletter.errors import InputError, NewsletterError
from newsletter.sending.campaign import SendSummary, run_send
from newsletter.sending.plan import SendOptions, SendPlan, plan_send
from newsletter.sending.probe import dry_run, send_test
from newsletter.sending.state import EXIT_COMPLETE, EXIT_ERROR, exit_status
from newsletter.store import Store


def run_send_command(
    settings: Settings,
    issue_file: Path,
    options: SendOptions,
    *,
    test_addresses: list[str],
    dry_run: bool,
    assume_yes: bool,
    as_json: bool = False,
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
        return _real_send(plan, assume_yes, as_json)


def _test_send(plan: SendPlan, addresses: list[str]) -> int:
    failed = 0
    for result in send_test(plan, addresses):
        if result.error:
            failed += 1
            click.echo(f"{result.address}: failed: {result.error}", err=True)
        else:
            click.echo(f"{result.address}: sent ({result.provider_message_id})")
    where_messages_are(plan)
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


def _real_send(plan: SendPlan, assume_yes: bool, as_json: bool) -> int:
    if plan.refusal:
        raise NewsletterError(plan.refusal)
    if not plan.snapshotted and not plan.audience:
        click.echo(f"list {plan.list_slug!r} has no active subscribers — nothing to send", err=as_json)
        if as_json:
            click.echo(json.dumps(summary_json(plan, SendSummary(complete=True), EXIT_COMPLETE), ensure_ascii=False))
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
    report(plan, summary, to_stderr=as_json)
    status = EXIT_ERROR if summary.stopped_for_good else exit_status(summary.state)
    if status != EXIT_ERROR and left_to_others(summary):
        # This sender's part is done; the senders still at work complete the issue.
        status = EXIT_COMPLETE
    if as_json:
        click.echo(json.dumps(summary_json(plan, summary, status), ensure_ascii=False))
    return status


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
    if not console.is_terminal:
        # A cron job's or CI's log: a line every few seconds instead of a bar.
        return run_send(plan, progress=ProgressLines(plan))
    # Ctrl-C and SIGTERM stop the send cleanly (newsletter/interrupts.py).
    with Progress(
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.1f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("send", total=plan.audience, rate=0.0)

        def update(summary: SendSummary, total: int) -> None:
            done = summary.sent + summary.failed_permanent + summary.failed_temporary + summary.skipped
            progress.update(task, completed=done, rate=summary.rate)

        return run_send(plan, progress=update)
