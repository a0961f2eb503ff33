"""Lists as the editor sees them: each list with its name and its subscribers by status."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from newsletter.store import Store
from newsletter.store.lists import check_list_slug
from newsletter.store.schema import (
    STATUSES,
    lists,
    memberships,
    subscribers,
)

__all__ = ["ListSummary", "check_list_slug", "list_summaries"]


@dataclass(frozen=True)
class ListSummary:
    slug: str
    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def list_summaries(store: Store) -> list[ListSummary]:
    """Every list with how many of its members are in each status."""
    query = (
        sa.select(lists.c.slug, lists.c.name, subscribers.c.status, sa.func.count(subscribers.c.id))
        .select_from(
            lists.outerjoin(memberships, memberships.c.list_id == lists.c.id).outerjoin(
                subscribers, subscribers.c.id == memberships.c.subscriber_id
            )
        )
        .group_by(lists.c.id, lists.c.slug, lists.c.name, subscribers.c.status)
        .order_by(lists.c.slug)
    )
    summaries: dict[str, ListSummary] = {}
    with store.read() as conn:
        for slug, name, status, count in conn.execute(query):
            summary = summaries.setdefault(slug, ListSummary(slug, name, {s: 0 for s in STATUSES}))
            if status is not None:
                summary.counts[status] = count
    return list(summaries.values())
