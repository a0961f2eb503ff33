"""`newsletter doctor`: the sending setup checked as receivers and providers see it."""

from __future__ import annotations

import sys

import click

from newsletter.cli.context import Context, pass_context


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON (status ok, warn or fail).")
@pass_context
def doctor(context: Context, as_json: bool) -> None:
    """Check DNS (SPF, DKIM, DMARC, MX), SES (identity, account, events) and the web side.

    Run it before the first send and whenever mail lands in spam.  Each item is ✓, ⚠ or ✗
    with the fix in one line; the exit status is 1 when any item is ✗.

    \b
    Example:
      newsletter doctor
      newsletter doctor --json | jq '.checks[] | select(.status == "fail")'
    """
    from newsletter.doctor.checkup import run_doctor

    report = run_doctor(context.settings)
    click.echo(report.json() if as_json else report.text())
    sys.exit(report.exit_code)
