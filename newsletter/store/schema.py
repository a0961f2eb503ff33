"""Every table of the store, defined once.

Migrations in `migrations/versions/` create these tables step by step; a test compares the
migrated database with this metadata, so a table added here needs its migration too (and a
migration needs its table here).  Later issues add their tables (issues, the delivery
ledger, links, events) to this file.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

# Named constraints let Alembic's batch mode rebuild SQLite tables (SQLite has no
# ALTER CONSTRAINT) and let later migrations drop a constraint by a name they can know.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# A subscriber's standing.  Only `active` receives mail; `unconfirmed` waits for a
# double opt-in; the last three are suppressions that import never lifts by itself.
ACTIVE = "active"
UNCONFIRMED = "unconfirmed"
UNSUBSCRIBED = "unsubscribed"
BOUNCED = "bounced"
COMPLAINED = "complained"
STATUSES = (ACTIVE, UNCONFIRMED, UNSUBSCRIBED, BOUNCED, COMPLAINED)
SUPPRESSED = frozenset({UNSUBSCRIBED, BOUNCED, COMPLAINED})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(sa.TypeDecorator):
    """A point in time, always timezone-aware UTC in Python.

    PostgreSQL stores `timestamptz`; SQLite has no time type, so the UTC wall time is stored
    as text and UTC is attached again on the way out.  A naive datetime is refused, because
    whether it meant local time or UTC cannot be known afterwards.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# JSONB on PostgreSQL so later queries can index and filter on attributes.
JsonDocument = sa.JSON().with_variant(JSONB(), "postgresql")


subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # The address as it will be sent: trimmed, domain lowercased and IDNA-encoded.
    sa.Column("email", sa.String(320), nullable=False),
    # `email` lowercased: the case-insensitive identity of the subscriber.
    sa.Column("email_key", sa.String(320), nullable=False),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attributes", JsonDocument, nullable=False),
    # Where the subscriber came from: "import:FILE", "cli", "web", ...
    sa.Column("source", sa.String(255), nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("confirmed_at", UtcDateTime),
    sa.Column("unsubscribed_at", UtcDateTime),
    sa.UniqueConstraint("email_key"),
    sa.CheckConstraint(sa.column("status").in_(STATUSES), name="status"),
)

lists = sa.Table(
    "lists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(100), nullable=False),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("slug"),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    # Erasing a subscriber erases their memberships with them.
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The primary key serves "members of a list"; this serves "lists of a subscriber"
    # and the cascade on delete.
    sa.Index(None, "subscriber_id"),
)
