"""The `newsletter` command: a thin shell over the library.

Each command parses its arguments, makes one library call and prints the result.  Heavy
imports (SQLAlchemy, boto3, the web stack, MJML) happen inside the commands so that
`newsletter --help` stays fast.  A `NewsletterError` becomes one line on stderr and exit 1.
"""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path

import click

from newsletter import __version__
from newsletter.errors import NewsletterError


class Context:
    """What every command may need, built on first use."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path

    @cached_property
    def settings(self):
        from newsletter.config import load_settings

        return load_settings(self.config_path)


pass_context = click.make_pass_decorator(Context)


class NewsletterGroup(click.Group):
    """Turns user-facing errors into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NewsletterError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="newsletter")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="Configuration file (default: ./newsletter.toml if present, else embedded defaults).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Markdown-first email newsletters.

    \b
    Write an issue in issues/, then:
      newsletter build issues/2026-11-30.md      render email.html, email.txt, web.html
      newsletter check issues/2026-11-30.md      what mail clients would object to
      newsletter preview issues/2026-11-30.md    live preview in the browser
      newsletter subscribers import subscribers/example.csv
      newsletter send issues/2026-11-30.md       one personal copy to each subscriber
      newsletter serve                           unsubscribe, tracking, archive, SES events
      newsletter stats 2026-11-30                what happened to an issue
    """
    ctx.obj = Context(config_path)


def _print_findings(findings) -> None:
    for finding in findings:
        click.echo(str(finding), err=True)


@main.command()
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
    _print_findings(result.findings)
    if any(f.failed for f in result.findings):
        sys.exit(1)


@main.command()
@click.argument("issue_file", type=click.Path(path_type=Path))
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of templates that override the packaged ones.",
)
@pass_context
def check(context: Context, issue_file: Path, templates_dir: Path | None) -> None:
    """Check ISSUE_FILE against what mail clients enforce.

    Size against Gmail's 102 KB clip, image alt text, lang, links, leftover template
    syntax, subject length.  One line per finding; exit 1 if any check fails.

    \b
    Example:
      newsletter check issues/2026-11-30.md
    """
    from newsletter.compose.build import check_issue

    issue, findings = check_issue(context.settings, issue_file, templates_dir=templates_dir)
    for warning in issue.warnings:
        click.echo(str(warning), err=True)
    _print_findings(findings)
    if any(f.failed for f in findings):
        sys.exit(1)
    click.echo(f"{issue_file}: ok ({len(issue.entries)} entries)")


@main.command()
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

    The page switches between desktop and phone widths and shows the plain-text part.

    \b
    Example:
      newsletter preview issues/2026-11-30.md --port 8001
    """
    from newsletter.web.preview import serve_preview

    click.echo(f"previewing {issue_file} at http://{host}:{port}/ (Ctrl-C to stop)")
    serve_preview(context.settings, issue_file, host=host, port=port, templates_dir=templates_dir)


@main.command()
@click.argument("issue_file", type=click.Path(path_type=Path))
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
    help="Send only to ADDR (repeatable), subject prefixed [TEST], no ledger.",
)
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
@click.option("--force", is_flag=True, help="Send even if checks fail.")
@click.option(
    "--templates",
    "templates_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory of templates that override the packaged ones.",
)
@pass_context
def send(
    context: Context,
    issue_file: Path,
    list_slug: str | None,
    test_addresses: tuple[str, ...],
    dry_run: bool,
    rate: float | None,
    workers: int | None,
    yes: bool,
    retry_failed: bool,
    resend_uncertain: bool,
    force: bool,
    templates_dir: Path | None,
) -> None:
    """Send ISSUE_FILE: one personal copy to every active subscriber of the list.

    Runs the checks first and refuses to send if they fail. Safe to interrupt (Ctrl-C) or
    to crash: run the same command again and it resumes where it stopped, sending nobody
    a second copy and skipping nobody.

    \b
    Examples:
      newsletter send issues/2026-11-30.md --test me@example.com
      newsletter send issues/2026-11-30.md --dry-run
      newsletter send issues/2026-11-30.md --yes
    """
    from newsletter.cli.send import run_send_command
    from newsletter.sending.plan import SendOptions

    options = SendOptions(
        list_slug=list_slug,
        rate=rate,
        workers=workers,
        retry_failed=retry_failed,
        resend_uncertain=resend_uncertain,
        force=force,
        templates_dir=templates_dir,
    )
    code = run_send_command(
        context.settings, issue_file, options, test_addresses=list(test_addresses), dry_run=dry_run, assume_yes=yes
    )
    sys.exit(code)


# ---- subscribers, lists, database ----


def _open_store(context: Context):
    from newsletter.store import Store

    return Store.open(context.settings.database_url)


_STATUS_CHOICE = click.Choice(["active", "unconfirmed", "unsubscribed", "bounced", "complained"])


