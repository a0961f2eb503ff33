"""A reader's own unsubscribe, by the signed link of a message they received: one-click
(RFC 8058), the unsubscribe page's buttons, and a mail to `[newsletter] unsubscribe_mailto`
all come through `unsubscribe_reader`.

An unsubscribe link names the issue it came in (newsletter.tokens), and an issue was sent
to one list, so the link leaves that list and only that one: a reader of a daily and a
weekly edition who unsubscribes from a daily message still gets the weekly one.  Leaving
everything is a separate, explicit choice (`everything=True`).

Who may come back, and how (a decision, documented in docs/deploy.md as well):

- Someone who left a list can undo it at once from the page that confirmed the unsubscribe
  (the "resubscribe" button): the signed link they followed came in their own mail, which
  is the same proof of the mailbox a confirmation link gives.  This undoes leaving the
  message's list, never a bounce or complaint on the address.
- Otherwise coming back is the double opt-in of newsletter.audience.double_opt_in.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from newsletter.store import Store
from newsletter.store.events import record_reader_event
from newsletter.store.memberships import (
    ListRef,
    address_of,
    change_status,
    leave_lists,
    list_of_issue,
    membership_status,
    slugs_of,
)
from newsletter.store.schema import (
    ACTIVE,
    BY_PAGE,
    RESUBSCRIBE,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
)


@dataclass(frozen=True)
class Reader:
    """The subscriber a signed link names, as the pages show them."""

    id: int
    email: str
    name: str
    # The address: active, bounced or complained.
    status: str
    # The list of the message the link came in, and the reader's standing on it (None
    # when they are not on it, or the issue is gone).
    list: ListRef | None = None
    list_status: str | None = None

    @property
    def can_resubscribe(self) -> bool:
        """Whether the unsubscribe page may undo leaving the message's list: only a list
        they left, and never over a bounce or complaint."""
        return self.status == ACTIVE and self.list is not None and self.list_status == UNSUBSCRIBED


def find_reader(store: Store, subscriber_id: int, issue_id: int | None = None) -> Reader | None:
    with store.read() as conn:
        return _reader(conn, subscriber_id, issue_id)


def _reader(conn: sa.Connection, subscriber_id: int, issue_id: int | None) -> Reader | None:
    row = address_of(conn, subscriber_id)
    if row is None:
        return None
    list_ = list_of_issue(conn, issue_id) if issue_id is not None else None
    standing = membership_status(conn, subscriber_id, list_.id) if list_ is not None else None
    return Reader(row.id, row.email, row.name, row.status, list_, standing)


def unsubscribe_reader(
    store: Store,
    *,
    issue_id: int,
    subscriber_id: int,
    method: str,
    user_agent: str | None,
    everything: bool = False,
) -> tuple[Reader | None, bool]:
    """Unsubscribe the subscriber of an unsubscribe link from the issue's list (from every
    list with `everything`, or when the issue's list is not known any more); returns them
    (None if erased) and whether anything changed.  Repeating it changes nothing and
    records nothing.

    `method` says how the reader asked, and is stored as the source of the change:
    schema.BY_ONE_CLICK, BY_PAGE, BY_PREFERENCES or BY_MAILTO.
    """
    with store.begin() as conn:
        reader = _reader(conn, subscriber_id, issue_id)
        if reader is None:  # erased since the mail went out: nobody left to unsubscribe
            return None, False
        scope = None if everything or reader.list is None else [reader.list.id]
        left = leave_lists(conn, subscriber_id, method, list_ids=scope)
        if left:
            detail: dict = {"method": method, "lists": slugs_of(conn, left)}
            if scope is None:
                detail["everything"] = True
            record_reader_event(
                conn, UNSUBSCRIBE, issue_id=issue_id, subscriber_id=subscriber_id, user_agent=user_agent, detail=detail
            )
        reader = _reader(conn, subscriber_id, issue_id)
    return reader, bool(left)


def undo_unsubscribe(
    store: Store, *, issue_id: int, subscriber_id: int, user_agent: str | None
) -> tuple[Reader | None, bool]:
    """Put the reader back on the issue's list they left (see the module docstring for why
    this needs no confirmation email); anything else is left alone."""
    with store.begin() as conn:
        reader = _reader(conn, subscriber_id, issue_id)
        if reader is None or not reader.can_resubscribe or reader.list is None:
            return reader, False
        changed = change_status(conn, subscriber_id, ACTIVE, BY_PAGE, list_ids=[reader.list.id], current=[UNSUBSCRIBED])
        if changed:
            detail = {"method": BY_PAGE, "lists": [reader.list.slug]}
            record_reader_event(
                conn, RESUBSCRIBE, issue_id=issue_id, subscriber_id=subscriber_id, user_agent=user_agent, detail=detail
            )
        reader = _reader(conn, subscriber_id, issue_id)
    return reader, bool(changed)
