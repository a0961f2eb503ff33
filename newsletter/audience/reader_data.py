"""A reader's copy of everything stored about them (GDPR art. 15 and 20: access, and in a
machine-readable form), as the "download my data" button of the preference page gives it.

One JSON document: the address, name, attributes, where they came from, the standing on
each list with its times and source, every issue sent to them, their opens and clicks (with
the link and the browser that asked, and whether it looked like a machine), and the other
events recorded for them (unsubscribes, confirmations, bounces, complaints).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from newsletter.store import Store
from newsletter.store.memberships import memberships_of
from newsletter.store.reader_data import READING, activity_of, issues_sent_to, subscriber_row
from newsletter.store.schema import CLICK, OPEN


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def reader_data(store: Store, subscriber_id: int, *, newsletter: str) -> dict[str, Any] | None:
    """The document for one subscriber, None if there is nobody (erased)."""
    with store.read() as conn:
        row = subscriber_row(conn, subscriber_id)
        if row is None:
            return None
        lists = memberships_of(conn, subscriber_id)
        sent = issues_sent_to(conn, subscriber_id)
        activity = list(activity_of(conn, subscriber_id))
    reading = [item for item in activity if item.kind in READING]
    return {
        "newsletter": newsletter,
        "email": row["email"],
        "name": row["name"],
        "attributes": row["attributes"] or {},
        "address_status": row["status"],
        "source": row["source"],
        "created_at": _time(row["created_at"]),
        "confirmed_at": _time(row["confirmed_at"]),
        "suppressed_at": _time(row["suppressed_at"]),
        "memberships": [
            {
                "list": membership.slug,
                "name": membership.name,
                "status": membership.status,
                "joined_at": _time(membership.joined_at),
                "changed_at": _time(membership.changed_at),
                "changed_by": membership.change_source,
            }
            for membership in lists
        ],
        "issues_sent": [
            {"issue": item.slug, "subject": item.subject, "status": item.status, "sent_at": _time(item.sent_at)}
            for item in sent
        ],
        "opens": [
            {"issue": item.issue, "at": _time(item.occurred_at), "user_agent": item.user_agent, "machine": item.machine}
            for item in reading
            if item.kind == OPEN
        ],
        "clicks": [
            {
                "issue": item.issue,
                "url": item.url,
                "at": _time(item.occurred_at),
                "user_agent": item.user_agent,
                "machine": item.machine,
            }
            for item in reading
            if item.kind == CLICK
        ],
        "other_events": [
            {"kind": item.kind, "issue": item.issue, "at": _time(item.occurred_at), "detail": item.detail}
            for item in activity
            if item.kind not in READING
        ],
    }
