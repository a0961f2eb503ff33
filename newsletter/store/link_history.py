"""Which links earlier issues of a list already carried: digests repeat stories by accident."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import sqlalchemy as sa

from newsletter.store.schema import issues, links, lists


def earlier_links(
    conn: sa.Connection, list_slug: str, urls: Iterable[str], *, slug: str, issue_date: date
) -> dict[str, tuple[str, date]]:
    """URL -> (slug, date) of the first issue sent to `list_slug` that carried it, among the
    issues other than `slug` whose send has begun and that are dated no later than `issue_date`."""
    wanted = sorted(set(urls))
    if not wanted:
        return {}
    query = (
        sa.select(links.c.url, issues.c.slug, issues.c.issue_date)
        .join(issues, issues.c.id == links.c.issue_id)
        .join(lists, lists.c.id == issues.c.list_id)
        .where(
            lists.c.slug == list_slug,
            issues.c.slug != slug,
            issues.c.snapshot_at.is_not(None),
            issues.c.issue_date <= issue_date,
            links.c.url.in_(wanted),
        )
        .order_by(issues.c.issue_date, issues.c.id)
    )
    found: dict[str, tuple[str, date]] = {}
    for url, earlier_slug, earlier_date in conn.execute(query):
        found.setdefault(url, (earlier_slug, earlier_date))
    return found
