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

import os
import uuid

import pytest

POSTGRES_URL_VARIABLE = "NEWSLETTER_TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A URL to an empty database of each kind, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'newsletter.db'}"
        return
    base = os.environ.get(POSTGRES_URL_VARIABLE)
    if not base:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL cases skipped")
    import sqlalchemy as sa

    from newsletter.store.database import normalize_url

    # A schema per test is a clean database for the test's purposes and takes milliseconds,
    # where CREATE DATABASE takes most of a second.  search_path makes it the default.
    schema = f"test_{uuid.uuid4().hex[:16]}"
    server = normalize_url(base)
    admin = sa.create_engine(server, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(database_url):
    """The test's database, opened and migrated to the head revision."""
    from newsletter.store import Store

    with Store.open(database_url) as opened:
        yield opened
