"""Benchmark: wall time of `newsletter --help`, and what it imports.

    .venv/bin/python bench/bench_cli_help.py              # 20 runs
    .venv/bin/python bench/bench_cli_help.py --runs 50

Runs the installed console script (next to this interpreter; `python -m newsletter` when
there is none) as an editor would, then `python -X importtime` once to list the modules
that cost most at start-up, and whether any heavy one (boto3, SQLAlchemy, the web stack,
MJML, Jinja2) is imported although `--help` needs none of them.  The bare interpreter's
start-up is measured too, as the floor.  Goal: median <= 150 ms.  Prints figures only.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_MS = 150.0
HEAVY = (
    "boto3",
    "botocore",
    "sqlalchemy",
    "alembic",
    "starlette",
    "uvicorn",
    "mjml",
    "css_inline",
    "jinja2",
    "markdown_it_pyrs",
    "yaml",
    "email_validator",
    "cryptography",
    "rich",
    "httpx",
)


def wall_times(command: list[str], runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def describe(times: list[float]) -> str:
    ordered = sorted(times)
    return f"median {statistics.median(times) * 1000:6.1f} ms  (min {ordered[0] * 1000:6.1f}, max {ordered[-1] * 1000:6.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    script = Path(sys.executable).parent / "newsletter"
    command = [str(script), "--help"] if script.is_file() else [sys.executable, "-m", "newsletter", "--help"]
    wall_times(command, 2)  # warm the page cache and .pyc files
    help_times = wall_times(command, args.runs)
    floor = wall_times([sys.executable, "-c", "pass"], args.runs)
    print(f"command: {' '.join(command)}; {args.runs} runs; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    print(f"newsletter --help   {describe(help_times)}   goal <= {GOAL_MS:.0f} ms")
    print(f"python -c pass      {describe(floor)}   (interpreter start-up, the floor)")

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "newsletter", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)) // 2, match.group(4)))
    top_level = sorted((row for row in rows if row[1] <= 1), reverse=True)[:12]
    print("largest imports at start-up (cumulative, as measured under -X importtime, which inflates them):")
    for cumulative, _, name in top_level:
        print(f"  {cumulative / 1000:7.1f} ms  {name}")
    heavy = sorted({name.split(".")[0] for _, _, name in rows if name.split(".")[0] in HEAVY})
    print(f"heavy modules imported by --help: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
