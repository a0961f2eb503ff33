"""Migration 0004: one status per subscriber becomes a standing per (subscriber, list).

A database is built at revision 0003 (the schema before per-list standings) with rows
written as that schema had them, on SQLite and PostgreSQL; it is upgraded to the head and
every person's standing on every list is read back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletter.audience.subscribers import iter_subscribers
from newsletter.store import Store
from newsletter.store.schema import lists, memberships, subscribers

BEFORE = "0003"
JOINED = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
LEFT = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
BOUNCED_AT = datetime(2026, 7, 2, 9, 15, tzinfo=UTC)

# email: (status before 0004, unsubscribed_at before 0004, lists)
PEOPLE = {
    "stays@example.com": ("active", None, ("daily", "weekly")),
    "left@example.com": ("unsubscribed", LEFT, ("daily", "weekly")),
    "left.long.ago@example.com": ("unsubscribed", None, ("weekly",)),
    "bounced@example.com": ("bounced", BOUNCED_AT, ("daily", "weekly")),
    "complained@example.com": ("complained", BOUNCED_AT, ("daily",)),
    "waiting@example.com": ("unconfirmed", None, ("daily",)),
    "nowhere@example.com": ("unsubscribed", LEFT, ()),
}


def _as_stored(store: Store, moment: datetime | None):
    # Revision 0003's columns are UtcDateTime: naive UTC text on SQLite, timestamptz on PostgreSQL.
    if moment is None:
        return None
    return moment.replace(tzinfo=None) if store.dialect == "sqlite" else moment


@pytest.fixture
def old_database(database_url):
    """A database at revision 0003 holding PEOPLE, written with that revision's SQL."""
    with Store.open(database_url, upgrade=False) as store:
        assert store.upgrade(BEFORE) == (None, BEFORE)
        with store.begin() as conn:
            for list_id, slug in enumerate(("daily", "weekly"), 1):
                conn.execute(
                    sa.text("INSERT INTO lists (id, slug, name, created_at) VALUES (:id, :slug, :name, :at)"),
                    {"id": list_id, "slug": slug, "name": slug, "at": _as_stored(store, JOINED)},
                )
            for subscriber_id, (email, (status, unsubscribed_at, slugs)) in enumerate(PEOPLE.items(), 1):
                conn.execute(
                    sa.text(
                        "INSERT INTO subscribers (id, email, email_key, name, status, attributes, source, "
                        "created_at, updated_at, unsubscribed_at) VALUES "
                        "(:id, :email, :email, 'N', :status, '{}', 'import:old.csv', :joined, :updated, :left)"
                    ),
                    {
                        "id": subscriber_id,
                        "email": email,
                        "status": status,
                        "joined": _as_stored(store, JOINED),
                        "updated": _as_stored(store, JOINED + timedelta(days=1)),
                        "left": _as_stored(store, unsubscribed_at),
                    },
                )
                for slug in slugs:
                    conn.execute(
                        sa.text(
                            "INSERT INTO memberships (list_id, subscriber_id, created_at) "
                            "VALUES ((SELECT id FROM lists WHERE slug = :slug), :id, :at)"
                        ),
                        {"slug": slug, "id": subscriber_id, "at": _as_stored(store, JOINED)},
                    )
        yield store


def standings(store: Store) -> dict[str, dict]:
    with store.read() as conn:
        people = {
            row.email: {"status": row.status, "suppressed_at": row.suppressed_at, "on": {}}
            for row in conn.execute(sa.select(subscribers))
        }
        query = (
            sa.select(
                subscribers.c.email,
                lists.c.slug,
                memberships.c.status,
                memberships.c.changed_at,
                memberships.c.change_source,
                memberships.c.created_at,
            )
            .join(subscribers, subscribers.c.id == memberships.c.subscriber_id)
            .join(lists, lists.c.id == memberships.c.list_id)
        )
        for email, slug, status, changed_at, source, joined in conn.execute(query):
            people[email]["on"][slug] = (status, changed_at, source, joined)
    return people


def test_upgrade_moves_each_status_onto_every_list_the_person_was_on(old_database):
    store = old_database
    before, after = store.upgrade()
    assert before == BEFORE and after == store.current_revision()
    people = standings(store)

    # Active stays active everywhere; the time of the standing is when they joined.
    assert people["stays@example.com"]["status"] == "active"
    assert people["stays@example.com"]["on"] == {
        "daily": ("active", JOINED, "migration", JOINED),
        "weekly": ("active", JOINED, "migration", JOINED),
    }
    # Unsubscribed becomes unsubscribed on every list they were on, since when they left;
    # the address itself is fine.
    assert people["left@example.com"]["status"] == "active"
    assert people["left@example.com"]["on"] == {
        "daily": ("unsubscribed", LEFT, "migration", JOINED),
        "weekly": ("unsubscribed", LEFT, "migration", JOINED),
    }
    # Without a recorded time, the subscriber's last change stands in for it.
    assert people["left.long.ago@example.com"]["on"]["weekly"][:2] == ("unsubscribed", JOINED + timedelta(days=1))
    # Bounced and complained stay on the address, with their time; the lists keep what the
    # person chose, and the address receives none of them.
    assert people["bounced@example.com"]["status"] == "bounced"
    assert people["bounced@example.com"]["suppressed_at"] == BOUNCED_AT
    assert {slug: on[0] for slug, on in people["bounced@example.com"]["on"].items()} == {
        "daily": "active",
        "weekly": "active",
    }
    assert people["complained@example.com"]["status"] == "complained"
    assert people["complained@example.com"]["on"]["daily"][0] == "active"
    # Unconfirmed becomes pending on their lists.
    assert people["waiting@example.com"]["status"] == "active"
    assert people["waiting@example.com"]["on"]["daily"][0] == "pending"
    # On no list (lists deleted by hand): unsubscribed on every list, so no import can put
    # them on one without --resubscribe.
    assert people["nowhere@example.com"]["status"] == "active"
    assert {slug: on[:3] for slug, on in people["nowhere@example.com"]["on"].items()} == {
        "daily": ("unsubscribed", LEFT, "migration"),
        "weekly": ("unsubscribed", LEFT, "migration"),
    }
    # Only a bounce or complaint keeps a suppression time on the address.
    assert people["stays@example.com"]["suppressed_at"] is None
    assert people["left@example.com"]["suppressed_at"] is None


def test_after_the_upgrade_a_send_to_daily_reaches_only_who_chose_it_and_can_receive_it(old_database):
    from newsletter.store.ledger import count_audience

    store = old_database
    store.upgrade()
    with store.read() as conn:
        daily = conn.execute(sa.select(lists.c.id).where(lists.c.slug == "daily")).scalar_one()
        weekly = conn.execute(sa.select(lists.c.id).where(lists.c.slug == "weekly")).scalar_one()
        assert count_audience(conn, daily) == 1
        assert count_audience(conn, weekly) == 1
    receivers = [s.email for s in iter_subscribers(store, list_slug="daily", status="active")]
    assert receivers == ["stays@example.com"]


def test_downgrade_gives_back_one_status_per_subscriber(old_database):
    store = old_database
    store.upgrade()
    assert store.downgrade(BEFORE)[1] == BEFORE
    with store.read() as conn:
        back = dict(conn.execute(sa.text("SELECT email, status FROM subscribers")).all())
    assert back == {email: status for email, (status, _, _) in PEOPLE.items()}
