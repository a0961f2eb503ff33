"""Opening the database: engine set-up per dialect, transactions, migrations.

SQLite is the default (one file, nothing to install); PostgreSQL through psycopg 3 serves
deployments that outgrow it.  The same tables and migrations run on both.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import sqlalchemy as sa
from sqlalchemy import event

from newsletter.errors import StoreError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")

# How long a SQLite writer waits for another writer's lock before giving up.  The sender,
# the web server and an import share one file; a batch of an import holds the lock for
# well under a second, so 30 s only runs out when something is stuck.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Any fixed number works: it only has to be the same for every process that migrates.
_PG_MIGRATION_LOCK = 0x6E6C_0001

# Execution option that tells the SQLite `begin` hook which BEGIN to emit.
_SQLITE_BEGIN = "newsletter_sqlite_begin"


def known_revisions() -> list[str]:
    """Revision ids of the shipped migrations, oldest first, read from the file names."""
    return sorted(
        match.group(1) for name in _listdir(MIGRATIONS_DIR / "versions") if (match := _REVISION_FILE.match(name))
    )


def head_revision() -> str:
    return known_revisions()[-1]


def _listdir(path: Path) -> list[str]:
    try:
        return [entry.name for entry in path.iterdir()]
    except FileNotFoundError:  # pragma: no cover - broken installation
        raise StoreError(f"migrations missing from the installation: {path}") from None


def normalize_url(url: str) -> sa.URL:
    """Parse a database URL; bare `postgresql://` (and Heroku-style `postgres://`) means psycopg 3."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as err:
        raise StoreError(f"not a database URL: {url!r} (expected e.g. sqlite:///newsletter.db)") from err
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe_url(url: str | sa.URL) -> str:
    """The URL for messages, without its password."""
    parsed = url if isinstance(url, sa.URL) else sa.make_url(url)
    return parsed.render_as_string(hide_password=True)


def create_engine(url: str) -> sa.Engine:
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"{describe_url(parsed)}: unsupported database (use sqlite:/// or postgresql://)")
    try:
        if backend == "sqlite":
            engine = sa.create_engine(parsed)
            _configure_sqlite(engine)
        else:
            # The web server keeps connections for hours; a server restart must not turn
            # into errors on the next request.
            engine = sa.create_engine(parsed, pool_pre_ping=True)
            _name_connections(engine)
    except sa.exc.NoSuchModuleError as err:
        raise StoreError(
            f"{describe_url(parsed)}: driver not installed ({err}); pip install 'newsletter[postgres]'"
        ) from err
    except ImportError as err:
        raise StoreError(
            f"{describe_url(parsed)}: driver not installed ({err}); pip install 'newsletter[postgres]'"
        ) from err
    return engine


def connection_name(pid: int | None = None) -> str:
    """What a PostgreSQL connection of process `pid` (this one by default) calls itself."""
    # application_name is cut at 63 bytes by the server (NAMEDATALEN - 1).
    return f"newsletter {socket.gethostname()}:{pid or os.getpid()}"[:63]


