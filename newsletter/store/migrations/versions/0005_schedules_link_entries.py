"""Scheduled sends, and each tracked link tied to its entry (for stats by story).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from newsletter.store.schema import SCHEDULE_STATES, UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links") as batch:
        batch.add_column(sa.Column("text", sa.Text))
        batch.add_column(sa.Column("entry_idx", sa.Integer))
        batch.add_column(sa.Column("entry", sa.Text))
        batch.add_column(sa.Column("category", sa.Text))
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("send_at", UtcDateTime, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("force", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("list_slug", sa.String(100), nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("email_html", sa.Text, nullable=False),
        sa.Column("email_text", sa.Text, nullable=False),
        sa.Column("web_html", sa.Text, nullable=False),
        sa.Column("links", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("next_try_at", UtcDateTime),
        sa.Column("started_at", UtcDateTime),
        sa.Column("finished_at", UtcDateTime),
        sa.Column("claimed_by", sa.String(255)),
        sa.Column("claimed_at", UtcDateTime),
        sa.Column("note", sa.Text),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("issue_id", name=op.f("uq_schedules_issue_id")),
        sa.CheckConstraint(sa.column("state").in_(SCHEDULE_STATES), name=op.f("ck_schedules_state")),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name=op.f("fk_schedules_issue_id_issues"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_schedules_state_send_at"), "schedules", ["state", "send_at"])


def downgrade() -> None:
    op.drop_table("schedules")
    with op.batch_alter_table("links") as batch:
        batch.drop_column("category")
        batch.drop_column("entry")
        batch.drop_column("entry_idx")
        batch.drop_column("text")
