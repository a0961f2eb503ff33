"""The preference page's library side: which lists a reader is offered, and saving their
choice.

A reader is offered every public list, and the private lists they are active or pending
on (so they can leave them); a private list they left, or were never on, is not shown, and
a POST naming one changes nothing.  A ticked list makes them active on it, an unticked one
unsubscribes them from it, with the time and `preferences` as the source; lists the page
did not offer are left alone.  The signed link they came by came in their own mail, the
same proof of the mailbox a confirmation link gives, so joining needs no further email.
A bounced or complained address can change its lists too; no list reaches it until it is
confirmed again (newsletter.audience.double_opt_in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from newsletter.audience.lists import list_catalog
from newsletter.audience.self_service import Reader, find_reader
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store.events import record_reader_event
from newsletter.store.lists import get_or_create_list
from newsletter.store.memberships import change_status, join_list, leave_lists, memberships_of
from newsletter.store.schema import (
    ACTIVE,
    BY_PREFERENCES,
    PENDING,
    RESUBSCRIBE,
    SUBSCRIBE,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
)


@dataclass(frozen=True)
class ListChoice:
    slug: str
    title: str
    description: str
    # The reader's standing on it: active, pending, unsubscribed, or None (never on it).
    status: str | None

    @property
    def chosen(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class Preferences:
    reader: Reader
    choices: tuple[ListChoice, ...]

    def receives(self) -> list[ListChoice]:
        """The lists that reach the reader as things stand."""
        if self.reader.status != ACTIVE:
            return []
        return [choice for choice in self.choices if choice.chosen]


def reader_preferences(store: Store, settings: Settings, *, subscriber_id: int, issue_id: int) -> Preferences | None:
    """What the page shows the reader of a link; None when they were erased."""
    reader = find_reader(store, subscriber_id, issue_id)
    if reader is None:
        return None
    with store.read() as conn:
        standings = {membership.slug: membership.status for membership in memberships_of(conn, subscriber_id)}
    choices = tuple(
        ListChoice(slug, info.title, info.description, standings.get(slug))
        for slug, info in list_catalog(store, settings).items()
        if info.public or standings.get(slug) in (ACTIVE, PENDING)
    )
    return Preferences(reader, choices)


def save_preferences(
    store: Store,
    settings: Settings,
    *,
    subscriber_id: int,
    issue_id: int,
    chosen: Iterable[str],
    user_agent: str | None,
) -> Preferences | None:
    """Apply the ticked lists (`chosen`, by slug) to the lists the page offers; returns the
    preferences as they are now (None when the reader was erased)."""
    before = reader_preferences(store, settings, subscriber_id=subscriber_id, issue_id=issue_id)
    if before is None:
        return None
    wanted = set(chosen)
    joined: list[str] = []
    rejoined: list[str] = []
    left: list[str] = []
    with store.begin() as conn:
        for choice in before.choices:
            if choice.slug in wanted and not choice.chosen:
                list_id = get_or_create_list(conn, choice.slug)
                if choice.status is None:
                    if join_list(conn, subscriber_id, list_id, ACTIVE, BY_PREFERENCES):
                        joined.append(choice.slug)
                elif change_status(
                    conn, subscriber_id, ACTIVE, BY_PREFERENCES, list_ids=[list_id], current=[PENDING, UNSUBSCRIBED]
                ):
                    rejoined.append(choice.slug)
            elif choice.slug not in wanted and choice.status in (ACTIVE, PENDING):
                list_id = get_or_create_list(conn, choice.slug)
                if leave_lists(conn, subscriber_id, BY_PREFERENCES, list_ids=[list_id]):
                    left.append(choice.slug)
        for kind, slugs in ((SUBSCRIBE, joined), (RESUBSCRIBE, rejoined), (UNSUBSCRIBE, left)):
            if slugs:
                record_reader_event(
                    conn,
                    kind,
                    issue_id=issue_id,
                    subscriber_id=subscriber_id,
                    user_agent=user_agent,
                    detail={"method": BY_PREFERENCES, "lists": sorted(slugs)},
                )
    return reader_preferences(store, settings, subscriber_id=subscriber_id, issue_id=issue_id)
