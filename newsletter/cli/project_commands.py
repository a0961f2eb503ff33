"""The commands that start things: a project (`init`) and an issue (`new`)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from newsletter.cli.context import Context, pass_context


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--name", default="Newsletter", show_default=True, help="The newsletter's name (sender and titles).")
@click.option("--language", default="zh-CN", show_default=True, help="Language of the mail and pages (BCP 47).")
def init(directory: Path, name: str, language: str) -> None:
    """Start a newsletter in DIRECTORY (default: here): a commented newsletter.toml with a
    fresh random secret (outbox transport, SQLite), issues/, subscribers/example.csv.

    Never overwrites: refuses if any of those files exists.

    \b
    Example:
      newsletter init digest && cd digest
    """
    from newsletter.project import init_project

    result = init_project(directory, name=name, language=language)
    for path in result.files:
        click.echo(f"wrote {path}{'/' if path.is_dir() else ''}")
    click.echo("next:")
    for step in result.next_steps():
        click.echo(f"  {step}")


@click.command()
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The issue's date, YYYY-MM-DD (default: today in [newsletter] timezone, else this machine's).",
)
@click.option("--title", help="The '# ' title (default: the newsletter's name and the date).")
@pass_context
def new(context: Context, day, title: str | None) -> None:
    """Write issues/<date>.md from the digest skeleton (front matter, one example entry,
    related news) and print its path.  Never overwrites an existing issue.

    \b
    Example:
      newsletter new --date 2026-12-02
    """
    from newsletter.project import new_issue
    from newsletter.sending.schedule import today

    settings = context.settings
    wanted: date = day.date() if day is not None else today(settings)
    path = new_issue(settings, wanted, title=title)
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    click.echo(str(shown))
