"""The store: migrations, connection settings, transactions, times, errors.

Tests taking `store` or `database_url` run on SQLite and, when NEWSLETTER_TEST_DATABASE_URL
is set, on PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.cli.main import main
from newsletter.errors import StoreError
from newsletter.store import Store, head_revision
from newsletter.store.database import alembic_config, known_revisions
from newsletter.store.lists import get_or_create_list
from newsletter.store.schema import lists, metadata, subscribers, utcnow

REPO = Path(__file__).resolve().parent.parent


def test_revision_ids_from_file_names_match_alembics_own_chain():
    # Store.open finds the head from file names so it need not load Alembic; this pins the
    # naming rule (four-digit prefix == revision id) and a single linear chain.
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [head_revision()]
    chain = [script.revision for script in scripts.walk_revisions()][::-1]
    assert chain == known_revisions()
    for previous, script in zip([None, *chain], chain, strict=False):
        assert scripts.get_revision(script).down_revision == previous


def test_migrated_database_matches_schema_py(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.read() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_open_migrates_an_empty_database_and_db_upgrade_then_has_nothing_to_do(database_url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    result = CliRunner().invoke(main, ["db", "upgrade"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.endswith(f"upgraded from an empty database to revision {head_revision()}\n")
    result = CliRunner().invoke(main, ["db", "upgrade"], catch_exceptions=False)
    assert result.stdout.endswith(f"already at revision {head_revision()}\n")
    with Store.open(database_url) as store:
        assert store.current_revision() == head_revision()


def test_opening_a_current_database_does_not_load_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'news.db'}"
    Store.open(url).close()
    probe = (
        "import sys; from newsletter.store import Store; Store.open(sys.argv[1]).close(); "
        "print('alembic' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "False"


def test_database_from_a_newer_version_is_refused(store):
    with store.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="revision 9999, which this version of newsletter does not know"):
        store.ensure_current()


def _open_concurrently(url: str) -> None:
    Store.open(url).close()


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(database_url):
    context = multiprocessing.get_context("spawn")
    openers = [context.Process(target=_open_concurrently, args=(database_url,)) for _ in range(3)]
    for process in openers:
        process.start()
    for process in openers:
        process.join(60)
    assert [process.exitcode for process in openers] == [0, 0, 0]
    with Store.open(database_url) as store, store.read() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]


def test_sqlite_settings_hold_on_every_pooled_connection(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'news.db'}") as store:
        seen = []

        def inspect_connection() -> None:
            with store.read() as conn:
                seen.append(
                    tuple(
                        conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                        for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
                    )
                )

        threads = [threading.Thread(target=inspect_connection) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # synchronous: 1 is NORMAL.
        assert seen == [("wal", 30_000, 1, 1)] * 4


def test_foreign_keys_are_enforced(store):
    from newsletter.store.schema import memberships

    with pytest.raises(sa.exc.IntegrityError), store.begin() as conn:
        conn.execute(memberships.insert().values(list_id=12345, subscriber_id=67890, created_at=utcnow()))


def test_times_come_back_timezone_aware_in_utc(store):
    shanghai = timezone(timedelta(hours=8))
    moment = datetime(2026, 1, 22, 9, 30, 15, 123456, tzinfo=shanghai)
    with store.begin() as conn:
        conn.execute(
            subscribers.insert().values(
                email="a@example.com",
                email_key="a@example.com",
                status="active",
                attributes={},
                created_at=moment,
                updated_at=moment,
            )
        )
    with store.read() as conn:
        stored = conn.execute(sa.select(subscribers.c.created_at)).scalar_one()
    assert stored == moment and stored.tzinfo == UTC
    assert stored.hour == 1


def test_naive_times_are_refused(store):
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), store.begin() as conn:
        conn.execute(
            subscribers.insert().values(
                email="a@example.com",
                email_key="a@example.com",
                status="active",
                attributes={},
                created_at=datetime(2026, 1, 22),
                updated_at=datetime(2026, 1, 22),
            )
        )


def test_status_outside_the_five_is_refused_by_the_database(store):
    with pytest.raises(sa.exc.IntegrityError), store.begin() as conn:
        conn.execute(
            subscribers.insert().values(
                email="a@example.com",
                email_key="a@example.com",
                status="sleeping",
                attributes={},
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )


def test_email_key_is_unique(store):
    values = {
        "email": "A@example.com",
        "email_key": "a@example.com",
        "status": "active",
        "attributes": {},
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    with store.begin() as conn:
        conn.execute(subscribers.insert().values(**values))
    with pytest.raises(sa.exc.IntegrityError), store.begin() as conn:
        conn.execute(subscribers.insert().values(**{**values, "email": "a@example.com"}))


def test_get_or_create_list_returns_the_same_list(store):
    with store.begin() as conn:
        first = get_or_create_list(conn, "weekly", name="Weekly digest")
        assert get_or_create_list(conn, "weekly") == first
    with store.read() as conn:
        assert conn.execute(sa.select(lists.c.slug, lists.c.name)).all() == [("weekly", "Weekly digest")]


def test_read_then_write_transactions_in_threads_queue_instead_of_failing(store):
    # Each transaction reads, then writes: with SQLite's default deferred BEGIN the second
    # writer's lock upgrade fails at once with "database is locked"; BEGIN IMMEDIATE queues it.
    with store.begin() as conn:
        list_id = get_or_create_list(conn, "counter")
    errors: list[BaseException] = []

    def bump(worker: int) -> None:
        try:
            for round_ in range(25):
                with store.begin() as conn:
                    count = conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar_one()
                    now = utcnow()
                    conn.execute(
                        subscribers.insert().values(
                            email=f"w{worker}-{round_}-{count}@example.com",
                            email_key=f"w{worker}-{round_}-{count}@example.com",
                            status="active",
                            attributes={"list": list_id},
                            created_at=now,
                            updated_at=now,
                        )
                    )
        except BaseException as err:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=bump, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar_one() == 100


def test_missing_directory_is_one_line_store_error(tmp_path):
    with pytest.raises(StoreError, match=r"unable to open database file \(does its directory exist"):
        Store.open(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")


def test_unreachable_postgresql_is_one_line_store_error():
    with pytest.raises(StoreError, match=r"postgresql\+psycopg://nobody@127.0.0.1:1/news: "):
        Store.open("postgresql://nobody@127.0.0.1:1/news")


def test_unsupported_or_malformed_urls_are_refused():
    with pytest.raises(StoreError, match="unsupported database"):
        Store.open("mysql://x@localhost/db")
    with pytest.raises(StoreError, match="not a database URL"):
        Store.open("newsletter.db")


def test_password_never_appears_in_messages():
    with pytest.raises(StoreError) as caught:
        Store.open("postgresql://editor:hunter2@127.0.0.1:1/news")
    assert "hunter2" not in str(caught.value)


def _save_the_issue(conn: sa.Connection, link_urls: list[str]) -> None:
    from newsletter.store import ledger

    ledger.save_issue(
        conn,
        slug="2026-12-01",
        title="T",
        subject="S",
        preheader="",
        issue_date=datetime(2026, 12, 1).date(),
        language="zh",
        list_id=None,
        email_html="<p>x</p>",
        email_text="x",
        web_html="<p>x</p>",
        source_sha256="0" * 64,
        link_urls=link_urls,
    )


@pytest.mark.only_on("postgresql")
def test_senders_storing_one_issue_at_once_take_turns(store):
    """Three `newsletter send` processes started together each store the issue.  Two that the
    first one's commit woke both replaced its links, and the second, whose DELETE had waited
    for the other's, inserted the same link indices again (pk_links) and its send died."""
    from newsletter.store.schema import links as links_table

    links = [f"https://example.com/story/{n}" for n in range(30)]
    first_holds = threading.Event()
    release = threading.Event()
    errors: list[sa.exc.SQLAlchemyError] = []

    def first() -> None:
        with store.begin() as conn:
            _save_the_issue(conn, links)
            first_holds.set()
            release.wait(30)

    def another() -> None:
        try:
            with store.begin() as conn:
                _save_the_issue(conn, links)
        except sa.exc.SQLAlchemyError as err:  # the outcome: kept and asserted on below
            errors.append(err)

    holder = threading.Thread(target=first)
    holder.start()
    assert first_holds.wait(30)
    others = [threading.Thread(target=another) for _ in range(2)]
    for thread in others:
        thread.start()
    # Both wait for the first's uncommitted issue row (the server says so) before it commits.
    waiting = 0
    with store.engine.connect() as watcher:
        for _ in range(300):
            waiting = watcher.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting == 2:
                break
            # The sessions' activity is collected when first asked for in a transaction and
            # shown the same until it ends (PostgreSQL documentation, "Viewing Statistics"):
            # a new transaction for each look, or a first look that saw one waiter sees one
            # for good (1 run in 8 failed so).
            watcher.rollback()
            release.wait(0.05)
    assert waiting == 2
    release.set()
    for thread in [holder, *others]:
        thread.join(60)
    assert errors == []
    with store.read() as conn:
        stored = conn.execute(sa.select(links_table.c.idx, links_table.c.url).order_by(links_table.c.idx)).all()
    assert [tuple(row) for row in stored] == list(enumerate(links))


def test_a_read_sees_one_snapshot_however_many_statements_it_runs(store):
    """What `in_flight` relies on: a writer's commit between two statements of one read is
    seen by neither (on PostgreSQL's default isolation the second statement saw it, and a
    sender that ended meanwhile had its sent rows reported uncertain)."""
    with store.begin() as conn:
        conn.execute(sa.insert(lists).values(slug="before", name="Before", created_at=utcnow()))
    with store.read() as conn:
        first = conn.execute(sa.select(sa.func.count()).select_from(lists)).scalar_one()
        with store.begin() as writer:
            writer.execute(sa.insert(lists).values(slug="meanwhile", name="Meanwhile", created_at=utcnow()))
        second = conn.execute(sa.select(sa.func.count()).select_from(lists)).scalar_one()
    assert second == first
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(lists)).scalar_one() == first + 1
