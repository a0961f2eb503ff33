"""Issues, their links, and the delivery ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from newsletter.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DELIVERY_STATUSES = ("queued", "sending", "sent", "failed", "skipped")


def upgrade() -> None:
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("slug", sa.String(200), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("language", sa.String(35), nullable=False),
        sa.Column("list_id", sa.Integer),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("email_html", sa.Text, nullable=False),
        sa.Column("email_text", sa.Text, nullable=False),
        sa.Column("web_html", sa.Text, nullable=False),
        sa.Column("preheader", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("snapshot_at", UtcDateTime),
        sa.Column("completed_at", UtcDateTime),
        sa.Column("sender", sa.String(255)),
        sa.Column("sender_seen_at", UtcDateTime),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issues")),
        sa.UniqueConstraint("slug", name=op.f("uq_issues_slug")),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], name=op.f("fk_issues_list_id_lists"), ondelete="RESTRICT"),
    )
    op.create_table(
        "links",
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("issue_id", "idx", name=op.f("pk_links")),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name=op.f("fk_links_issue_id_issues"), ondelete="CASCADE"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("message_id", sa.String(255)),
        sa.Column("provider_message_id", sa.String(255)),
        sa.Column("error", sa.Text),
        sa.Column("queued_at", UtcDateTime, nullable=False),
        sa.Column("claimed_at", UtcDateTime),
        sa.Column("sent_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("issue_id", "subscriber_id", name=op.f("uq_deliveries_issue_id_subscriber_id")),
        sa.CheckConstraint(sa.column("status").in_(DELIVERY_STATUSES), name=op.f("ck_deliveries_status")),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["issues.id"], name=op.f("fk_deliveries_issue_id_issues"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_deliveries_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_deliveries_issue_id_status_id"), "deliveries", ["issue_id", "status", "id"])
    op.create_index(op.f("ix_deliveries_provider_message_id"), "deliveries", ["provider_message_id"])
    op.create_index(op.f("ix_deliveries_subscriber_id"), "deliveries", ["subscriber_id"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("links")
    op.drop_table("issues")
