"""A reader's standing as the tests read and write it: one word per (subscriber, list).

Since migration 0004 a subscriber's status is about the address (active, bounced,
complained) and their standing on each list (active, pending, unsubscribed) is on the
membership.  Tests that set up people say one word, as before: `split` puts it where it
belongs; `standing` reads it back the same way, the address's suppression first (a
bounced address receives no list, whatever its memberships say).
"""

from __future__ import annotations

import sqlalchemy as sa

from newsletter.store.schema import ACTIVE, PENDING, SUPPRESSIONS, lists, memberships, subscribers

# Words of the single status before 0004, onto the two of now.
_OLD_WORDS = {"unconfirmed": PENDING}


def split(status: str) -> tuple[str, str]:
    """(address status, list standing) for one word: `unsubscribed` -> (active, unsubscribed),
    `bounced` -> (bounced, active), `unconfirmed` or `pending` -> (active, pending)."""
    status = _OLD_WORDS.get(status, status)
    if status in SUPPRESSIONS:
        return status, ACTIVE
    return ACTIVE, status


def standing(conn: sa.Connection, subscriber_id: int, list_slug: str = "default") -> str | None:
    """The address's suppression if it has one, else the standing on `list_slug` (None when
    not on it)."""
    address = conn.execute(sa.select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).scalar_one()
    if address != ACTIVE:
        return address
    return conn.execute(
        sa.select(memberships.c.status)
        .join(lists, lists.c.id == memberships.c.list_id)
        .where(memberships.c.subscriber_id == subscriber_id, lists.c.slug == list_slug)
    ).scalar_one_or_none()
