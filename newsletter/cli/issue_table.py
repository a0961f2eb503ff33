"""The terminal side of `newsletter issues`: one line per issue."""

from __future__ import annotations

from typing import IO

from newsletter.issue_states import IssueState


def print_issue_states(states: list[IssueState], *, file: IO[str] | None = None, width: int | None = None) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=file, width=width, highlight=False, soft_wrap=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("issue", no_wrap=True)
    table.add_column("date", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("sent", justify="right")
    table.add_column("detail", overflow="fold")
    for state in states:
        detail = state.note
        if state.state == "sent" and state.completed_at:
            detail = f"{state.note}, finished {state.completed_at:%Y-%m-%d %H:%M} UTC"
        table.add_row(
            escape(state.slug),
            state.issue_date.isoformat() if state.issue_date else "",
            state.state,
            str(state.sent) if state.recipients else "",
            escape(detail or (state.file or "")),
        )
    console.print(table)
