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

# The modules of shared fixtures and assertions, rewritten so that their asserts say what
# they compared: registered here, before any test module imports one of them directly
# (pytest can only rewrite a module it has not seen imported yet).
pytest.register_assert_rewrite("http_server", "tests.web_site", "tests.send_world", "tests.transport_servers")
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
    """Deselected, not skipped (a skip in CI means something did not run):
    - a test marked `only_on("postgresql")` (or "sqlite") in its cases for the other database;
    - without the seed beside the clone, its extra cases: every other test reads our own
      full-size fixture (sample_issues.DIGEST) and runs."""
    unwanted = [item for item in items if _for_another_database(item)]
    if not SEED.is_file():
        unwanted += [item for item in items if item.get_closest_marker("seed")]
    if unwanted:
        config.hook.pytest_deselected(items=unwanted)
        dropped = {id(item) for item in unwanted}
        items[:] = [item for item in items if id(item) not in dropped]


def _for_another_database(item) -> bool:
    marker = item.get_closest_marker("only_on")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "database_url" not in callspec.params:
        return False
    return callspec.params["database_url"] not in marker.args


def pytest_report_header(config):
    where = "present" if SEED.is_file() else "absent: its extra `seed` cases are deselected"
    return f"seed issue {SEED}: {where}"
