"""Lists as the editor sees them: each list with its name and its members by standing."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from newsletter.store import Store
from newsletter.store.lists import check_list_slug
from newsletter.store.schema import (
    ACTIVE,
    BOUNCED,
    COMPLAINED,
    PENDING,
    UNSUBSCRIBED,
    lists,
    memberships,
    subscribers,
)

__all__ = ["STANDINGS", "ListSummary", "check_list_slug", "list_summaries"]

# The columns of `newsletter lists`: each member is counted once, under the address's
# suppression if it has one (a bounced address gets no list, whatever it chose), else under
# their standing on the list.
STANDINGS = (ACTIVE, PENDING, UNSUBSCRIBED, BOUNCED, COMPLAINED)


@dataclass(frozen=True)
class ListSummary:
    slug: str
    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def list_summaries(store: Store) -> list[ListSummary]:
    """Every list with how many of its members are in each standing (STANDINGS)."""
    standing = sa.case((subscribers.c.status != ACTIVE, subscribers.c.status), else_=memberships.c.status).label(
        "standing"
    )
    query = (
        sa.select(lists.c.slug, lists.c.name, standing, sa.func.count(subscribers.c.id))
        .select_from(
            lists.outerjoin(memberships, memberships.c.list_id == lists.c.id).outerjoin(
                subscribers, subscribers.c.id == memberships.c.subscriber_id
            )
        )
        .group_by(lists.c.id, lists.c.slug, lists.c.name, standing)
        .order_by(lists.c.slug)
    )
    summaries: dict[str, ListSummary] = {}
    with store.read() as conn:
        for slug, name, state, count in conn.execute(query):
            summary = summaries.setdefault(slug, ListSummary(slug, name, {s: 0 for s in STANDINGS}))
            if state is not None and count:
                summary.counts[state] = count
    return list(summaries.values())
