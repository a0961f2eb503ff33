"""The rate and daily quota every sender of an account shares on PostgreSQL: one row per
account holding the next free send slot (newsletter/sending/shared_rate.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.schema import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_rates",
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("ceiling", sa.Float, nullable=False),
        sa.Column("rate", sa.Float, nullable=False),
        sa.Column("next_free_at", UtcDateTime, nullable=False),
        sa.Column("changed_at", UtcDateTime, nullable=False),
        sa.Column("throttled_at", UtcDateTime),
        sa.Column("allowance", sa.BigInteger),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_send_rates")),
    )


def downgrade() -> None:
    op.drop_table("send_rates")
