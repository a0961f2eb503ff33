"""A claim reads the rows it claims, not the whole queue (PostgreSQL's plan, read back with
EXPLAIN ANALYZE): found by bench/bench_senders.py, where a send of 100,000 crawled at
140 messages/s because every claim of 64 rows read and sorted all 80,000 queued ones."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from newsletter.store import ledger

pytest.register_assert_rewrite("tests.send_world")
from tests.send_world import World

pytest_plugins = ["tests.send_world"]


def scanned_deliveries(plan: dict) -> int:
    """Rows the plan's scans of `deliveries` returned, over every scan node."""
    total = 0
    if plan.get("Relation Name") == "deliveries":
        total += plan["Actual Rows"] * plan.get("Actual Loops", 1)
    for child in plan.get("Plans", []):
        total += scanned_deliveries(child)
    return total


# The plan read back is PostgreSQL's.
@pytest.mark.only_on("postgresql")
def test_a_claim_of_fifty_reads_about_fifty_rows_of_a_queue_of_twenty_thousand(world: World):
    world.add_subscribers(20_000)
    plan = world.plan()
    with world.store.begin() as conn:
        # No ANALYZE since: right after a snapshot the statistics are those of an empty
        # table until autovacuum gets round to it, as in a real send.
        ledger.snapshot_audience(conn, plan.stored.id, plan.list_id)

    statements: list[tuple[str, object]] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FOR UPDATE" in statement:
            statements.append((statement, parameters))

    engine = world.store.engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        with world.store.begin() as conn:
            claimed, _ = ledger.claim(conn, plan.stored.id, 50, plan.message_factory().message_id)
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert len(claimed) == 50 and statements

    read = 0
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        cursor = raw.cursor()
        for statement, parameters in statements:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            read += scanned_deliveries(cursor.fetchone()[0][0]["Plan"])
        raw.rollback()
    assert read <= 2 * 50, f"the claim's scans returned {read} rows of deliveries"
