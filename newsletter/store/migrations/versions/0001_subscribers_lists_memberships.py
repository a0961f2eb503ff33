"""Subscribers, lists and memberships.

Revision ID: 0001
Revises:
Create Date: 2026-01-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from newsletter.store.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Spelled out here rather than taken from schema.py, so that this revision keeps creating
# what it created when schema.py moves on.
STATUSES = ("active", "unconfirmed", "unsubscribed", "bounced", "complained")


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attributes", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("source", sa.String(255), nullable=False, server_default=""),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("confirmed_at", UtcDateTime),
        sa.Column("unsubscribed_at", UtcDateTime),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("email_key", name=op.f("uq_subscribers_email_key")),
        sa.CheckConstraint(sa.column("status").in_(STATUSES), name=op.f("ck_subscribers_status")),
    )
    op.create_table(
        "lists",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lists")),
        sa.UniqueConstraint("slug", name=op.f("uq_lists_slug")),
    )
    op.create_table(
        "memberships",
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("list_id", "subscriber_id", name=op.f("pk_memberships")),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_memberships_list_id_lists"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_memberships_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_memberships_subscriber_id"), "memberships", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_memberships_subscriber_id"), table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("lists")
    op.drop_table("subscribers")