@main.group()
def subscribers() -> None:
    """Import, add, list, export, unsubscribe and remove subscribers.

    \b
    Example:
      newsletter subscribers import subscribers/example.csv
      newsletter subscribers list --list default --status active
    """


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--list",
    "list_slug",
    metavar="SLUG",
    help="Also put every row on this list (default: rows naming no list join [newsletter] list).",
)
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="Text encoding of the file, e.g. gbk for Excel on Chinese Windows.",
)
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@click.option(
    "--resubscribe", is_flag=True, help="Make unsubscribed, bounced or complained people in the file active again."
)
@pass_context
def subscribers_import(
    context: Context, csv_file: Path, list_slug: str | None, encoding: str, dry_run: bool, resubscribe: bool
) -> None:
    """Import subscribers from CSV_FILE.

    Columns: email (required), name, lists or tags (comma-separated), status; any other
    column is kept as an attribute.  Prints the counts and one line per skipped row;
    duplicate addresses keep their first row; nobody who unsubscribed, bounced or
    complained is resubscribed without --resubscribe.  Importing the same file again
    changes nothing.

    \b
    Examples:
      newsletter subscribers import subscribers/example.csv
      newsletter subscribers import readers.csv --encoding gbk --list weekly --dry-run
    """
    from newsletter.audience.csv_import import import_csv

    with _open_store(context) as store:
        report = import_csv(
            store,
            csv_file,
            list_slug=list_slug,
            default_list=context.settings.newsletter.list,
            encoding=encoding,
            dry_run=dry_run,
            resubscribe=resubscribe,
            on_problem=lambda problem: click.echo(str(problem), err=True),
        )
    click.echo(report.summary())


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--list", "list_slug", metavar="SLUG", help="List to join (default: [newsletter] list).")
@click.option(
    "--resubscribe", is_flag=True, help="Make them active again if they had unsubscribed, bounced or complained."
)
@pass_context
def subscribers_add(context: Context, email: str, name: str, list_slug: str | None, resubscribe: bool) -> None:
    """Add EMAIL as an active subscriber (or add an existing one to a list).

    \b
    Example:
      newsletter subscribers add wang.fang@example.com --name 王芳 --list weekly
    """
    from newsletter.audience.subscribers import add_subscriber

    with _open_store(context) as store:
        subscriber, created = add_subscriber(
            store, email, name=name, list_slug=list_slug or context.settings.newsletter.list, resubscribe=resubscribe
        )
    verb = "added" if created else "updated"
    click.echo(f"{verb} {subscriber.email} ({subscriber.status}; lists: {', '.join(subscriber.lists)})")


@subscribers.command("unsubscribe")
@click.argument("email")
@pass_context
def subscribers_unsubscribe(context: Context, email: str) -> None:
    """Stop all mail to EMAIL; they stay on record as unsubscribed.

    \b
    Example:
      newsletter subscribers unsubscribe alice@example.com
    """
    from newsletter.audience.subscribers import unsubscribe

    with _open_store(context) as store:
        subscriber, changed = unsubscribe(store, email)
    click.echo(f"unsubscribed {subscriber.email}" if changed else f"{subscriber.email} was already {subscriber.status}")


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def subscribers_remove(context: Context, email: str, yes: bool) -> None:
    """Erase EMAIL and everything stored about them (a data-deletion request).

    Unlike unsubscribe, nothing is kept, so a later import can add them again.

    \b
    Example:
      newsletter subscribers remove alice@example.com --yes
    """
    from newsletter.audience.subscribers import remove_subscriber

    if not yes:
        click.confirm(f"Erase {email} and all their data?", abort=True)
    with _open_store(context) as store:
        subscriber = remove_subscriber(store, email)
    click.echo(f"removed {subscriber.email}")


@subscribers.command("list")
@click.option("--list", "list_slug", metavar="SLUG", help="Only members of this list.")
@click.option("--status", type=_STATUS_CHOICE, help="Only subscribers with this status.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of objects instead of text.")
@pass_context
def subscribers_list(context: Context, list_slug: str | None, status: str | None, as_json: bool) -> None:
    """Show subscribers: address, status, lists, name (tab-separated).

    \b
    Example:
      newsletter subscribers list --list default --status unsubscribed
    """
    import json

    from newsletter.audience.subscribers import iter_subscribers

    with _open_store(context) as store:
        first = True
        for subscriber in iter_subscribers(store, list_slug=list_slug, status=status):
            if as_json:
                click.echo(("[" if first else ",") + json.dumps(subscriber.as_json(), ensure_ascii=False))
            else:
                click.echo(f"{subscriber.email}\t{subscriber.status}\t{','.join(subscriber.lists)}\t{subscriber.name}")
            first = False
        if as_json:
            click.echo("[]" if first else "]")


