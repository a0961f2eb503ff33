"""A ledger written row by row, for tests that need exact, known numbers (feedback, stats).

A real send (tests/send_world.py) is the way to get a realistic ledger; this is the way to
get a *chosen* one: a subscriber who failed permanently, a delivery sent at 08:00 sharp, a
click from a scanner at 09:30.  Rows go in through SQLAlchemy like the store writes them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from newsletter.store import Store
from newsletter.store.events import record_event
from newsletter.store.lists import get_or_create_list
from newsletter.store.schema import (
    ACTIVE,
    SENT,
    deliveries,
    events,
    issues,
    links,
    memberships,
    subscribers,
    utcnow,
)
from tests.standings import split, standing

SEND_START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class CraftedLedger:
    def __init__(self, store: Store) -> None:
        self.store = store

    def issue(
        self,
        slug: str = "2026-11-30",
        *,
        title: str = "AI行业速递 - 2026年11月30日",
        link_urls: Sequence[str] = (),
        snapshot_at: datetime | None = SEND_START,
        completed_at: datetime | None = None,
        language: str = "zh-CN",
    ) -> int:
        with self.store.begin() as conn:
            list_id = get_or_create_list(conn, "default")
            issue_id = conn.execute(
                issues.insert().values(
                    slug=slug,
                    title=title,
                    subject=title,
                    issue_date=date.fromisoformat(slug) if slug[:4].isdigit() else date(2026, 11, 30),
                    language=language,
                    list_id=list_id,
                    uid=secrets.token_hex(8),
                    source_sha256="0" * 64,
                    email_html="<html></html>",
                    email_text="",
                    web_html="<html></html>",
                    created_at=utcnow(),
                    snapshot_at=snapshot_at,
                    completed_at=completed_at,
                )
            ).inserted_primary_key[0]
            if link_urls:
                conn.execute(
                    links.insert(), [{"issue_id": issue_id, "idx": i, "url": url} for i, url in enumerate(link_urls)]
                )
        return issue_id

    def subscriber(self, email: str, *, status: str = ACTIVE) -> int:
        """A subscriber on the default list; `status` is one word (standings.split)."""
        address_status, list_status = split(status)
        now = utcnow()
        with self.store.begin() as conn:
            list_id = get_or_create_list(conn, "default")
            subscriber_id = conn.execute(
                subscribers.insert().values(
                    email=email,
                    email_key=email.lower(),
                    name="",
                    status=address_status,
                    attributes={},
                    source="test",
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            conn.execute(
                memberships.insert().values(
                    list_id=list_id,
                    subscriber_id=subscriber_id,
                    created_at=now,
                    status=list_status,
                    changed_at=now,
                    change_source="test",
                )
            )
        return subscriber_id

    def delivery(
        self,
        issue_id: int,
        subscriber_id: int,
        *,
        status: str = SENT,
        failure: str | None = None,
        provider_id: str | None = None,
        message_id: str | None = None,
        sent_at: datetime | None = SEND_START,
    ) -> int:
        now = utcnow()
        with self.store.begin() as conn:
            return conn.execute(
                deliveries.insert().values(
                    issue_id=issue_id,
                    subscriber_id=subscriber_id,
                    status=status,
                    failure=failure,
                    attempts=1,
                    message_id=message_id,
                    provider_message_id=provider_id,
                    queued_at=now,
                    sent_at=sent_at if status == SENT else None,
                    updated_at=now,
                )
            ).inserted_primary_key[0]

    def event(
        self,
        kind: str,
        issue_id: int | None,
        subscriber_id: int | None,
        *,
        at: datetime,
        machine: bool = False,
        link_idx: int | None = None,
        detail: dict[str, Any] | None = None,
        delivery_id: int | None = None,
    ) -> None:
        with self.store.begin() as conn:
            record_event(
                conn,
                kind=kind,
                issue_id=issue_id,
                subscriber_id=subscriber_id,
                delivery_id=delivery_id,
                link_idx=link_idx,
                machine=machine,
                detail=detail,
                occurred_at=at,
            )

    # ---- reading back ----

    def status_of(self, subscriber_id: int) -> str | None:
        """The address's suppression, else the standing on the default list (standings.py)."""
        with self.store.read() as conn:
            return standing(conn, subscriber_id)

    def events(self, **where: Any) -> list[dict[str, Any]]:
        query = sa.select(events).order_by(events.c.id)
        for name, value in where.items():
            query = query.where(events.c[name] == value)
        with self.store.read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]
