"""Database fixtures shared by every test that needs the store.

`database_url` is parametrized: a fresh SQLite file always, and a fresh PostgreSQL schema
when NEWSLETTER_TEST_DATABASE_URL is set (CI sets it; elsewhere those cases skip with the
reason).  `store` is that database opened and migrated.  A test that takes either fixture
runs once per database:

    def test_something(store):              # Store.open(...) at the head revision
        ...

    def test_cli_thing(database_url):       # a URL, e.g. for NEWSLETTER_DATABASE_URL
        ...
"""

from __future__ import annotations

import pytest
from databases import empty_database
from sample_issues import SEED

# Fixtures shared by several test modules, found by name.
pytest_plugins = ["sns_signing"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A URL to an empty database of each kind, dropped after the test."""
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(database_url):
    """The test's database, opened and migrated to the head revision."""
    from newsletter.store import Store

    with Store.open(database_url) as opened:
        yield opened


def pytest_collection_modifyitems(config, items):
    """Without the seed beside the clone its extra cases are deselected, not skipped: every
    other test reads our own full-size fixture (sample_issues.DIGEST) and runs."""
    if SEED.is_file():
        return
    absent = [item for item in items if item.get_closest_marker("seed")]
    if absent:
        config.hook.pytest_deselected(items=absent)
        items[:] = [item for item in items if not item.get_closest_marker("seed")]


def pytest_report_header(config):
    where = "present" if SEED.is_file() else "absent: its extra `seed` cases are deselected"
    return f"seed issue {SEED}: {where}"
