"""The commands about the audience: subscribers and lists."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.cli.context import Context, open_store, pass_context

# newsletter.audience.subscribers.STATUS_FILTERS, spelled out so `--help` loads no SQLAlchemy.
_STATUS_CHOICE = click.Choice(["active", "pending", "unsubscribed", "bounced", "complained"])


@click.group()
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
    "--resubscribe",
    is_flag=True,
    help="Put people back on the file's lists they had left, make bounced or complained addresses active, add erased ones.",
)
@pass_context
def subscribers_import(
    context: Context, csv_file: Path, list_slug: str | None, encoding: str, dry_run: bool, resubscribe: bool
) -> None:
    """Import subscribers from CSV_FILE.

    Columns: email (required), name, lists or tags (comma-separated), status, list:SLUG
    (the standing on that list, as export writes it); any other column is kept as an
    attribute.  Prints the counts and one line per skipped row; duplicate addresses keep
    their first row; nobody is put back on a list they left, nor is a bounced or complained
    address made active, without --resubscribe.  Importing the same file again changes
    nothing.

    \b
    Examples:
      newsletter subscribers import subscribers/example.csv
      newsletter subscribers import readers.csv --encoding gbk --list weekly --dry-run
    """
    from newsletter.audience.csv_import import import_csv
    from newsletter.audience.erasure import address_digests

    with open_store(context) as store:
        report = import_csv(
            store,
            csv_file,
            digests=address_digests(context.settings),
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
    "--resubscribe",
    is_flag=True,
    help="Put them back on the list if they had left it, make a bounced or complained address active, or add an erased one.",
)
@pass_context
def subscribers_add(context: Context, email: str, name: str, list_slug: str | None, resubscribe: bool) -> None:
    """Add EMAIL as an active subscriber (or add an existing one to a list).

    \b
    Example:
      newsletter subscribers add wang.fang@example.com --name 王芳 --list weekly
    """
    from newsletter.audience.erasure import address_digests
    from newsletter.audience.subscribers import add_subscriber

    with open_store(context) as store:
        subscriber, created = add_subscriber(
            store,
            email,
            name=name,
            list_slug=list_slug or context.settings.newsletter.list,
            resubscribe=resubscribe,
            digests=address_digests(context.settings),
        )
    verb = "added" if created else "updated"
    click.echo(f"{verb} {subscriber.email} ({subscriber.status}; lists: {subscriber.memberships_text()})")


@subscribers.command("unsubscribe")
@click.argument("email")
@click.option("--list", "list_slug", metavar="SLUG", help="Only from this list (default: from every list).")
@pass_context
def subscribers_unsubscribe(context: Context, email: str, list_slug: str | None) -> None:
    """Take EMAIL off one list, or off every list; they stay on record as unsubscribed.

    \b
    Examples:
      newsletter subscribers unsubscribe alice@example.com
      newsletter subscribers unsubscribe alice@example.com --list daily
    """
    from newsletter.audience.subscribers import unsubscribe

    with open_store(context) as store:
        subscriber, changed = unsubscribe(store, email, list_slug=list_slug)
    where = f" from {list_slug}" if list_slug else ""
    if changed:
        click.echo(f"unsubscribed {subscriber.email}{where} (lists: {subscriber.memberships_text()})")
    else:
        click.echo(f"{subscriber.email} was not subscribed{where} (lists: {subscriber.memberships_text() or 'none'})")


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def subscribers_remove(context: Context, email: str, yes: bool) -> None:
    """Erase EMAIL and everything stored about them (a data-deletion request).

    What is kept is a keyed hash of the address (under [newsletter] secret), so that no
    import, `subscribers add` or subscribe form brings them back unless --resubscribe.

    \b
    Example:
      newsletter subscribers remove alice@example.com --yes
    """
    from newsletter.audience.erasure import erase_subscriber
    from newsletter.store.schema import BY_CLI
    from newsletter.tokens import AddressDigests

    digests = AddressDigests(context.settings.newsletter.secret)
    if not yes:
        click.confirm(f"Erase {email} and all their data?", abort=True)
    with open_store(context) as store:
        erased = erase_subscriber(store, digests, email=email, source=BY_CLI)
    click.echo(f"removed {erased}")


@subscribers.command("list")
@click.option("--list", "list_slug", metavar="SLUG", help="Only members of this list.")
@click.option(
    "--status",
    type=_STATUS_CHOICE,
    help="Only this standing on the list (on any list without --list), or bounced/complained addresses.",
)
@click.option("--json", "as_json", is_flag=True, help="A JSON array of objects instead of text.")
@pass_context
def subscribers_list(context: Context, list_slug: str | None, status: str | None, as_json: bool) -> None:
    """Show subscribers: address, its status, standing per list, name (tab-separated).

    The status is the address's (active, bounced, complained); each list shows the standing
    there (active, pending, unsubscribed), e.g. daily:active,weekly:unsubscribed.  --json
    gives each subscriber a "memberships" object {list: standing}.

    \b
    Example:
      newsletter subscribers list --list default --status unsubscribed
    """
    import json

    from newsletter.audience.subscribers import iter_subscribers

    with open_store(context) as store:
        first = True
        for subscriber in iter_subscribers(store, list_slug=list_slug, status=status):
            if as_json:
                click.echo(("[" if first else ",") + json.dumps(subscriber.as_json(), ensure_ascii=False))
            else:
                click.echo(
                    f"{subscriber.email}\t{subscriber.status}\t{subscriber.memberships_text()}\t{subscriber.name}"
                )
            first = False
        if as_json:
            click.echo("[]" if first else "]")


@subscribers.command("export")
@click.option("--list", "list_slug", metavar="SLUG", help="Only members of this list.")
@click.option(
    "--status",
    type=_STATUS_CHOICE,
    help="Only this standing on the list (on any list without --list), or bounced/complained addresses.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (UTF-8 with BOM, for Excel); default: standard output.",
)
@pass_context
def subscribers_export(context: Context, list_slug: str | None, status: str | None, output: Path | None) -> None:
    """Export subscribers as CSV that imports back unchanged.

    Columns: email, name, status (the address's), one list:SLUG column per list with the
    standing there (active, pending, unsubscribed, or empty), then one per attribute.
    Cells a spreadsheet would run as formulas get a ' in front (import removes it).

    \b
    Example:
      newsletter subscribers export --list default -o readers.csv
    """
    from newsletter.audience.csv_export import export_csv, export_csv_file

    with open_store(context) as store:
        if output is None:
            export_csv(store, sys.stdout, list_slug=list_slug, status=status)
            return
        count = export_csv_file(store, output, list_slug=list_slug, status=status)
    click.echo(f"{output}: {count} subscribers", err=True)


@click.group("lists", invoke_without_command=True)
@pass_context
@click.pass_context
def lists_command(ctx: click.Context, context: Context) -> None:
    """Show every list: slug, name, visibility and its members by standing.

    Each member is counted once: as bounced or complained when their address is, else as
    active, pending or unsubscribed on that list.  `lists set` names a list and says who
    may join it.

    \b
    Examples:
      newsletter lists
      newsletter lists set weekly --name 每周精选 --description "每周五，一封" --public
    """
    if ctx.invoked_subcommand is not None:
        return
    from newsletter.audience.lists import STANDINGS as statuses
    from newsletter.audience.lists import list_summaries

    with open_store(context) as store:
        summaries = list_summaries(store, context.settings)
    width = max([len("list"), *(len(s.slug) for s in summaries)])
    name_width = max([len("name"), *(len(s.name) for s in summaries)])
    click.echo(
        f"{'list':<{width}}  {'name':<{name_width}}  {'public':<6}  "
        + "  ".join(f"{s:>12}" for s in (*statuses, "total"))
    )
    for summary in summaries:
        counts = "  ".join(f"{summary.counts[s]:>12}" for s in statuses)
        visibility = "yes" if summary.public else "no"
        click.echo(
            f"{summary.slug:<{width}}  {summary.name:<{name_width}}  {visibility:<6}  {counts}  {summary.total:>12}"
        )
    if not summaries:
        click.echo("(no lists yet: newsletter subscribers import FILE creates them)", err=True)


@lists_command.command("set")
@click.argument("slug")
@click.option("--name", help="The list's name, as readers see it on the preference page and the subscribe form.")
@click.option("--description", help="One line for the preference page: what it sends and how often.")
@click.option("--public/--private", "public", default=None, help="Whether /subscribe may join it (default: unchanged).")
@pass_context
def lists_set(context: Context, slug: str, name: str | None, description: str | None, public: bool | None) -> None:
    """Name list SLUG, describe it, make it public or private (creating it if needed).

    A public list can be joined from /subscribe and is offered on every reader's
    preference page; a private one only by import or `subscribers add`.  A [lists.SLUG]
    table in the configuration overrides what is set here, key by key.

    \b
    Examples:
      newsletter lists set daily --name 每日速递 --description "工作日早上 8 点" --public
      newsletter lists set vip --private
    """
    from newsletter.audience.lists import set_list

    if name is None and description is None and public is None:
        raise click.UsageError("nothing to set: give --name, --description, --public or --private")
    with open_store(context) as store:
        change = set_list(store, context.settings, slug, name=name, description=description, public=public)
    info = change.info
    click.echo(
        f"{info.slug}: {info.title} ({'public' if info.public else 'private'})"
        + (f" — {info.description}" if info.description else "")
    )
    for key in change.overridden:
        click.echo(
            f"warning: [lists.{slug}] {key} in {context.settings.source} overrides what was just stored", err=True
        )
