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
      newsletter build issues/2026-01-22.md      render email.html, email.txt, web.html
      newsletter check issues/2026-01-22.md      what mail clients would object to
      newsletter preview issues/2026-01-22.md    live preview in the browser
      newsletter subscribers import subscribers/example.csv
      newsletter send issues/2026-01-22.md       one personal copy to each subscriber
      newsletter serve                           unsubscribe, tracking, archive, SES events
      newsletter stats 2026-01-22                what happened to an issue
    """
    ctx.obj = Context(config_path)


def _print_findings(findings) -> None:
    for finding in findings:
        click.echo(str(finding), err=True)


@main.command()
@click.argument("issue_file", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Output directory (default: build/<issue-slug>/).")
@click.option("--templates", "templates_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Directory of templates that override the packaged ones.")
@pass_context
def build(context: Context, issue_file: Path, out_dir: Path | None, templates_dir: Path | None) -> None:
    """Render ISSUE_FILE into email.html, email.txt and web.html.

    Per-recipient values (unsubscribe link, tracking) are filled with preview values.
    Prints the sizes and the check findings; exits 1 if a check fails.

    \b
    Example:
      newsletter build issues/2026-01-22.md --out /tmp/issue
    """
    from newsletter.build import build_issue

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
@click.option("--templates", "templates_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Directory of templates that override the packaged ones.")
@pass_context
def check(context: Context, issue_file: Path, templates_dir: Path | None) -> None:
    """Check ISSUE_FILE against what mail clients enforce.

    Size against Gmail's 102 KB clip, image alt text, lang, links, leftover template
    syntax, subject length.  One line per finding; exit 1 if any check fails.

    \b
    Example:
      newsletter check issues/2026-01-22.md
    """
    from newsletter.build import check_issue

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
@click.option("--templates", "templates_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Directory of templates that override the packaged ones.")
@pass_context
def preview(context: Context, issue_file: Path, host: str, port: int, templates_dir: Path | None) -> None:
    """Serve ISSUE_FILE in the browser, reloading when it or a template changes.

    The page switches between desktop and phone widths and shows the plain-text part.

    \b
    Example:
      newsletter preview issues/2026-01-22.md --port 8001
    """
    from newsletter.web.preview import serve_preview

    click.echo(f"previewing {issue_file} at http://{host}:{port}/ (Ctrl-C to stop)")
    serve_preview(context.settings, issue_file, host=host, port=port, templates_dir=templates_dir)


@main.command()
@click.argument("issue_file", type=click.Path(path_type=Path))
@click.option("--list", "list_slug", metavar="SLUG", help="List to send to (default: the issue's front matter 'list', else [newsletter] list).")
@click.option("--test", "test_addresses", metavar="ADDR", multiple=True, help="Send only to ADDR (repeatable), subject prefixed [TEST], no ledger.")
@click.option("--dry-run", is_flag=True, help="Build every message, send none, change nothing.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Messages per second (default: configured, else SES MaxSendRate, never above it).")
@click.option("--workers", type=click.IntRange(min=1, max=64), help="Sending threads (default: enough for the rate).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required without a terminal).")
@click.option("--retry-failed", is_flag=True, help="Also retry rows that failed temporarily last time.")
@click.option("--resend-uncertain", is_flag=True, help="Resend rows left in flight by a crash (may duplicate those that got through).")
@click.option("--force", is_flag=True, help="Send even if checks fail.")
@click.option("--templates", "templates_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Directory of templates that override the packaged ones.")
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
      newsletter send issues/2026-01-22.md --test me@example.com
      newsletter send issues/2026-01-22.md --dry-run
      newsletter send issues/2026-01-22.md --yes
    """
    from newsletter.send import SendOptions
    from newsletter.send_console import run_send_command

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
