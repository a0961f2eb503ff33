"""Erasure that lasts: `subscribers remove` deletes the person and keeps only a keyed digest
of the address, and no import or `subscribers add` brings them back without --resubscribe.
On SQLite and PostgreSQL (conftest.py's `store`); the database is read back each time."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.audience.csv_import import import_csv
from newsletter.audience.erasure import erase_subscriber, is_erased
from newsletter.audience.subscribers import add_subscriber, get_subscriber
from newsletter.cli.main import main
from newsletter.errors import ConfigError, InputError
from newsletter.store.schema import deliveries, erasures, events, memberships, subscribers
from newsletter.tokens import AddressDigests

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "subscribers" / "example.csv"
SECRET = "erasure-tests-5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
DIGESTS = AddressDigests(SECRET)


def count(store, table, *where) -> int:
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def test_erasing_deletes_the_person_and_keeps_only_a_keyed_digest(store):
    import_csv(store, EXAMPLE, digests=DIGESTS)
    person = get_subscriber(store, "wang.fang@example.com")
    assert person is not None and person.lists == ("default", "weekly")
    with store.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO events (subscriber_id, kind, machine, occurred_at, recorded_at) "
                "VALUES (:id, 'open', false, :at, :at)"
            ),
            {
                "id": person.id,
                "at": person.created_at.replace(tzinfo=None) if store.dialect == "sqlite" else person.created_at,
            },
        )

    assert erase_subscriber(store, DIGESTS, email="WANG.FANG@example.com", source="cli") == "wang.fang@example.com"

    assert get_subscriber(store, "wang.fang@example.com") is None
    assert count(store, memberships, memberships.c.subscriber_id == person.id) == 0
    assert count(store, events, events.c.subscriber_id == person.id) == 0
    assert count(store, deliveries, deliveries.c.subscriber_id == person.id) == 0
    with store.read() as conn:
        (row,) = conn.execute(sa.select(erasures)).all()
        everything = " ".join(
            str(value) for table in (subscribers, erasures) for r in conn.execute(sa.select(table)) for value in r
        )
    # The digest is keyed: not the plain hash of the address that anyone could compute.
    assert row.digest == DIGESTS.digest("wang.fang@example.com")
    assert row.digest != hashlib.sha256(b"wang.fang@example.com").hexdigest()
    assert row.digest != AddressDigests("another secret").digest("wang.fang@example.com")
    assert row.key_id == DIGESTS.key_id and row.source == "cli"
    assert "wang.fang" not in everything and "王芳" not in everything
    assert is_erased(store, DIGESTS, "Wang.Fang@EXAMPLE.com")
    with pytest.raises(InputError, match="no subscriber wang.fang@example.com"):
        erase_subscriber(store, DIGESTS, email="wang.fang@example.com", source="cli")


def test_neither_import_nor_add_brings_an_erased_person_back_without_resubscribe(store):
    import_csv(store, EXAMPLE, digests=DIGESTS)
    erase_subscriber(store, DIGESTS, email="li.wei@example.com", source="cli")

    again = import_csv(store, EXAMPLE, digests=DIGESTS)
    assert (again.imported, again.unchanged, again.skipped) == (0, 9, 1)
    (problem,) = again.problems
    assert problem.row == 3 and problem.skipped
    assert problem.reason.startswith("li.wei@example.com was erased on ") and "--resubscribe" in problem.reason
    dry = import_csv(store, EXAMPLE, digests=DIGESTS, dry_run=True)
    assert (dry.imported, dry.skipped) == (0, 1)
    with pytest.raises(InputError, match="(?i)li.wei@example.com was erased on .* at their request"):
        add_subscriber(store, "LI.WEI@example.com", list_slug="weekly", digests=DIGESTS)
    assert get_subscriber(store, "li.wei@example.com") is None

    back = import_csv(store, EXAMPLE, digests=DIGESTS, resubscribe=True)
    assert back.imported == 1
    assert get_subscriber(store, "li.wei@example.com").memberships == {"default": "active"}
    assert not is_erased(store, DIGESTS, "li.wei@example.com")


def test_add_with_resubscribe_lets_an_erased_person_back(store):
    add_subscriber(store, "alice@example.com", digests=DIGESTS)
    erase_subscriber(store, DIGESTS, email="alice@example.com", source="cli")
    again, created = add_subscriber(store, "alice@example.com", resubscribe=True, digests=DIGESTS)
    assert created and again.receives("default")
    assert count(store, erasures) == 0


def test_without_the_secret_an_erased_list_cannot_be_checked_so_import_refuses(store):
    add_subscriber(store, "alice@example.com", digests=DIGESTS)
    erase_subscriber(store, DIGESTS, email="alice@example.com", source="cli")
    with pytest.raises(ConfigError, match="checking an address against them needs the secret"):
        import_csv(store, EXAMPLE)
    with pytest.raises(ConfigError, match="needs the secret"):
        add_subscriber(store, "bob@example.com")
    assert count(store, subscribers) == 0


def test_cli_remove_then_import_the_same_file_skips_the_erased_row(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET": SECRET})

    def run(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    assert run("subscribers", "import", str(EXAMPLE)).exit_code == 0
    removed = run("subscribers", "remove", "zhao.lei@example.org", "--yes")
    assert removed.exit_code == 0 and removed.stdout == "removed zhao.lei@example.org\n"
    again = run("subscribers", "import", str(EXAMPLE))
    assert again.exit_code == 0
    assert again.stdout.endswith("0 imported, 0 updated, 9 unchanged, 1 skipped\n")
    assert "row 11: skipped: zhao.lei@example.org was erased on " in again.stderr
    refused = run("subscribers", "add", "zhao.lei@example.org")
    assert refused.exit_code == 1 and refused.stderr.startswith("error: zhao.lei@example.org was erased on ")
    assert run("subscribers", "add", "zhao.lei@example.org", "--resubscribe").exit_code == 0
