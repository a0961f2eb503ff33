"""Benchmark: import N generated subscribers from CSV; prints rows/s and peak RSS.

    .venv/bin/python bench/bench_import.py                    # 1,000,000 rows into SQLite
    .venv/bin/python bench/bench_import.py --rows 100000
    .venv/bin/python bench/bench_import.py --database-url postgresql://postgres@127.0.0.1/nl_bench

The CSV is generated once into bench/out/ (deterministic, seeded).  Each measurement runs
in a fresh child process, so its peak RSS is the import's alone: a dry run and a first
import into an empty database, then the same file again (which must change nothing).  For PostgreSQL the
given database is emptied first: point it at a scratch database.

Addresses: 70% at ten large providers, 30% spread over 20,000 company domains (each
domain costs one full email-validator check, then hits a cache); names half Chinese;
two attribute columns; every row on list `default`, one in five also on `weekly`; 1% of
rows repeat an earlier address in different case.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PROVIDERS = [
    "gmail.com",
    "qq.com",
    "163.com",
    "outlook.com",
    "yahoo.com",
    "126.com",
    "hotmail.com",
    "foxmail.com",
    "icloud.com",
    "sina.com",
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
ENGLISH = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(20260122)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        handle.write("email,name,lists,city,plan\r\n")
        for number in range(rows):
            if number and rng.random() < 0.01:
                # A repeat of an earlier row's address in upper case: reported, not imported.
                earlier = rng.randrange(number)
                local, domain = f"user{earlier}", _domain(random.Random(earlier))
                email = f"{local.upper()}@{domain.upper()}"
            else:
                email = f"user{number}@{_domain(random.Random(number))}"
            if number % 2:
                name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            else:
                name = f'"{rng.choice(ENGLISH)}, {number}"'
            lists = '"default,weekly"' if number % 5 == 0 else "default"
            handle.write(f"{email},{name},{lists},city{number % 300},{'pro' if number % 7 == 0 else 'free'}\r\n")
    partial.replace(path)


def _domain(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(PROVIDERS)
    return f"company{rng.randrange(20_000)}.example.com"


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_import(csv_path: Path, url: str, dry_run: bool = False) -> dict:
    """One import, in this process; returns the figures."""
    sys.path.insert(0, str(HERE.parent))
    from newsletter.audience.csv_import import import_csv
    from newsletter.store import Store

    problems = 0

    def count_problem(problem) -> None:
        nonlocal problems
        problems += 1

    with Store.open(url) as store:
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        report = import_csv(store, csv_path, on_problem=count_problem, dry_run=dry_run)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
    return {
        "rows": report.rows,
        "imported": report.imported,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "skipped": report.skipped,
        "problems": problems,
        "seconds": round(seconds, 2),
        "rows_per_second": round(report.rows / seconds),
        # Wall time suffers when other work shares the two cores; CPU time much less.
        "rows_per_cpu_second": round(report.rows / cpu),
        "load_average": round(os.getloadavg()[0], 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def fresh_database(url: str, rows: int) -> str:
    if url:
        from sqlalchemy import create_engine, text

        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
        return url
    database = OUT / f"import-{rows}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{database}"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url", default="", help="PostgreSQL URL of a scratch database (default: a SQLite file in bench/out/)"
    )
    parser.add_argument("--child", nargs=3, metavar=("CSV", "URL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_import(Path(args.child[0]), args.child[1], dry_run=args.child[2] == "dry-run")))
        return

    csv_path = OUT / f"subscribers-{args.rows}.csv"
    if not csv_path.exists():
        print(f"generating {csv_path} ...", flush=True)
        generate(csv_path, args.rows)
    print(f"file: {csv_path} ({csv_path.stat().st_size / 1e6:.1f} MB, {args.rows:,} rows)")
    url = fresh_database(args.database_url, args.rows)
    print(f"database: {url.rsplit('@', 1)[-1]}")
    # The dry run goes first, into the empty database: every address is new, so its
    # duplicate detection has no subscriber ids and uses its temporary table throughout.
    for label, mode in (
        ("dry run (empty database)", "dry-run"),
        ("first import", "write"),
        ("re-import (no changes)", "write"),
    ):
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(csv_path), url, mode], capture_output=True, text=True, check=True
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"{label:26} {figures['rows_per_second']:>8,} rows/s ({figures['rows_per_cpu_second']:,} per CPU-s)  "
            f"{figures['seconds']:>7.2f} s  load {figures['load_average']}  "
            f"peak RSS {figures['peak_rss_mb']:>6.1f} MB  "
            f"imported {figures['imported']:,} updated {figures['updated']:,} "
            f"unchanged {figures['unchanged']:,} skipped {figures['skipped']:,}"
        )


if __name__ == "__main__":
    main()
