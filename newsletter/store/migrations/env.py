"""Alembic environment: runs the migrations on the connection the store hands over.

Never run on its own: `newsletter.store.database.upgrade` opens the transaction, takes the
locks and passes the connection in `config.attributes["connection"]`.
"""

from alembic import context

from newsletter.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `newsletter db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead, so later
    # migrations written with `op.batch_alter_table` run on both databases.
    render_as_batch=True,
    # The caller wraps all pending migrations in one transaction (SQLite and PostgreSQL
    # both roll back DDL), so a failed upgrade leaves the previous revision intact.
    transactional_ddl=True,
)

with context.begin_transaction():
    context.run_migrations()
