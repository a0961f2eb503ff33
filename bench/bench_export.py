"""Benchmark: export every subscriber to CSV, streaming; prints rows/s and peak RSS.

    .venv/bin/python bench/bench_export.py                    # the SQLite database bench_import.py left
    .venv/bin/python bench/bench_export.py --database-url postgresql://postgres@127.0.0.1/nl_bench

Run bench_import.py first (same --rows, same --database-url): this exports what it imported.
The export runs in a fresh child process so the peak RSS is the export's alone; the output
file is then checked to hold one row per subscriber.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def run_export(url: str, path: Path) -> dict:
    sys.path.insert(0, str(HERE.parent))
    from newsletter.audience.csv_export import export_csv_file
    from newsletter.store import Store

    with Store.open(url) as store:
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        rows = export_csv_file(store, path)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        # Wall time suffers when other work shares the two cores; CPU time much less.
        "rows_per_cpu_second": round(rows / cpu),
        "load_average": round(os.getloadavg()[0], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "megabytes": round(path.stat().st_size / 1e6, 1),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="which bench_import.py database to export")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--child", nargs=2, metavar=("URL", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_export(args.child[0], Path(args.child[1]))))
        return

    if args.database_url:
        url = args.database_url
    else:
        database = OUT / f"import-{args.rows}.db"
        if not database.exists():
            sys.exit(f"{database} missing: run bench/bench_import.py --rows {args.rows} first")
        url = f"sqlite:///{database}"
    target = OUT / f"export-{args.rows}.csv"
    child = subprocess.run(
        [sys.executable, __file__, "--child", url, str(target)], capture_output=True, text=True, check=True
    )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    with target.open(encoding="utf-8-sig") as handle:
        lines = sum(1 for _ in handle)
    print(f"database: {url.rsplit('@', 1)[-1]}")
    print(
        f"export {figures['rows']:,} rows  {figures['rows_per_second']:>8,} rows/s ({figures['rows_per_cpu_second']:,} per CPU-s)  "
        f"{figures['seconds']:>6.2f} s  load {figures['load_average']}  "
        f"peak RSS {figures['peak_rss_mb']:>6.1f} MB  file {figures['megabytes']} MB ({lines - 1:,} data lines)"
    )


if __name__ == "__main__":
    main()
