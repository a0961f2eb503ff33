"""The terminal side of `newsletter stats`: an issue's numbers as tables (rich).

Kept apart from `stats.py`, which only computes, so the web page and `--json` share the
numbers and only this module knows about terminals.
"""

from __future__ import annotations

from typing import IO

from newsletter.stats import IssueStats


def print_stats(stats: IssueStats, *, file: IO[str] | None = None, width: int | None = None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=width, highlight=False, soft_wrap=False)
    started = f"sending began {stats.send_started_at:%Y-%m-%d %H:%M} UTC" if stats.send_started_at else "not sent yet"
    if stats.state == "complete":
        finished = f", finished {stats.completed_at:%Y-%m-%d %H:%M} UTC" if stats.completed_at else ", complete"
    elif stats.state == "incomplete":
        finished = f", incomplete: {stats.undelivered} not delivered yet"
    else:
        finished = ""
    named = stats.slug if stats.slug == stats.issue_date.isoformat() else f"{stats.slug}, {stats.issue_date:%Y-%m-%d}"
    console.print(f"[bold]{_escape(stats.title)}[/bold]  ({_escape(named)}; {started}{finished})")
    console.print()

    summary = Table(box=box.SIMPLE_HEAD, show_edge=False)
    summary.add_column("measure")
    summary.add_column("subscribers", justify="right")
    summary.add_column("of sent", justify="right")
    for row in stats.summary():
        summary.add_row(row.label, str(row.value), "" if row.share is None else f"{row.share * 100:.1f}%")
    console.print(summary)
    console.print()

    if stats.entries:
        entries = Table(title="clicks per entry", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
        entries.add_column("entry", overflow="fold")
        entries.add_column("category", overflow="fold")
        entries.add_column("clicks", justify="right")
        entries.add_column("machines", justify="right")
        entries.add_column("people", justify="right")
        for entry in stats.entries:
            entries.add_row(
                _escape(entry.title or "(the template's links)"),
                _escape(entry.category or ""),
                str(entry.clicks),
                str(entry.machine_clicks),
                str(entry.people),
            )
        console.print(entries)
        console.print()

    if stats.categories:
        categories = Table(title="clicks per category", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
        categories.add_column("category", overflow="fold")
        categories.add_column("clicks", justify="right")
        categories.add_column("machines", justify="right")
        categories.add_column("people", justify="right")
        for category in stats.categories:
            categories.add_row(
                _escape(category.category), str(category.clicks), str(category.machine_clicks), str(category.people)
            )
        console.print(categories)
        console.print()

    if stats.links:
        links = Table(title="clicks per link", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
        links.add_column("#", justify="right")
        links.add_column("link", overflow="fold")
        links.add_column("entry", overflow="fold")
        links.add_column("clicks", justify="right")
        links.add_column("machines", justify="right")
        links.add_column("people", justify="right")
        for link in stats.links:
            words = f"{link.text}\n{link.url}" if link.text and link.text != link.url else link.url
            links.add_row(
                str(link.index),
                _escape(words),
                _escape(link.entry or "(template)"),
                str(link.clicks),
                str(link.machine_clicks),
                str(link.people),
            )
        console.print(links)
        console.print()

    if stats.timeline:
        timeline = Table(
            title="opens and clicks by hour (hours with any)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
        )
        for name in ("hour", "starts (UTC)", "opens", "machine opens", "clicks", "machine clicks"):
            timeline.add_column(name, justify="left" if name == "starts (UTC)" else "right")
        for point in stats.timeline:
            timeline.add_row(
                str(point.hour),
                f"{point.start:%Y-%m-%d %H:00}",
                str(point.opens),
                str(point.machine_opens),
                str(point.clicks),
                str(point.machine_clicks),
            )
        console.print(timeline)
    else:
        console.print("no opens or clicks yet")


def _escape(text: str) -> str:
    # Titles and URLs are the editor's text: a "[b]" in them is text, not rich markup.
    from rich.markup import escape

    return escape(text)
