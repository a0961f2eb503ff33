"""The `newsletter` command: a thin shell over the library.

Each command parses its arguments, makes one library call and prints the result.  Heavy
imports (SQLAlchemy, boto3, the web stack, MJML) happen inside the commands so that
`newsletter --help` stays fast.  A `NewsletterError` becomes one line on stderr and exit 1.
"""

from __future__ import annotations

import logging
import sys

import click

from newsletter import __version__
from newsletter.cli import (
    audience_commands,
    doctor,
    issue_commands,
    project_commands,
    schedule_commands,
    service_commands,
)
from newsletter.cli.context import Context
from newsletter.errors import NewsletterError


class WithoutPsycopgsIgnoredErrors(logging.Filter):
    """Drops psycopg's warnings about a second error it ignored while the first one was
    already on its way up ("error ignored terminating <psycopg.Pipeline [BAD] ...>: the
    connection is lost", when the database goes away inside an executemany).  That first
    error is ours to handle: the send rides the outage out and says so in one line of its
    own (sending/ride_out.py), or stops with one; psycopg's line (printed by the logging
    module's last-resort handler, as nothing else configures logging here) only adds a
    Python repr to what the editor reads.  Its other warnings still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The format string, as psycopg 3 writes it in every such case (_pipeline.py,
        # _pipeline_base.py, _copy.py, transaction.py, connection.py).
        return not (isinstance(record.msg, str) and record.msg.startswith("error ignored "))


def _without_psycopgs_ignored_errors() -> None:
    # A logger's filters see the records logged to that logger itself: psycopg logs all of
    # these to "psycopg".  Once per process, though main() runs for every command.
    logger = logging.getLogger("psycopg")
    if not any(isinstance(existing, WithoutPsycopgsIgnoredErrors) for existing in logger.filters):
        logger.addFilter(WithoutPsycopgsIgnoredErrors())


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
    Start with `newsletter init DIR`, write an issue (`newsletter new`), then:
      newsletter build issues/2026-11-30.md      render email.html, email.txt, web.html
      newsletter check issues/2026-11-30.md      what mail clients would object to
      newsletter preview issues/2026-11-30.md    live preview in the browser
      newsletter subscribers import subscribers/example.csv
      newsletter send issues/2026-11-30.md       one personal copy to each subscriber
      newsletter send issues/2026-11-30.md --at "2026-12-02 08:00" --tz Asia/Shanghai
      newsletter issues                          every issue and its state
      newsletter serve                           unsubscribe, tracking, archive, SES events
      newsletter stats 2026-11-30                what happened to an issue
      newsletter doctor                          SPF, DKIM, DMARC, SES account, web side
    """
    _without_psycopgs_ignored_errors()
    ctx.obj = Context(config_path)


# The commands live beside this module, one module per area; importing them is cheap, as
# each command imports what it needs only when it runs.
for _command in (
    project_commands.init,
    project_commands.new,
    issue_commands.build,
    issue_commands.check,
    issue_commands.preview,
    issue_commands.send,
    issue_commands.stats,
    schedule_commands.issues_command,
    schedule_commands.worker,
    audience_commands.subscribers,
    audience_commands.lists_command,
    service_commands.serve,
    service_commands.events,
    service_commands.db,
    doctor.doctor,
):
    main.add_command(_command)
