"""Events (opens, clicks, unsubscribes, SES notifications) and the confirmation throttle.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from newsletter.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("issue_id", sa.Integer),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("delivery_id", sa.Integer),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("link_idx", sa.Integer),
        sa.Column("user_agent", sa.Text),
        sa.Column("machine", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("detail", sa.JSON().with_variant(JSONB(), "postgresql")),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
        sa.Column("dedupe_key", sa.String(64)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_events_dedupe_key")),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name=op.f("fk_events_issue_id_issues"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name=op.f("fk_events_subscriber_id_subscribers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_events_delivery_id_deliveries"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_events_issue_id_kind_occurred_at"), "events", ["issue_id", "kind", "occurred_at"])
    op.create_index(
        op.f("ix_events_subscriber_id_kind_occurred_at"), "events", ["subscriber_id", "kind", "occurred_at"]
    )
    op.create_index(op.f("ix_events_delivery_id"), "events", ["delivery_id"])
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("confirmation_sent_at", UtcDateTime))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("confirmation_sent_at")
    op.drop_table("events")
