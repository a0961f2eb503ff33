"""A dry-run send (`newsletter send ISSUE --dry-run`) of the seed to many subscribers on
SQLite: messages per second of the whole process (wall and CPU), peak RSS, and whether it is
flat in the audience size.

Each audience size gets its own database and its own `newsletter` process, whose peak RSS
is read from the kernel when it exits (wait4's ru_maxrss), so sizes do not share a peak.
Subscribers are generated inside SQLite (INSERT ... SELECT over a recursive CTE), not
through the CSV importer.  Goals: peak RSS <= 150 MB, flat in the audience size (issue 4);
the seed to 200,000 readers at >= 10,000 messages/s of wall time for the whole process on an
idle core (issue 15).  On a shared machine wall time includes waiting for a core, so the
process's CPU time (user + system, from wait4) is printed beside it, with the load average.

    .venv/bin/python bench/bench_dry_run.py [--sizes 1000,200000] [--issue FILE] [--runs 3]

The issue defaults to the seed (../shared/seeds beside the clone), else issues/2026-11-30.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ISSUE = REPO / "issues" / "2026-11-30.md"
SEED = REPO.parent / "shared" / "seeds" / "000_31559cfeefac81fc.txt"

CONFIG = """\
[newsletter]
name = "AI行业速递"
from = "AI行业速递 <digest@example.com>"
base_url = "https://news.example.com"
database = "sqlite:///newsletter.db"
secret = "bench-dry-run-0123456789abcdef0123456789abcdef"
address = "示例传媒 · 北京市海淀区示例路 1 号"

[transport]
kind = "outbox"
"""


def run(command: list[str], cwd: Path) -> tuple[str, float, float, float]:
    """Run `command`; (stdout, seconds, peak RSS in MB, CPU seconds of that process)."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    # wait4 gives this child's own resource usage; ru_maxrss is in kilobytes on Linux.
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    out, err = process.stdout.read(), process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out}\n{err}")
    return out, elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def newsletter(directory: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--config", str(directory / "newsletter.toml"), *args]


def generate(directory: Path, count: int) -> float:
    """`count` active subscribers in list "default", written by SQLite itself."""
    started = time.monotonic()
    database = sqlite3.connect(directory / "newsletter.db")
    now = "2026-11-30 00:00:00.000000"
    with database:
        database.execute("INSERT INTO lists (id, slug, name, created_at) VALUES (1, 'default', 'default', ?)", (now,))
        database.execute(
            """
            INSERT INTO subscribers (id, email, email_key, name, status, attributes, source, created_at, updated_at)
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            SELECT i, 'reader' || i || '@example.org', 'reader' || i || '@example.org', '读者 ' || i,
                   'active', '{}', 'bench', ?, ? FROM n
            """,
            (count, now, now),
        )
        database.execute(
            "INSERT INTO memberships (list_id, subscriber_id, created_at) SELECT 1, id, ? FROM subscribers", (now,)
        )
    database.close()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,200000", help="audience sizes, comma-separated")
    parser.add_argument("--issue", type=Path, default=SEED if SEED.is_file() else EXAMPLE_ISSUE)
    parser.add_argument("--runs", type=int, default=3, help="dry runs per size (medians printed)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; Python {platform.python_version()}"
    )
    print(f"issue: {args.issue.name}; {args.runs} dry runs per size")
    print("dry run = the whole command (start-up, render, checks, building); built/s = its own figure for building")
    print(
        f"{'audience':>10s} {'generate':>9s} {'dry run':>9s} {'CPU':>8s} {'msgs/s wall':>12s} {'per CPU-s':>10s}"
        f" {'built/s':>9s} {'peak RSS':>9s} {'load':>5s}"
    )
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="bench-dry-run-") as scratch:
        for size in sizes:
            directory = Path(scratch) / str(size)
            directory.mkdir()
            (directory / "newsletter.toml").write_text(CONFIG, encoding="utf-8")
            # `newsletter check` creates nothing; opening the store migrates it, so a plain
            # Store.open through the library makes the empty schema first.
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from newsletter.store import Store; Store.open('sqlite:///newsletter.db').close()",
                ],
                cwd=directory,
                check=True,
            )
            generated = generate(directory, size)
            for _ in range(args.runs):
                out, elapsed, peak, cpu = run(newsletter(directory, "send", str(args.issue), "--dry-run"), directory)
                found = re.search(r"built (\d+) messages \(([\d.]+) KB each\) in ([\d.]+) s, (\d+)/s", out)
                built, rate = int(found.group(1)), int(found.group(4))
                assert built == size, out
                peaks[size] = max(peaks.get(size, 0.0), peak)
                print(
                    f"{size:>10,d} {generated:>8.1f}s {elapsed:>8.1f}s {cpu:>7.1f}s {size / elapsed:>12,.0f}"
                    f" {size / cpu:>10,.0f} {rate:>9,d} {peak:>7.1f} MB {os.getloadavg()[0]:>5.1f}",
                    flush=True,
                )
    smallest, largest = min(peaks), max(peaks)
    growth = peaks[largest] - peaks[smallest]
    print()
    print(
        f"peak RSS {peaks[largest]:.1f} MB at {largest:,d} (goal <= 150 MB: {'met' if peaks[largest] <= 150 else 'MISSED'}); "
        f"{growth:+.1f} MB from {smallest:,d} to {largest:,d} subscribers"
    )


if __name__ == "__main__":
    main()
