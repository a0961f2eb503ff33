"""Every table of the store, defined once.

Migrations in `migrations/versions/` create these tables step by step; a test compares the
migrated database with this metadata, so a table added here needs its migration too (and a
migration needs its table here).  Later issues add their tables (issues, the delivery
ledger, links, events) to this file.
"""

from __future__ import annotations

from datetime import UTC, datetime

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

# What is about the address, on the subscriber (DESIGN.md "Rules of outcome"): `active`
# means nothing stops mail to it; `bounced` and `complained` stop every list, and import
# never lifts them by itself.  (Erased people have no row at all: only a keyed hash in
# `erasures` is left of them.)
ACTIVE = "active"
BOUNCED = "bounced"
COMPLAINED = "complained"
ADDRESS_STATUSES = (ACTIVE, BOUNCED, COMPLAINED)
SUPPRESSIONS = frozenset({BOUNCED, COMPLAINED})

# A reader's standing on one list, on the membership: only `active` members (whose address
# is `active`) receive that list; `pending` waits for the double opt-in; `unsubscribed`
# left that list and only that list.
PENDING = "pending"
UNSUBSCRIBED = "unsubscribed"
MEMBERSHIP_STATUSES = (ACTIVE, PENDING, UNSUBSCRIBED)

# Where the last change of a membership's status came from (memberships.change_source).
BY_IMPORT = "import"
BY_CLI = "cli"
BY_ONE_CLICK = "one-click"  # RFC 8058 POST from the reader's mail client
BY_PAGE = "page"  # the unsubscribe page's buttons
BY_PREFERENCES = "preferences"  # the preference page's check boxes
BY_MAILTO = "mailto"  # a mail to [newsletter] unsubscribe_mailto
BY_FORM = "form"  # the public subscribe form (pending until confirmed)
BY_CONFIRM = "confirm"  # the double opt-in link
BY_SES = "ses"  # SES's own list management (a Subscription event)
BY_MIGRATION = "migration"  # carried over from the single status of revisions before 0004


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


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
    # ADDRESS_STATUSES; the standing on each list is on the membership.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attributes", JsonDocument, nullable=False),
    # Where the subscriber came from: "import:FILE", "cli", "web", ...
    sa.Column("source", sa.String(255), nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # When the address was last vouched for: a confirmed double opt-in, or an editor's import.
    sa.Column("confirmed_at", UtcDateTime),
    # When the address became bounced or complained (NULL while active).
    sa.Column("suppressed_at", UtcDateTime),
    # When the last double opt-in email went out: at most one an hour per address.
    sa.Column("confirmation_sent_at", UtcDateTime),
    sa.UniqueConstraint("email_key"),
    sa.CheckConstraint(sa.column("status").in_(ADDRESS_STATUSES), name="status"),
)

lists = sa.Table(
    "lists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(100), nullable=False),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # What the preference page says about the list ("every weekday morning, five stories").
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    # Whether /subscribe may join it and the preference page shows it to everyone.  NULL:
    # never set, so the rule applies (newsletter.audience.lists: only the configured default
    # list is public).  `[lists.SLUG] public` in the configuration overrides either.
    sa.Column("public", sa.Boolean),
    sa.UniqueConstraint("slug"),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    # Erasing a subscriber erases their memberships with them.
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    # When they joined the list.
    sa.Column("created_at", UtcDateTime, nullable=False),
    # MEMBERSHIP_STATUSES.  The server defaults exist so that the rows of revisions before
    # 0004 could be carried over; our own inserts always say all three.
    sa.Column("status", sa.String(16), nullable=False, server_default=ACTIVE),
    # When `status` last changed (or was first set), and through what (BY_*).
    sa.Column("changed_at", UtcDateTime, nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("change_source", sa.String(32), nullable=False, server_default=""),
    # The primary key serves "members of a list"; this serves "lists of a subscriber"
    # and the cascade on delete.
    sa.Index(None, "subscriber_id"),
    sa.CheckConstraint(sa.column("status").in_(MEMBERSHIP_STATUSES), name="status"),
)


# ---- sending (migration 0002) ----

# A ledger row's life: queued -> sending -> sent | failed | skipped.  `sending` is written
# (and committed) before the message leaves, so after a crash a row still in `sending` is
# exactly one whose fate is unknown: it may or may not have gone out.
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SKIPPED = "skipped"
DELIVERY_STATUSES = (QUEUED, SENDING, SENT, FAILED, SKIPPED)
TEMPORARY = "temporary"
PERMANENT = "permanent"

issues = sa.Table(
    "issues",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(200), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("issue_date", sa.Date, nullable=False),
    sa.Column("language", sa.String(35), nullable=False),
    sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="RESTRICT")),
    # Random, made once: the Message-IDs of this issue's mail are built from it, so they
    # are unique across databases and the same on every resume.
    sa.Column("uid", sa.String(32), nullable=False),
    # The rendered issue as it was when its send began; a resumed send uses this, not the
    # file, so every subscriber gets the same content and old tracking links stay right.
    sa.Column("source_sha256", sa.String(64), nullable=False),
    sa.Column("email_html", sa.Text, nullable=False),
    sa.Column("email_text", sa.Text, nullable=False),
    sa.Column("web_html", sa.Text, nullable=False),
    sa.Column("preheader", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # When the audience was written into the ledger; NULL until the first real send.
    sa.Column("snapshot_at", UtcDateTime),
    sa.Column("completed_at", UtcDateTime),
    # The `newsletter send` process working on this issue ("host:pid") and when it last
    # said so: a second send of the same issue refuses to start while the first is alive.
    sa.Column("sender", sa.String(255)),
    sa.Column("sender_seen_at", UtcDateTime),
    sa.UniqueConstraint("slug"),
)

