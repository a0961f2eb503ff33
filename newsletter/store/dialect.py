"""What differs between SQLite and PostgreSQL when writing: INSERT ... ON CONFLICT DO NOTHING,
values in the driver's own form, and the fastest bulk insert each has (executemany / COPY).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY


def insert_ignoring_conflicts(conn: sa.Connection, table: sa.Table):
    """An INSERT for this connection's dialect, which offers `.on_conflict_do_nothing()`."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def keys_condition(column: sa.Column, dialect: str, parameter: str = "keys") -> sa.ColumnElement:
    """`column` is one of the values in the single parameter `parameter`: a JSON array on
    SQLite, an array on PostgreSQL (see `audience/csv_import.py`).  Unlike an expanding IN,
    the statement compiles once however many values a batch has."""
    if dialect == "sqlite":
        members: sa.Select[Any] = sa.select(sa.literal_column("value")).select_from(
            sa.func.json_each(sa.bindparam(parameter))
        )
        return column.in_(members)
    return column == sa.any_(sa.bindparam(parameter, type_=ARRAY(column.type)))


def driver_form(column: sa.Column, dialect: sa.Dialect) -> Callable:
    """The function turning a Python value of `column` into what the driver is given."""
    processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    return processor or (lambda value: value)


class DriverInsert:
    """SQLite: an INSERT compiled once and run through sqlite3's executemany, bypassing
    SQLAlchemy's per-row parameter processing; rows are tuples in `columns` order with
    values already in driver form."""

    def __init__(self, conn: sa.Connection, statement: sa.Insert, columns: tuple[str, ...]) -> None:
        compiled = statement.compile(dialect=conn.dialect, column_keys=list(columns))
        if not compiled.positional:  # pragma: no cover - sqlite3 uses "?" placeholders
            raise AssertionError(f"expected a positional paramstyle, got {conn.dialect.paramstyle}")
        self.sql = compiled.string
        # The statement lists the table's columns in table order, which may differ from ours.
        order = tuple(columns.index(name) for name in compiled.positiontup or ())
        self.reorder = itemgetter(*order) if order != tuple(range(len(columns))) else None

    def execute(self, conn: sa.Connection, rows: list[tuple]) -> None:
        if not rows:
            return  # an empty parameter list would run the statement once, unbound
        if self.reorder is not None:
            rows = [self.reorder(row) for row in rows]
        conn.exec_driver_sql(self.sql, rows)


class CopyInsert:
    """PostgreSQL: a batch COPYed into a temporary staging table, then moved with one
    `INSERT ... SELECT ... ON CONFLICT`.  executemany sends one INSERT per row, and the
    server's per-statement work made that the slowest part of a PostgreSQL import; arrays
    through unnest() were little better, because psycopg quotes array elements in Python,
    while COPY rows are formatted in its C extension.  Rows are tuples in `columns` order
    with values in driver form."""

    def __init__(
        self, conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], conflict: tuple[str, ...] | None
    ):
        stage = f"newsletter_stage_{table.name}"
        names = ", ".join(columns)
        on_conflict = (
            ""
            if conflict is None
            else f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
            if conflict
            else " ON CONFLICT DO NOTHING"
        )
        self.copy_sql = f"COPY {stage} ({names}) FROM STDIN"
        self.move_sql = f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {stage}{on_conflict}"
        self.drop_sql = f"DROP TABLE IF EXISTS {stage}"
        with conn.begin():
            # Columns and types of the real table, no constraints; emptied at every commit.
            conn.exec_driver_sql(self.drop_sql)
            conn.exec_driver_sql(
                f"CREATE TEMPORARY TABLE {stage} ON COMMIT DELETE ROWS AS SELECT {names} FROM {table.name} WITH NO DATA"
            )

    def execute(self, conn: sa.Connection, rows: list[tuple]) -> None:
        if not rows:
            return
        driver = conn.connection.driver_connection
        assert driver is not None  # an open connection has its driver's
        with driver.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        conn.exec_driver_sql(self.move_sql)

    def close(self, conn: sa.Connection) -> None:
        with conn.begin():
            conn.exec_driver_sql(self.drop_sql)


def bulk_insert(
    conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], *, conflict: tuple[str, ...] | None = ()
) -> DriverInsert | CopyInsert:
    """The fastest way this dialect has to insert a batch of tuples.  `conflict`: the
    columns whose duplicates are silently skipped (() for any conflict, None for none)."""
    if conn.dialect.name == "postgresql":
        return CopyInsert(conn, table, columns, conflict)
    statement = table.insert()
    if conflict is not None:
        statement = insert_ignoring_conflicts(conn, table)
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict) or None)
    return DriverInsert(conn, statement, columns)
