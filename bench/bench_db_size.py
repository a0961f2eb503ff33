"""Database size per recipient per issue on PostgreSQL: the ledger and the hit rows.

    .venv/bin/python bench/bench_db_size.py --database postgresql://postgres@127.0.0.1/DB [--recipients 20000]

In a schema of its own: `--recipients` readers, the example issue sent to all of them
through the outbox, then one open and one click per reader written as `newsletter serve`
writes them (store/hits.py, with a browser's user agent).  Prints the bytes of each table
and of its indexes (pg_relation_size, pg_indexes_size, after VACUUM) per row, and per
recipient per issue.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_senders import _drop, _schema_url

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--recipients", type=int, default=20_000)
    args = parser.parse_args()

    import sqlalchemy as sa

    from newsletter.feedback.hits import judge_hit, replay_key
    from newsletter.store.hits import Hit, record_hits
    from newsletter.store.schema import CLICK, OPEN
    from tests.send_world import World

    schema, url = _schema_url(args.database)
    try:
        with tempfile.TemporaryDirectory() as directory:
            world = World(Path(directory), url)
            for start in range(0, args.recipients, 50_000):
                world.add_subscribers(min(50_000, args.recipients - start), prefix=f"r{start}-")
            summary = world.send()
            assert summary.sent == args.recipients
            issue_id = world.issue_row()["id"]
            ids = sorted(world.deliveries())
            now = time.time()
            with world.store.begin() as conn:
                for kind, link in ((OPEN, None), (CLICK, 0)):
                    hits = [Hit(kind, issue_id, i, now, BROWSER, link_idx=link) for i in ids]
                    for batch in range(0, len(hits), 2_000):
                        record_hits(conn, hits[batch : batch + 2_000], judge_hit, replay_key)
            engine = sa.create_engine(world.store.engine.url, isolation_level="AUTOCOMMIT")
            figures = {}
            with engine.connect() as conn:
                for table in ("deliveries", "events", "subscribers", "memberships", "senders"):
                    conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
                    rows, heap, indexes = conn.execute(
                        sa.text(
                            f"SELECT count(*), pg_relation_size('{table}'), pg_indexes_size('{table}') FROM {table}"
                        )
                    ).one()
                    figures[table] = {
                        "rows": rows,
                        "heap_bytes_per_row": round(heap / rows, 1) if rows else 0,
                        "index_bytes_per_row": round(indexes / rows, 1) if rows else 0,
                    }
            engine.dispose()
            world.close()
        print(json.dumps({"recipients": args.recipients, "tables": figures}, indent=2))
    finally:
        _drop(args.database, schema)


if __name__ == "__main__":
    main()
