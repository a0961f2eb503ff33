"""The commands about one issue: build, check, preview, send, stats."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.cli.context import Context, open_store, pass_context, print_findings
from newsletter.errors import NewsletterError

if TYPE_CHECKING:  # the send plan imports the whole sending side; `newsletter --help` stays fast
    from newsletter.sending.plan import SendOptions


@click.command()
@click.argument("issue_file", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (default: build/<issue-slug>/).",
)
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of templates that override the packaged ones.",
)
@pass_context
def build(context: Context, issue_file: Path, out_dir: Path | None, templates_dir: Path | None) -> None:
    """Render ISSUE_FILE into email.html, email.txt and web.html.

    Per-recipient values (unsubscribe link, tracking) are filled with preview values.
    Prints the sizes and the check findings; exits 1 if a check fails.

    \b
    Example:
      newsletter build issues/2026-11-30.md --out /tmp/issue
    """
    from newsletter.compose.build import build_issue

    result = build_issue(context.settings, issue_file, out_dir=out_dir, templates_dir=templates_dir)
    for warning in result.issue.warnings:
        click.echo(str(warning), err=True)
    for path in result.files:
        click.echo(f"{path}  {path.stat().st_size / 1024:.1f} KB")
    print_findings(result.findings)
    if any(f.failed for f in result.findings):
        sys.exit(1)


@click.command()
@click.argument("issue_file", type=click.Path(path_type=Path))
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of templates that override the packaged ones.",
)
@click.option(
    "--links",
    "fetch_links",
    is_flag=True,
    help="Also fetch every link and image once: broken ones (4xx/5xx, no such host) and login pages.",
)
@pass_context
def check(context: Context, issue_file: Path, templates_dir: Path | None, fetch_links: bool) -> None:
    """Check ISSUE_FILE against what mail clients enforce.

    Size against Gmail's 102 KB clip, image alt text, relative and file: links and images,
    misspelt labels, links already sent in an earlier issue, lang, leftover template syntax,
    subject width.  One FILE:LINE line per finding; exit 1 if any check fails.

    \b
    Example:
      newsletter check issues/2026-11-30.md
      newsletter check issues/2026-11-30.md --links
    """
    from newsletter.compose.build import check_issue

    issue, findings = check_issue(context.settings, issue_file, templates_dir=templates_dir, fetch_links=fetch_links)
    for warning in issue.warnings:
        click.echo(str(warning), err=True)
    print_findings(findings)
    if any(f.failed for f in findings):
        sys.exit(1)
    click.echo(f"{issue_file}: ok ({len(issue.entries)} entries)")


@click.command()
@click.argument("issue_file", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of templates that override the packaged ones.",
)
@pass_context
def preview(context: Context, issue_file: Path, host: str, port: int, templates_dir: Path | None) -> None:
    """Serve ISSUE_FILE in the browser, reloading when it or a template changes.

    The page switches between desktop and phone widths and shows the plain-text part and
    the check findings.  A file that does not parse shows its error until it is fixed.

    \b
    Example:
      newsletter preview issues/2026-11-30.md --port 8001
    """
    from newsletter.web.preview import first_render_error, serve_preview

    error = first_render_error(context.settings, issue_file, templates_dir)
    if error is not None:
        click.echo(f"{error} (the page shows it until the file is fixed)", err=True)
    serve_preview(
        context.settings,
        issue_file,
        host=host,
        port=port,
        templates_dir=templates_dir,
        announce=lambda: click.echo(f"previewing {issue_file} at http://{host}:{port}/ (Ctrl-C to stop)"),
    )


@click.command()
@click.argument("issue", metavar="ISSUE")
@click.option(
    "--list",
    "list_slug",
    metavar="SLUG",
    help="List to send to (default: the issue's front matter 'list', else [newsletter] list).",
)
@click.option(
    "--test",
    "test_addresses",
    metavar="ADDR",
    multiple=True,
    is_flag=False,
    flag_value="",
    help="Send only to ADDR (repeatable; alone: [newsletter] test_recipients), subject [TEST], no ledger, "
    "no list needed.",
)
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="Send later: 'YYYY-MM-DD HH:MM' (or 'HH:MM', the next one); checked and frozen now, sent by "
    "`newsletter serve` or `newsletter worker` at the time.",
)
@click.option(
    "--tz",
    metavar="ZONE",
    help="Time zone of --at, e.g. Asia/Shanghai (default: [newsletter] timezone, else this machine's).",
)
@click.option("--cancel", is_flag=True, help="Withdraw the issue's scheduled send.")
@click.option("--dry-run", is_flag=True, help="Build every message, send none, change nothing.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Messages per second (default: configured, else SES MaxSendRate, never above it).",
)
@click.option("--workers", type=click.IntRange(min=1, max=64), help="Sending threads (default: enough for the rate).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required without a terminal).")
@click.option("--retry-failed", is_flag=True, help="Also retry rows that failed temporarily last time.")
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Resend rows left in flight by a crash (may duplicate those that got through).",
)
@click.option("--force", is_flag=True, help="Send even if checks fail (with --at: even if late or stale).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the summary as one JSON object on stdout (state, counts by outcome and reason, elapsed, rate); "
    "everything else goes to stderr.",
)
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of templates that override the packaged ones.",
)
@pass_context
def send(
    context: Context,
    issue: str,
    list_slug: str | None,
    test_addresses: tuple[str, ...],
    at: str | None,
    tz: str | None,
    cancel: bool,
    dry_run: bool,
    rate: float | None,
    workers: int | None,
    yes: bool,
    retry_failed: bool,
    resend_uncertain: bool,
    force: bool,
    as_json: bool,
    templates_dir: Path | None,
) -> None:
    """Send ISSUE (the issue's file, or its slug: issues/SLUG.md): one personal copy to
    every active subscriber of the list.

    Runs the checks first and refuses to send if they fail. Safe to interrupt (Ctrl-C) or
    to crash: run the same command again and it resumes where it stopped, sending nobody
    a second copy and skipping nobody.  With --at it is checked and frozen now and sent at
    that time by `newsletter serve` or `newsletter worker`.

    \b
    Exit status (for cron and CI):
      0   complete: every subscriber sent, skipped, or failed permanently
      75  incomplete: rows queued, failed temporarily (retried by the next run once
          their backoff has passed) or uncertain; run the same command again later
      1   an error before or during sending that a person must see to
      2   a usage error

    \b
    Examples:
      newsletter send issues/2026-11-30.md --test me@example.com
      newsletter send issues/2026-11-30.md --dry-run
      newsletter send issues/2026-11-30.md --yes
      newsletter send issues/2026-11-30.md --yes --json     # from cron or CI
      newsletter send issues/2026-11-30.md --at "2026-12-02 08:00" --tz Asia/Shanghai
      newsletter send 2026-11-30 --cancel
    """
    from newsletter.sending.plan import SendOptions

    if sum(bool(x) for x in (test_addresses, at, cancel, dry_run)) > 1:
        raise click.UsageError("--test, --at, --cancel and --dry-run do not go together; use one")
    if tz and not at:
        raise click.UsageError("--tz goes with --at")
    if as_json and (test_addresses or at or cancel or dry_run):
        raise click.UsageError("--json goes with a real send only, not with --test, --at, --cancel or --dry-run")
    options = SendOptions(
        list_slug=list_slug,
        rate=rate,
        workers=workers,
        retry_failed=retry_failed,
        resend_uncertain=resend_uncertain,
        force=force,
        templates_dir=templates_dir,
        for_test=bool(test_addresses),
    )
    try:
        code = _send(
            context,
            issue,
            options,
            test_addresses=test_addresses,
            at=at,
            tz=tz,
            cancel=cancel,
            dry_run=dry_run,
            assume_yes=yes,
            as_json=as_json,
        )
    except NewsletterError as err:
        if as_json:
            # A script parsing stdout still gets one object; the line on stderr follows.
            import json

            from newsletter.cli.send_report import error_json

            click.echo(json.dumps(error_json(issue, err), ensure_ascii=False))
        raise
    sys.exit(code)


def _send(
    context: Context,
    issue: str,
    options: SendOptions,
    *,
    test_addresses: tuple[str, ...],
    at: str | None,
    tz: str | None,
    cancel: bool,
    dry_run: bool,
    assume_yes: bool,
    as_json: bool,
) -> int:
    """The send command's work once its options are read: the exit status."""
    from newsletter.cli import schedule_commands
    from newsletter.cli.send import run_send_command

    settings = context.settings
    if cancel:
        return schedule_commands.cancel(settings, issue)
    issue_file = schedule_commands.issue_file(settings, issue)
    if at:
        return schedule_commands.schedule(settings, issue_file, at=at, tz=tz, options=options)
    addresses = schedule_commands.test_addresses(settings, test_addresses)
    if not addresses and not dry_run:
        schedule_commands.refuse_if_scheduled(settings, issue_file)
    return run_send_command(
        settings, issue_file, options, test_addresses=addresses, dry_run=dry_run, assume_yes=assume_yes, as_json=as_json
    )


@click.command()
@click.argument("issue", metavar="ISSUE")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as one JSON object.")
@pass_context
def stats(context: Context, issue: str, as_json: bool) -> None:
    """Show what happened to ISSUE (a slug, or the issue's Markdown file).

    Recipients, sent, failed, delivered, bounced (hard/soft), complained, unsubscribed,
    unique opens and clicks (people/machines), clicks per link, and opens and clicks by hour.

    \b
    Examples:
      newsletter stats 2026-11-30
      newsletter stats issues/2026-11-30.md --json
    """
    from newsletter.stats import issue_stats, resolve_issue_slug

    slug = resolve_issue_slug(issue, default_language=context.settings.newsletter.language)
    with open_store(context) as store:
        result = issue_stats(store, slug)
    if as_json:
        import json

        click.echo(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
    else:
        from newsletter.cli.stats import print_stats

        print_stats(result)
