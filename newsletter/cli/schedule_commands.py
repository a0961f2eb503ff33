"""The terminal side of scheduled sends and issue states: `send --at/--cancel`, `issues`,
`worker`, and how `send` finds an issue by its file or slug."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli.context import Context, open_store, pass_context
from newsletter.errors import InputError

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only; `--help` stays fast
    from newsletter.config import Settings
    from newsletter.sending.plan import SendOptions


def issue_file(settings: Settings, argument: str) -> Path:
    """ISSUE as typed: a Markdown file, or a slug naming issues/SLUG.md."""
    path = Path(argument)
    if path.is_file() or argument.endswith(".md"):
        return path
    candidate = settings.path("issues") / f"{argument}.md"
    if candidate.is_file():
        return candidate
    raise InputError(f"{argument}: no such issue file (nor {candidate}); give the issue's .md file or its slug")


def test_addresses(settings: Settings, given: tuple[str, ...]) -> list[str]:
    """--test's addresses; `--test` alone means [newsletter] test_recipients."""
    addresses = [address for address in given if address]
    if given and not addresses:
        addresses = list(settings.newsletter.test_recipients)
        if not addresses:
            raise click.UsageError('--test without an address needs [newsletter] test_recipients = ["you@example.com"]')
    return addresses


def refuse_if_scheduled(settings: Settings, path: Path) -> None:
    from newsletter.compose.issue.parse import load_issue
    from newsletter.sending.schedule import format_time, pending_schedule
    from newsletter.store import Store

    slug = load_issue(path, default_language=settings.newsletter.language).slug
    with Store.open(settings.database_url) as store:
        row = pending_schedule(store, slug)
    if row is not None:
        raise InputError(
            f"{slug} is scheduled for {format_time(row.send_at, row.timezone)}; cancel that first "
            f"(newsletter send {path} --cancel), or let the schedule send it"
        )


def schedule(settings: Settings, path: Path, *, at: str, tz: str | None, options: SendOptions) -> int:
    from newsletter.sending.schedule import schedule_send
    from newsletter.store import Store

    with Store.open(settings.database_url) as store:
        scheduled = schedule_send(settings, store, path, at=at, tz=tz, options=options)
    plan = scheduled.plan
    for warning in plan.issue.warnings:
        click.echo(str(warning), err=True)
    for finding in plan.findings:
        click.echo(str(finding), err=True)
    if scheduled.schedule is None:
        click.echo("checks failed: nothing scheduled (fix the issue, or use --force)", err=True)
        return 1
    click.echo(
        f"{plan.stored.slug}: scheduled for {scheduled.when} to list {plan.list_slug!r} "
        f"({plan.audience} subscribers now); frozen as checked now"
    )
    click.echo("it is sent by `newsletter serve` or `newsletter worker` running then; cancel with --cancel")
    return 0


def cancel(settings: Settings, argument: str) -> int:
    from newsletter.sending.schedule import cancel_send, format_time
    from newsletter.stats import resolve_issue_slug
    from newsletter.store import Store

    slug = resolve_issue_slug(argument, default_language=settings.newsletter.language)
    with Store.open(settings.database_url) as store:
        row = cancel_send(store, slug)
    click.echo(f"{slug}: the send scheduled for {format_time(row.send_at, row.timezone)} is cancelled")
    return 0


@click.command("issues")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list of objects (slug, state, scheduled_at, sent…)."
)
@pass_context
def issues_command(context: Context, as_json: bool) -> None:
    """List every issue (files in issues/ and issues in the database), newest first, with
    its state: draft, scheduled (when), refused (why), sending, sent (when, how many),
    incomplete (how many are left).

    \b
    Example:
      newsletter issues --json
    """
    from newsletter.issue_states import issue_states

    with open_store(context) as store:
        states = issue_states(context.settings, store)
    if as_json:
        import json

        click.echo(json.dumps([state.as_json() for state in states], ensure_ascii=False, indent=2))
        return
    if not states:
        click.echo("no issues yet: write one with `newsletter new`")
        return
    from newsletter.cli.issue_table import print_issue_states

    print_issue_states(states)


@click.command()
@click.option("--once", is_flag=True, help="Send what is due now and exit (for cron), instead of waiting for more.")
@pass_context
def worker(context: Context, once: bool) -> None:
    """Send scheduled issues when they are due, without the web side (`newsletter serve`
    does the same).  Several workers and servers may run on one database: each schedule is
    sent once.  Ctrl-C or SIGTERM stops it cleanly; a send it was in resumes on restart.

    \b
    Example:
      newsletter worker
    """
    from newsletter.interrupts import stop_on_signals
    from newsletter.sending.schedule import run_worker

    stop = threading.Event()
    with open_store(context) as store:
        click.echo(f"sending scheduled issues from {store.url} as they fall due (Ctrl-C to stop)", err=True)
        with stop_on_signals(stop):
            run_worker(context.settings, store, stop=stop, report=lambda line: click.echo(line), once=once)
