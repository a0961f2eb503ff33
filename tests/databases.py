"""Empty test databases: a SQLite file, or a PostgreSQL schema of its own.

A schema per test (or per module) is a clean database for the test's purposes and takes
milliseconds, where CREATE DATABASE takes most of a second; `search_path` in the URL makes
it the default.  Used by conftest.py's `database_url` and by module-scoped web fixtures.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL_VARIABLE = "NEWSLETTER_TEST_DATABASE_URL"


@contextlib.contextmanager
def empty_database(kind: str, directory: Path, *, prefix: str = "test") -> Iterator[str]:
    """The URL of an empty database of `kind` ("sqlite" or "postgresql"), dropped after use.
    PostgreSQL cases skip with the reason when the variable is not set."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'newsletter.db'}"
        return
    base = os.environ.get(POSTGRES_URL_VARIABLE)
    if not base:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL cases skipped")
    import sqlalchemy as sa

    from newsletter.store.database import normalize_url

    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
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
