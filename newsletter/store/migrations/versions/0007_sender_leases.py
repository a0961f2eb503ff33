"""Sender leases: one row per `newsletter send` process of an issue, and the sender of each
claimed ledger row, so several senders can share an issue on PostgreSQL and a dead one's
rows are told apart from a live one's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.schema import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "senders",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("heartbeat_at", UtcDateTime, nullable=False),
        sa.Column("ended_at", UtcDateTime),
        sa.Column("lost", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("sent", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_senders")),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name=op.f("fk_senders_issue_id_issues"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_senders_issue_id_ended_at"), "senders", ["issue_id", "ended_at"])
    # A plain ADD COLUMN (nullable, no default): no table rebuild, even for a big ledger.
    op.add_column("deliveries", sa.Column("sender_id", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sender_id")
    op.drop_table("senders")
