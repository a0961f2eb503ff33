"""Status per (subscriber, list) membership; lists' descriptions and visibility; erasures;
one confirmation row per double opt-in email.

Before this revision a subscriber had one status for every list (active, unconfirmed,
unsubscribed, bounced, complained).  Now what is about the address stays on the
subscriber (active, bounced, complained) and the rest moves onto each membership:

    subscriber was    each of their memberships becomes    the subscriber becomes
    active            active                               active
    unconfirmed       pending                              active
    unsubscribed      unsubscribed (since unsubscribed_at) active
    bounced           active                               bounced (suppressed_at kept)
    complained        active                               complained (suppressed_at kept)

A bounced or complained address receives no list however its memberships stand, so their
memberships keep saying what the person chose.  Someone unsubscribed who is on no list at
all (only possible where lists were deleted by hand) becomes unsubscribed on every list
there is, so that no later import can put them on one without --resubscribe.  `unsubscribed_at`, which held the time of
any of the three suppressions, is now `suppressed_at` and holds only bounces and
complaints; the time of an unsubscribe moves to its memberships.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from newsletter.store.schema import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Spelled out, not imported from schema.py, so this revision keeps doing what it did.
OLD_STATUSES = ("active", "unconfirmed", "unsubscribed", "bounced", "complained")
ADDRESS_STATUSES = ("active", "bounced", "complained")
MEMBERSHIP_STATUSES = ("active", "pending", "unsubscribed")


def _subscribers_before() -> sa.Table:
    """The subscribers table as revisions 0001 and 0003 left it, for SQLite's rebuild (so
    the rebuild does not depend on what reflection makes of the CHECK constraint)."""
    return sa.Table(
        "subscribers",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
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
        sa.Column("confirmation_sent_at", UtcDateTime),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
        sa.CheckConstraint(sa.column("status").in_(OLD_STATUSES), name="ck_subscribers_status"),
    )


def _memberships_before() -> sa.Table:
    return sa.Table(
        "memberships",
        sa.MetaData(),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Index("ix_memberships_subscriber_id", "subscriber_id"),
    )


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.add_column(sa.Column("description", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("public", sa.Boolean))

    with op.batch_alter_table("memberships", copy_from=_memberships_before()) as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="active"))
        batch.add_column(
            sa.Column("changed_at", UtcDateTime, nullable=False, server_default=sa.func.current_timestamp())
        )
        batch.add_column(sa.Column("change_source", sa.String(32), nullable=False, server_default=""))
        batch.create_check_constraint(op.f("ck_memberships_status"), sa.column("status").in_(MEMBERSHIP_STATUSES))

    # Each membership takes the standing its subscriber had on every list.
    op.execute(
        """
        UPDATE memberships SET
            status = CASE (SELECT s.status FROM subscribers s WHERE s.id = memberships.subscriber_id)
                WHEN 'unsubscribed' THEN 'unsubscribed'
                WHEN 'unconfirmed' THEN 'pending'
                ELSE 'active' END,
            changed_at = CASE (SELECT s.status FROM subscribers s WHERE s.id = memberships.subscriber_id)
                WHEN 'unsubscribed' THEN (
                    SELECT COALESCE(s.unsubscribed_at, s.updated_at) FROM subscribers s
                    WHERE s.id = memberships.subscriber_id)
                ELSE memberships.created_at END,
            change_source = 'migration'
        """
    )
    op.execute(
        """
        INSERT INTO memberships (list_id, subscriber_id, created_at, status, changed_at, change_source)
        SELECT l.id, s.id, COALESCE(s.unsubscribed_at, s.updated_at), 'unsubscribed',
               COALESCE(s.unsubscribed_at, s.updated_at), 'migration'
        FROM subscribers s CROSS JOIN lists l
        WHERE s.status = 'unsubscribed'
          AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.subscriber_id = s.id)
        """
    )
    op.execute(
        "UPDATE subscribers SET status = 'active', unsubscribed_at = NULL "
        "WHERE status IN ('unsubscribed', 'unconfirmed')"
    )
    op.execute("UPDATE subscribers SET unsubscribed_at = NULL WHERE status = 'active'")

    with op.batch_alter_table("subscribers", copy_from=_subscribers_before()) as batch:
        batch.drop_constraint(op.f("ck_subscribers_status"), type_="check")
        batch.alter_column("unsubscribed_at", new_column_name="suppressed_at", existing_type=UtcDateTime)
        batch.create_check_constraint(op.f("ck_subscribers_status"), sa.column("status").in_(ADDRESS_STATUSES))

    op.create_table(
        "erasures",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("erased_at", UtcDateTime, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_erasures")),
    )
    op.create_table(
        "confirmations",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("requested_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("used_at", UtcDateTime),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_confirmations")),
        sa.UniqueConstraint("digest", name=op.f("uq_confirmations_digest")),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_confirmations_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_confirmations_list_id_lists"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_confirmations_subscriber_id_list_id"), "confirmations", ["subscriber_id", "list_id"])


def downgrade() -> None:
    """Back to one status per subscriber: unsubscribed when every list they are on was
    left, unconfirmed when none is active and one is pending.  Per-list differences, list
    descriptions, visibility, erasures and pending confirmations are lost."""
    op.drop_index(op.f("ix_confirmations_subscriber_id_list_id"), table_name="confirmations")
    op.drop_table("confirmations")
    op.drop_table("erasures")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint(op.f("ck_subscribers_status"), type_="check")
        batch.alter_column("suppressed_at", new_column_name="unsubscribed_at", existing_type=UtcDateTime)
        batch.create_check_constraint(op.f("ck_subscribers_status"), sa.column("status").in_(OLD_STATUSES))
    op.execute(
        """
        UPDATE subscribers SET
            status = CASE
                WHEN NOT EXISTS (SELECT 1 FROM memberships m WHERE m.subscriber_id = subscribers.id
                                 AND m.status <> 'unsubscribed') THEN 'unsubscribed'
                WHEN NOT EXISTS (SELECT 1 FROM memberships m WHERE m.subscriber_id = subscribers.id
                                 AND m.status = 'active') THEN 'unconfirmed'
                ELSE 'active' END,
            unsubscribed_at = (SELECT MAX(m.changed_at) FROM memberships m
                               WHERE m.subscriber_id = subscribers.id AND m.status = 'unsubscribed')
        WHERE status = 'active' AND EXISTS (SELECT 1 FROM memberships m WHERE m.subscriber_id = subscribers.id)
        """
    )
    with op.batch_alter_table("memberships") as batch:
        batch.drop_constraint(op.f("ck_memberships_status"), type_="check")
        batch.drop_column("change_source")
        batch.drop_column("changed_at")
        batch.drop_column("status")
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("public")
        batch.drop_column("description")
