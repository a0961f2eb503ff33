"""One-click leaves one list: a reader of a daily and a weekly edition presses Gmail's
unsubscribe button on a daily message, and from then on gets the weekly and not the daily.

Real sends through the outbox, the RFC 8058 POST over HTTP to uvicorn on 127.0.0.1, the
ledger read back; on SQLite and PostgreSQL (the module's site fixture runs once per
database).
"""

from __future__ import annotations

import httpx
import pytest

from newsletter.audience.subscribers import add_subscriber, get_subscriber
from newsletter.store.schema import ACTIVE, UNSUBSCRIBE, UNSUBSCRIBED

pytest.register_assert_rewrite("tests.web_site")
from tests.web_site import Site, http_client, unsubscribe_url  # noqa: I001 - registers rewriting first

from tests.send_world import recipients_of

pytest_plugins = ["tests.web_site"]

READER = "both.editions@example.org"
CONTROL = "keeps.both@example.org"


def send(site: Site, slug: str, list_slug: str) -> dict[str, int]:
    """Send the example issue as `slug` to `list_slug`; how many messages each address got."""
    return recipients_of(site.send_edition(slug, list_slug))


def gmail_one_click(url: str) -> httpx.Response:
    with http_client() as gmail:
        return gmail.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Google-Mail-Unsubscribe"},
        )


def test_one_click_from_a_daily_message_leaves_daily_and_the_weekly_still_arrives(site: Site):
    store = site.world.store
    for address in (READER, CONTROL):
        add_subscriber(store, address, list_slug="daily")
        add_subscriber(store, address, list_slug="weekly")

    first_daily = send(site, "daily-1", "daily")
    assert first_daily == {READER: 1, CONTROL: 1}
    message = next(
        m for m in site.messages() if m["To"].addresses[0].addr_spec == READER and "daily" in str(m["List-Id"])
    )
    assert gmail_one_click(unsubscribe_url(message)).status_code == 200

    reader = get_subscriber(store, READER)
    assert reader is not None and reader.memberships == {"daily": UNSUBSCRIBED, "weekly": ACTIVE}
    assert reader.status == ACTIVE  # nothing about the address changed
    (event,) = site.events(UNSUBSCRIBE, READER)
    assert event["detail"] == {"method": "one-click", "lists": ["daily"]}

    assert send(site, "weekly-1", "weekly") == {READER: 1, CONTROL: 1}
    assert send(site, "daily-2", "daily") == {CONTROL: 1}

    # The same button pressed again (Gmail retries) changes nothing more.
    assert gmail_one_click(unsubscribe_url(message)).status_code == 200
    assert len(site.events(UNSUBSCRIBE, READER)) == 1
    assert get_subscriber(store, READER).memberships == {"daily": UNSUBSCRIBED, "weekly": ACTIVE}
