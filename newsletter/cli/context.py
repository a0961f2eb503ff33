"""What every command shares: the settings, loaded once on first use, and the store."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from newsletter.compose.checks import Finding
    from newsletter.config import Settings
    from newsletter.store import Store


class Context:
    """What every command may need, built on first use."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path

    @cached_property
    def settings(self) -> Settings:
        from newsletter.config import load_settings

        return load_settings(self.config_path)


pass_context = click.make_pass_decorator(Context)


def open_store(context: Context) -> Store:
    from newsletter.store import Store

    return Store.open(context.settings.database_url)


def print_findings(findings: Iterable[Finding]) -> None:
    for finding in findings:
        click.echo(str(finding), err=True)
