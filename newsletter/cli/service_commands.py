"""The commands that run the service side: the web server, SES events, the database."""

from __future__ import annotations

import click

from newsletter.cli.context import Context, open_store, pass_context


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Web worker processes (uvicorn's); above 1 needs PostgreSQL (docs/scale.md).",
)
@pass_context
def serve(context: Context, host: str, port: int, workers: int) -> None:
    """Serve what the emails link to: unsubscribe, open/click tracking, the archive and
    feed, subscribe with double opt-in, the SES event hook and the stats pages.

    Links in the emails point at [newsletter] base_url; put a reverse proxy (https) there
    that forwards to this server (docs/deploy.md).  Scheduled sends (`send --at`) go out
    from it when they are due.

    \b
    Example:
      newsletter serve --host 127.0.0.1 --port 8000
    """
    from newsletter.web.serve import serve as run_server

    announce = lambda: click.echo(f"serving {context.settings.base_url} on http://{host}:{port}/ (Ctrl-C to stop)")
    run_server(context.settings, host=host, port=port, workers=workers, announce=announce)


@click.group()
def events() -> None:
    """Feedback that does not come through `serve`: SES events from SQS, and bounces,
    complaints and unsubscribes that come back by mail."""


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

    with open_store(context) as store:
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


@events.command("inbox")
@click.option("--once", is_flag=True, help="Read the mailbox once and stop, instead of watching it.")
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="How often a watching reader looks again.",
)
@pass_context
def events_inbox(context: Context, once: bool, interval: float) -> None:
    """Apply what comes back by mail: bounce reports (RFC 3464 DSNs), feedback-loop
    complaints (ARF) and mails to [newsletter] unsubscribe_mailto.

    Reads the mailbox of [events.inbox] url: imaps://USER@HOST/INBOX (password from
    NEWSLETTER_INBOX_PASSWORD), imap://... or maildir:///PATH.  Applied mail is moved into
    [events.inbox] applied_folder; anything else is left in place and counted.  Runs until
    Ctrl-C (or, with --once, one pass).

    \b
    Example:
      NEWSLETTER_INBOX_PASSWORD=... newsletter events inbox --once
    """
    from newsletter.feedback.inbox import read_inbox

    with open_store(context) as store:
        summary = read_inbox(
            context.settings, store, once=once, interval=interval, report=lambda line: click.echo(line)
        )
    click.echo(summary.describe(), err=True)


@click.group()
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