@subscribers.command("export")
@click.option("--list", "list_slug", metavar="SLUG", help="Only members of this list.")
@click.option("--status", type=_STATUS_CHOICE, help="Only subscribers with this status.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (UTF-8 with BOM, for Excel); default: standard output.",
)
@pass_context
def subscribers_export(context: Context, list_slug: str | None, status: str | None, output: Path | None) -> None:
    """Export subscribers as CSV that imports back unchanged.

    Columns: email, name, status, lists, then one per attribute.

    \b
    Example:
      newsletter subscribers export --list default -o readers.csv
    """
    from newsletter.audience.csv_export import export_csv, export_csv_file

    with _open_store(context) as store:
        if output is None:
            export_csv(store, sys.stdout, list_slug=list_slug, status=status)
            return
        count = export_csv_file(store, output, list_slug=list_slug, status=status)
    click.echo(f"{output}: {count} subscribers", err=True)


@main.command("lists")
@pass_context
def lists_command(context: Context) -> None:
    """Show every list: slug, name and its subscriber counts by status.

    \b
    Example:
      newsletter lists
    """
    from newsletter.audience.lists import list_summaries

    with _open_store(context) as store:
        summaries = list_summaries(store)
    statuses = ("active", "unconfirmed", "unsubscribed", "bounced", "complained")
    width = max([len("list"), *(len(s.slug) for s in summaries)])
    name_width = max([len("name"), *(len(s.name) for s in summaries)])
    click.echo(f"{'list':<{width}}  {'name':<{name_width}}  " + "  ".join(f"{s:>12}" for s in (*statuses, "total")))
    for summary in summaries:
        counts = "  ".join(f"{summary.counts[s]:>12}" for s in statuses)
        click.echo(f"{summary.slug:<{width}}  {summary.name:<{name_width}}  {counts}  {summary.total:>12}")
    if not summaries:
        click.echo("(no lists yet: newsletter subscribers import FILE creates them)", err=True)


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@pass_context
def db_upgrade(context: Context) -> None:
    """Apply pending database migrations (other commands also do this on first use).

    \b
    Example:
      NEWSLETTER_DATABASE_URL=postgresql://news@db/news newsletter db upgrade
    """
    from newsletter.store import Store

    with Store.open(context.settings.database_url, upgrade=False) as store:
        before, after = store.upgrade()
        where = store.url
    if before == after:
        click.echo(f"{where}: already at revision {after}")
    else:
        click.echo(f"{where}: upgraded from {before or 'an empty database'} to revision {after}")


# ---- SES events and stats ----


@main.group()
def events() -> None:
    """SES events (deliveries, bounces, complaints...) for servers SNS cannot reach."""


@events.command("pull")
@click.option("--queue-url", required=True, metavar="URL", help="The SQS queue subscribed to the SES event topic.")
@click.option("--once", is_flag=True, help="Stop when the queue is empty instead of waiting for more.")
@click.option("--max", "max_messages", type=click.IntRange(min=1), metavar="N", help="Stop after N messages.")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.IntRange(0, 20),
    default=20,
    show_default=True,
    help="Seconds each receive waits for messages (SQS long polling).",
)
@pass_context
def events_pull(context: Context, queue_url: str, once: bool, max_messages: int | None, wait_seconds: int) -> None:
    """Apply SES events from an SQS queue; each message is deleted once stored.

    Runs until Ctrl-C (or, with --once, until the queue is empty).  Region and endpoint
    come from [transport.ses]; credentials from the usual AWS sources.  Unreadable
    messages are reported and left for the queue's redrive policy.

    \b
    Example:
      newsletter events pull --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/ses-events
    """
    from newsletter.transports.ses.sqs import pull_events

    with _open_store(context) as store:
        summary = pull_events(
            context.settings,
            store,
            queue_url,
            once=once,
            max_messages=max_messages,
            wait_seconds=wait_seconds,
            report=lambda line: click.echo(line),
        )
    click.echo(summary.describe(), err=True)


@main.command()
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
    with _open_store(context) as store:
        result = issue_stats(store, slug)
    if as_json:
        import json

        click.echo(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
    else:
        from newsletter.cli.stats import print_stats

        print_stats(result)


# ---- the web server ----


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@pass_context
def serve(context: Context, host: str, port: int) -> None:
    """Serve what the emails link to: unsubscribe, open/click tracking, the archive and
    feed, subscribe with double opt-in, the SES event hook and the stats pages.

    Links in the emails point at [newsletter] base_url; put a reverse proxy (https) there
    that forwards to this server (docs/deploy.md).

    \b
    Example:
      newsletter serve --host 127.0.0.1 --port 8000
    """
    from newsletter.web.serve import serve as run_server

    click.echo(f"serving {context.settings.base_url} on http://{host}:{port}/ (Ctrl-C to stop)")
    run_server(context.settings, host=host, port=port)