def _name_connections(engine: sa.Engine) -> None:
    """Each connection names its process in `pg_stat_activity.application_name` (unless
    the URL names it), so that whoever looks at the server sees which sender or web worker
    holds which connection, and how long a killed one's are still being served."""

    @event.listens_for(engine, "do_connect")
    def name_the_connection(dialect, connection_record, cargs, cparams) -> None:
        # Named when connecting, not when the engine was made: a forked web worker
        # connects under its own pid.
        cparams.setdefault("application_name", connection_name())


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection, connection_record) -> None:
        # pysqlite opens its own transactions lazily with a deferred BEGIN, and only before
        # DML.  A deferred transaction that reads and then writes must upgrade its lock, and
        # when another writer got there first SQLite answers SQLITE_BUSY at once -- the busy
        # timeout does not apply, because waiting could deadlock.  So SQLAlchemy's `begin`
        # hook below emits the BEGIN itself, and pysqlite is told to stay out of it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # Set first: switching to WAL itself needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            # WAL lets readers (the web server) read while a writer (an import) writes.
            cursor.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL is safe against corruption; it may lose the last commits
            # on power loss, not on a process crash.
            cursor.execute("PRAGMA synchronous = NORMAL")
            # Off by default in SQLite, per connection.
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def begin_transaction(connection: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front, waiting up to the busy timeout for it,
        # so two writers queue instead of one failing with "database is locked".  Readers
        # ask for DEFERRED through Store.read() and never block a writer.
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def alembic_config(connection: sa.Connection | None = None):
    """Alembic configuration pointing at the migrations shipped in this package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Written revision files carry the four-digit id in their name (see migrations/README.md).
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


class Store:
    """The database: an engine plus the transactions and migrations the rest of the code uses.

    Use `Store.open(url)`; then `with store.begin() as conn:` for writes and
    `with store.read() as conn:` for reads that must not wait for writers.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, upgrade: bool = True) -> Store:
        """Connect to `url` and, unless `upgrade=False`, migrate the schema to the head
        revision if it is not there yet (one cheap query when it is)."""
        store = cls(create_engine(url))
        try:
            if upgrade:
                store.ensure_current()
            else:
                with store.read() as conn:
                    conn.exec_driver_sql("SELECT 1")
        except BaseException:
            store.close()
            raise
        return store

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    @property
    def url(self) -> str:
        """The database URL, without a password, for messages."""
        return describe_url(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- transactions ----

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A write transaction: committed when the block ends, rolled back on an exception.

        On SQLite it holds the database's single write lock from the start, so keep it short.
        """
        with self._translate_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only transaction: a consistent snapshot that never waits for writers."""
        with self._translate_errors(), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.execution_options(**{_SQLITE_BEGIN: "DEFERRED"})
            else:
                # PostgreSQL's default, READ COMMITTED, takes a new snapshot for each
                # statement: two reads of one transaction could see a writer's commit
                # between them (a sender's last outcomes in one and its ended lease in the
                # other read as rows in flight with nobody holding them).  REPEATABLE READ
                # keeps the first statement's snapshot to the end, and a read-only
                # transaction there never fails to serialize (PostgreSQL documentation,
                # "Transaction Isolation", 13.2.2).
                conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for a sequence of write transactions (`with conn.begin():`), e.g.
        one per batch, that share session state such as temporary tables."""
        with self._translate_errors(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        # Operational errors are the environment's (locked, unreachable, disk full, no such
        # file): the user's to fix, so one line.  Anything else is a bug and keeps its traceback.
        try:
            yield
        except sa.exc.OperationalError as err:
            reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            if "unable to open database file" in reason:
                reason += " (does its directory exist and is it writable?)"
            raise StoreError(f"{self.url}: {reason}") from err

    # ---- migrations ----

    def current_revision(self) -> str | None:
        with self.read() as conn:
            return self._current_revision(conn)

    @staticmethod
    def _current_revision(conn: sa.Connection) -> str | None:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        if len(versions) > 1:
            raise StoreError(f"database has several migration heads ({', '.join(versions)}); it needs repair")
        return versions[0] if versions else None

    def ensure_current(self) -> None:
        """Migrate to the head revision unless the database is already there."""
        current = self.current_revision()
        if current == head_revision():
            return
        self._check_known(current)
        self.upgrade()

    def _check_known(self, revision: str | None) -> None:
        if revision is not None and revision not in known_revisions():
            raise StoreError(
                f"{self.url}: database is at revision {revision}, which this version of newsletter "
                f"does not know (its newest is {head_revision()}); upgrade newsletter"
            )

    def upgrade(self, target: str = "head") -> tuple[str | None, str]:
        """Apply every pending migration (up to `target`, a revision id; tests build old
        databases with it) in one transaction; returns (before, after) revisions."""
        from alembic import command

        def run(conn: sa.Connection, before: str | None) -> None:
            if before != head_revision():
                command.upgrade(alembic_config(conn), target)

        return self._migrate(run)

    def downgrade(self, target: str) -> tuple[str | None, str]:
        """Undo migrations down to revision `target`, in one transaction (what each
        revision's `downgrade` keeps is in its docstring); returns (before, after)."""
        from alembic import command

        return self._migrate(lambda conn, before: command.downgrade(alembic_config(conn), target))

    def _migrate(self, run) -> tuple[str | None, str]:
        with self.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None  # an open connection has its driver's
            if self.dialect == "sqlite":
                # Rebuilding a table in batch mode drops the old one; with foreign keys on,
                # that would cascade-delete every row pointing at it.  The pragma is a no-op
                # inside a transaction, so it is set before BEGIN on the raw connection.
                raw.execute("PRAGMA foreign_keys = OFF")
            try:
                with conn.begin():
                    if self.dialect == "postgresql":
                        # Two processes opening a fresh database at once must not both create
                        # the tables; the second waits here, then finds nothing to do.
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                    # On SQLite, BEGIN IMMEDIATE has already serialised concurrent upgrades.
                    before = self._current_revision(conn)
                    self._check_known(before)
                    run(conn, before)
                    if self.dialect == "sqlite":
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise StoreError(f"{self.url}: migration would break foreign keys: {broken[:5]}")
                    after = self._current_revision(conn)
            finally:
                if self.dialect == "sqlite":
                    raw.execute("PRAGMA foreign_keys = ON")
        return before, after or ""
