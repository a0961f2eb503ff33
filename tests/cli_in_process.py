"""`newsletter ARGS` run in this process with click's CliRunner, for the CLI tests that need
no process of their own.

    from cli_in_process import run_newsletter

    result = run_newsletter("build", "issue.md", "--out", "out", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("issue.md:3: ")

The answer has the shape of `subprocess.run(..., capture_output=True, text=True)` (returncode,
stdout, stderr kept apart), so a test reads the same whichever way the command ran.  As for
`python -m newsletter` in a clean environment: none of the caller's NEWSLETTER_* variables
(`env` sets some), no terminal, stdin empty, the working directory `cwd`.  What still needs
a subprocess: signals, a terminal or its absence, the installed entry point, servers that
must be killed.

An exception the command does not turn into its one-line error propagates here
(`catch_exceptions=False`): the test fails with the traceback, as a subprocess's "Traceback"
on stderr would make it fail.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


def run_newsletter(
    *args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess:
    from click.testing import CliRunner

    from newsletter.cli.main import main

    unset: dict[str, str | None] = {name: None for name in os.environ if name.startswith("NEWSLETTER_")}
    runner = CliRunner(env={**unset, **(env or {})})
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = runner.invoke(main, list(args), input=stdin, prog_name="newsletter", catch_exceptions=False)
    return subprocess.CompletedProcess(["newsletter", *args], result.exit_code, result.stdout, result.stderr)