# Every distinct link of an issue's email, by the index its click tokens carry.
links = sa.Table(
    "links",
    metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("url", sa.Text, nullable=False),
    # Where the link sits in the issue (migration 0005), so stats can say which story was
    # clicked: its words, and the entry (position, title, category) it belongs to.  The
    # related-news links have the section's title and no position; a template's none.
    sa.Column("text", sa.Text),
    sa.Column("entry_idx", sa.Integer),
    sa.Column("entry", sa.Text),
    sa.Column("category", sa.Text),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    # Erasing a subscriber erases what was sent to them.
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # For `failed`: temporary (retry may help) or permanent; for `skipped`: why.
    sa.Column("failure", sa.String(32)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("message_id", sa.String(255)),
    # The provider's id (SES MessageId); SES events find their row by it.
    sa.Column("provider_message_id", sa.String(255)),
    sa.Column("error", sa.Text),
    sa.Column("queued_at", UtcDateTime, nullable=False),
    sa.Column("claimed_at", UtcDateTime),
    sa.Column("sent_at", UtcDateTime),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # For `failed` temporarily (migration 0006): when the next run may try again
    # (newsletter/sending/retry.py); `attempts` counts the tries so far.
    sa.Column("next_attempt_at", UtcDateTime),
    # The sender (`senders.id`) that claimed the row (migration 0007): a row in `sending`
    # whose sender still runs is in flight; one whose sender ended or died is uncertain.
    sa.Column("sender_id", sa.Integer),
    sa.UniqueConstraint("issue_id", "subscriber_id"),
    sa.CheckConstraint(sa.column("status").in_(DELIVERY_STATUSES), name="status"),
    # Claiming takes the lowest queued ids of an issue.
    sa.Index(None, "issue_id", "status", "id"),
    sa.Index(None, "provider_message_id"),
    sa.Index(None, "subscriber_id"),
)


# One row per `newsletter send` process that worked on an issue (migration 0007): its lease.
# It says it is alive by moving `heartbeat_at`; on PostgreSQL several senders share an issue.
senders = sa.Table(
    "senders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    # "host:pid", as `ledger.this_sender()` names a process.
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("heartbeat_at", UtcDateTime, nullable=False),
    # Set when the sender stopped, or when another found it dead (`lost`).
    sa.Column("ended_at", UtcDateTime),
    sa.Column("lost", sa.Boolean, nullable=False, server_default=sa.false()),
    # Messages this sender recorded sent (updated with each heartbeat and at the end).
    sa.Column("sent", sa.Integer, nullable=False, server_default="0"),
    sa.Index(None, "issue_id", "ended_at"),
)


# One row per sending account (migration 0008): the rate and daily quota every sender of it
# shares on PostgreSQL, as a schedule of send slots (newsletter/sending/shared_rate.py).
send_rates = sa.Table(
    "send_rates",
    metadata,
    # What the provider counts one rate for ("ses:REGION:ENDPOINT", "smtp:HOST:PORT").
    sa.Column("key", sa.String(500), primary_key=True),
    # The configured rate (messages per second), and the rate now (lower after throttling).
    sa.Column("ceiling", sa.Float, nullable=False),
    sa.Column("rate", sa.Float, nullable=False),
    # When the next send slot is free; taking n slots moves it on by n intervals.
    sa.Column("next_free_at", UtcDateTime, nullable=False),
    sa.Column("changed_at", UtcDateTime, nullable=False),
    sa.Column("throttled_at", UtcDateTime),
    # What is left of the provider's daily quota; NULL when there is none to know.
    sa.Column("allowance", sa.BigInteger),
)


# ---- what happened after sending (migration 0003) ----

# Our own: from `newsletter serve`.
OPEN = "open"
CLICK = "click"
UNSUBSCRIBE = "unsubscribe"
RESUBSCRIBE = "resubscribe"
# Joining a list the reader was never on, from the preference page.
SUBSCRIBE = "subscribe"
CONFIRM = "confirm"
# From SES, through SNS or SQS (see newsletter.transports.ses.sns.EventKind), prefixed where the name
# would clash with our own.
SES_SEND = "ses_send"
DELIVERY = "delivery"
BOUNCE = "bounce"
COMPLAINT = "complaint"
REJECT = "reject"
DELIVERY_DELAY = "delivery_delay"
SES_OPEN = "ses_open"
SES_CLICK = "ses_click"
RENDERING_FAILURE = "rendering_failure"

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE")),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE")),
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id", ondelete="CASCADE")),
    sa.Column("kind", sa.String(32), nullable=False),
    # For clicks: the index of the link in the issue's `links`.
    sa.Column("link_idx", sa.Integer),
    sa.Column("user_agent", sa.Text),
    # Likely not a person: a link scanner, a mail privacy proxy, a click within seconds of
    # delivery.  Kept, not dropped, so stats can show both.
    sa.Column("machine", sa.Boolean, nullable=False, server_default=sa.false()),
    # Whatever else the source said (bounce type, diagnostic, complaint feedback type...).
    sa.Column("detail", JsonDocument),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    # The same notification delivered twice (SNS retries, SQS redelivery) is stored once, and
    # so is an open or click repeated within the replay window, whichever web process
    # answered it (its replay key: newsletter.feedback.hits.replay_key).
    sa.Column("dedupe_key", sa.String(64)),
    sa.UniqueConstraint("dedupe_key"),
    sa.Index(None, "issue_id", "kind", "occurred_at"),
    sa.Index(None, "subscriber_id", "kind", "occurred_at"),
    sa.Index(None, "delivery_id"),
)


# ---- the reader's data rights (migration 0004) ----

# What is left of an erased person: a keyed hash of their normalised address (HMAC-SHA256
# under a key derived from the configured secret, newsletter.tokens.AddressDigests), so
# that import, the form and `subscribers add` can recognise the address and refuse it
# without anything here telling who it was.
erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    # Which key made `digest` (AddressDigests.key_id): digests made under another secret
    # no longer match, and this is how that can be told.
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("erased_at", UtcDateTime, nullable=False),
    # BY_CLI or BY_PREFERENCES: who asked.
    sa.Column("source", sa.String(32), nullable=False),
)

# One row per double opt-in email: its link's token is random and only its SHA-256 is
# kept, so each email has a link of its own that works once, until `expires_at`; asking
# again replaces the older rows of the same (subscriber, list).
confirmations = sa.Table(
    "confirmations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    # The name typed on the form: it reaches the subscriber only once the address is
    # confirmed (a stranger's words must not name someone else), and goes with this row.
    sa.Column("name", sa.Text),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime),
    sa.UniqueConstraint("digest"),
    sa.Index(None, "subscriber_id", "list_id"),
)


# ---- scheduled sends (migration 0005) ----

# A schedule's life: scheduled -> running -> done, or cancelled / refused (stale) on the way.
# `running` is held by one process (`claimed_by`, refreshed in `claimed_at`); a schedule left
# `running` by a process that died is taken over and the send resumes from the ledger.
SCHEDULED = "scheduled"
RUNNING = "running"
DONE = "done"
CANCELLED = "cancelled"
REFUSED = "refused"
SCHEDULE_STATES = (SCHEDULED, RUNNING, DONE, CANCELLED, REFUSED)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    sa.Column("send_at", UtcDateTime, nullable=False),
    # The zone the editor gave the time in, to show it back the same way.
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    # --force: send even if late or stale.
    sa.Column("force", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("list_slug", sa.String(100), nullable=False),
    # The issue as checked when it was scheduled: its Markdown (read again for the subject
    # and slug) and its render, sent as it is, whatever happens to the file meanwhile.
    sa.Column("source_path", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("email_html", sa.Text, nullable=False),
    sa.Column("email_text", sa.Text, nullable=False),
    sa.Column("web_html", sa.Text, nullable=False),
    # [{"url", "text", "entry_idx", "entry", "category"}] in link-index order.
    sa.Column("links", JsonDocument, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # After a failed attempt (a transport down), not before this.
    sa.Column("next_try_at", UtcDateTime),
    sa.Column("started_at", UtcDateTime),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("claimed_by", sa.String(255)),
    sa.Column("claimed_at", UtcDateTime),
    # Why it was refused, or what the last attempt said.
    sa.Column("note", sa.Text),
    sa.UniqueConstraint("issue_id"),
    sa.CheckConstraint(sa.column("state").in_(SCHEDULE_STATES), name="state"),
    sa.Index(None, "state", "send_at"),
)
