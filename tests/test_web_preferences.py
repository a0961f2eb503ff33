"""The preference page behind a message's unsubscribe link, over real HTTP to uvicorn on
127.0.0.1: the lists it offers, saving the check boxes, "unsubscribe from everything", the
data file and "erase me"; the database read back after each.  On SQLite and PostgreSQL
(the module's site, shared; each test has readers of its own)."""

from __future__ import annotations

import json
from email.message import EmailMessage

import httpx
import pytest
import sqlalchemy as sa

from newsletter.audience.csv_import import import_csv
from newsletter.audience.erasure import address_digests
from newsletter.audience.lists import set_list
from newsletter.audience.subscribers import add_subscriber, get_subscriber
from newsletter.store.schema import (
    ACTIVE,
    BY_PREFERENCES,
    PENDING,
    SUBSCRIBE,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    erasures,
    lists,
    memberships,
    subscribers,
)

pytest.register_assert_rewrite("tests.web_site")
from tests.web_site import (
    Site,
    form_token,
    http_client,
    pixel_url,
    tracked_links,
    unsubscribe_url,
)

pytest_plugins = ["tests.web_site"]


@pytest.fixture(scope="module")
def editions(site: Site) -> Site:
    """Readers pref0..pref9 on `daily` (public, named) and `weekly` (public), pref0..pref4
    on the private `vip` too; a private `secret` list somebody else is on; one daily issue
    sent to them all."""
    store, settings = site.world.store, site.world.settings
    for n in range(10):
        add_subscriber(store, reader(n), name=f"读者{n}", list_slug="daily")
        add_subscriber(store, reader(n), list_slug="weekly")
        if n < 5:
            add_subscriber(store, reader(n), list_slug="vip")
    add_subscriber(store, "insider@example.net", list_slug="secret")
    set_list(store, settings, "daily", name="每日速递", description="工作日早上 8 点", public=True)
    set_list(store, settings, "weekly", name="每周精选", public=True)
    SENT.update({m["To"].addresses[0].addr_spec: m for m in site.send_edition("daily-prefs", "daily")})
    return site


def reader(n: int) -> str:
    return f"pref{n}@example.org"


# The module's daily issue, by recipient (other tests send more issues to the same people).
SENT: dict[str, EmailMessage] = {}


def message_to(site: Site, email: str) -> EmailMessage:
    return SENT[email]


def url_of(site: Site, n: int) -> str:
    return unsubscribe_url(message_to(site, reader(n)))


def standings(site: Site, email: str) -> dict[str, tuple[str, str]]:
    with site.world.store.read() as conn:
        rows = conn.execute(
            sa.select(lists.c.slug, memberships.c.status, memberships.c.change_source)
            .join(lists, lists.c.id == memberships.c.list_id)
            .join(subscribers, subscribers.c.id == memberships.c.subscriber_id)
            .where(subscribers.c.email == email)
        )
        return {slug: (status, source) for slug, status, source in rows}


def post(browser: httpx.Client, url: str, page: httpx.Response, **data) -> httpx.Response:
    return browser.post(url, data={"form_token": form_token(page.text), **data})


def test_the_page_offers_public_lists_and_the_private_ones_the_reader_is_on_and_changes_nothing(editions: Site):
    url = url_of(editions, 0)
    before = standings(editions, reader(0))
    with editions.client() as browser:
        page = browser.get(url)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = page.text
    assert 'value="daily" checked' in text and 'value="weekly" checked' in text and 'value="vip" checked' in text
    assert "每日速递" in text and "工作日早上 8 点" in text and "每周精选" in text
    assert 'value="secret"' not in text  # private, and the reader is not on it
    assert "确定不再接收「每日速递」吗？" in text  # the message's own list first
    for action in ("unsubscribe", "save", "unsubscribe_all", "export", "erase"):
        assert f'name="action" value="{action}"' in text
    assert standings(editions, reader(0)) == before
    assert editions.events(email=reader(0)) == []


def test_saving_the_boxes_leaves_and_joins_lists_and_says_what_the_reader_now_gets(editions: Site):
    url = url_of(editions, 1)
    with editions.client() as browser:
        page = browser.get(url)
        # daily and vip unticked, weekly kept; `secret` is not offered, so naming it does nothing.
        saved = post(browser, url, page, action="save", list=["weekly", "secret"])
    assert saved.status_code == 200
    assert "已保存" in saved.text and f"{reader(1)} 会收到：每周精选。" in saved.text
    on = standings(editions, reader(1))
    assert on == {
        "daily": (UNSUBSCRIBED, BY_PREFERENCES),
        "weekly": (ACTIVE, "cli"),
        "vip": (UNSUBSCRIBED, BY_PREFERENCES),
    }
    (event,) = editions.events(UNSUBSCRIBE, reader(1))
    assert event["detail"] == {"method": BY_PREFERENCES, "lists": ["daily", "vip"]}

    with editions.client() as browser:
        page = browser.get(url)
        assert 'value="vip"' not in page.text  # a private list they left is not offered again
        assert 'value="daily"' in page.text and 'value="daily" checked' not in page.text
        post(browser, url, page, action="save", list=["daily", "weekly"])
    assert standings(editions, reader(1))["daily"] == (ACTIVE, BY_PREFERENCES)


def test_ticking_a_public_list_the_reader_was_never_on_joins_it(editions: Site):
    set_list(editions.world.store, editions.world.settings, "monthly", name="月刊", public=True)
    url = url_of(editions, 2)
    with editions.client() as browser:
        page = browser.get(url)
        assert 'value="monthly"' in page.text and 'value="monthly" checked' not in page.text
        post(browser, url, page, action="save", list=["daily", "weekly", "vip", "monthly"])
    assert standings(editions, reader(2))["monthly"] == (ACTIVE, BY_PREFERENCES)
    (event,) = editions.events(SUBSCRIBE, reader(2))
    assert event["detail"] == {"method": BY_PREFERENCES, "lists": ["monthly"]}


def test_unsubscribe_from_everything_leaves_every_list(editions: Site):
    url = url_of(editions, 3)
    with editions.client() as browser:
        page = browser.get(url)
        done = post(browser, url, page, action="unsubscribe_all")
    assert done.status_code == 200 and "已全部退订" in done.text
    assert {status for status, _ in standings(editions, reader(3)).values()} == {UNSUBSCRIBED}
    (event,) = editions.events(UNSUBSCRIBE, reader(3))
    assert event["detail"] == {"method": "page", "lists": ["daily", "vip", "weekly"], "everything": True}


def test_the_unsubscribe_confirmation_names_the_list_and_offers_everything_and_the_preferences(editions: Site):
    url = url_of(editions, 4)
    with editions.client() as browser:
        page = browser.get(url)
        done = post(browser, url, page, action="unsubscribe")
    assert f"{reader(4)} 不会再收到「每日速递」。" in done.text
    assert 'value="resubscribe"' in done.text and 'value="unsubscribe_all"' in done.text
    assert f'href="/u/{url.rsplit("/", 1)[1]}"' in done.text  # the preference page
    assert standings(editions, reader(4))["weekly"][0] == ACTIVE


@pytest.mark.parametrize("action", ["save", "unsubscribe_all", "export", "erase_confirmed"])
def test_the_preference_forms_refuse_a_post_without_the_pages_form_token(editions: Site, action: str):
    url = url_of(editions, 5)
    before = standings(editions, reader(5))
    with http_client() as stranger:
        answer = stranger.post(url, data={"action": action, "list": []})
    assert answer.status_code == 403
    assert "application/json" not in answer.headers["content-type"]
    assert standings(editions, reader(5)) == before
    assert get_subscriber(editions.world.store, reader(5)) is not None


def test_download_my_data_is_a_json_file_of_everything_kept_about_the_reader(editions: Site):
    message = message_to(editions, reader(6))
    url = unsubscribe_url(message)
    with editions.client() as browser:
        assert browser.get(pixel_url(message)).status_code == 200
        clicked = tracked_links(message)[0]
        target = browser.get(clicked).headers["location"]
        editions.flush()
        page = browser.get(url)
        answer = post(browser, url, page, action="export")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert answer.headers["content-disposition"] == 'attachment; filename="my-newsletter-data.json"'
    assert answer.headers["cache-control"] == "no-store"
    data = json.loads(answer.content)
    assert (data["email"], data["name"], data["address_status"]) == (reader(6), "读者6", ACTIVE)
    by_list = {membership["list"]: membership for membership in data["memberships"]}
    assert set(by_list) == {"daily", "weekly"}
    assert by_list["daily"]["status"] == ACTIVE and by_list["daily"]["joined_at"] and by_list["daily"]["changed_at"]
    assert [sent["issue"] for sent in data["issues_sent"]] == ["daily-prefs"]
    assert data["issues_sent"][0]["status"] == "sent" and data["issues_sent"][0]["sent_at"]
    assert [opened["issue"] for opened in data["opens"]] == ["daily-prefs"]
    assert [(click["issue"], click["url"]) for click in data["clicks"]] == [("daily-prefs", target)]


def test_erase_asks_first_then_erases_for_good(editions: Site, tmp_path):
    url = url_of(editions, 7)
    with editions.client() as browser:
        page = browser.get(url)
        asked = post(browser, url, page, action="erase")
        assert asked.status_code == 200 and "删除你的数据？" in asked.text
        assert 'value="erase_confirmed"' in asked.text
        assert get_subscriber(editions.world.store, reader(7)) is not None  # asking erased nothing
        erased = post(browser, url, asked, action="erase_confirmed")
        assert erased.status_code == 200 and "已删除" in erased.text
        assert browser.get(url).status_code == 404  # nobody left behind the link
    assert get_subscriber(editions.world.store, reader(7)) is None
    with editions.world.store.read() as conn:
        assert conn.execute(sa.select(erasures.c.source)).scalars().all() == [BY_PREFERENCES]

    # The same spreadsheet imported again does not bring them back.
    sheet = tmp_path / "readers.csv"
    sheet.write_text(f"email,name,lists\n{reader(7)},读者7,daily\n", encoding="utf-8")
    report = import_csv(editions.world.store, sheet, digests=address_digests(editions.world.settings))
    assert (report.imported, report.skipped) == (0, 1)
    assert get_subscriber(editions.world.store, reader(7)) is None


def test_a_pending_list_is_shown_as_waiting_and_ticking_it_confirms_it(editions: Site):
    add_subscriber(
        editions.world.store,
        reader(8),
        list_slug="weekly-digest",
        status=PENDING,
        digests=address_digests(editions.world.settings),  # another test may have erased someone
    )
    set_list(editions.world.store, editions.world.settings, "weekly-digest", public=True)
    url = url_of(editions, 8)
    with editions.client() as browser:
        page = browser.get(url)
        assert "（等待确认）" in page.text
        post(browser, url, page, action="save", list=["daily", "weekly", "vip", "weekly-digest"])
    assert standings(editions, reader(8))["weekly-digest"] == (ACTIVE, BY_PREFERENCES)


def test_an_english_issue_gets_the_page_in_english(editions: Site):
    add_subscriber(
        editions.world.store, "english@example.org", list_slug="daily", digests=address_digests(editions.world.settings)
    )
    messages = editions.send_edition("daily-en", "daily", language="en")
    (message,) = [m for m in messages if m["To"].addresses[0].addr_spec == "english@example.org"]
    with editions.client() as browser:
        page = browser.get(unsubscribe_url(message))
    assert '<html lang="en">' in page.text
    assert "Your subscriptions to" in page.text and "Download my data" in page.text and "Erase my data" in page.text


def test_the_issues_stats_count_who_left_its_list_not_who_left_another_from_its_page(editions: Site):
    from newsletter.stats import issue_stats

    def unsubscribed() -> int:
        return issue_stats(editions.world.store, "daily-prefs").unsubscribed

    before = unsubscribed()
    url = url_of(editions, 9)
    with editions.client() as browser:
        post(browser, url, browser.get(url), action="save", list=["daily"])  # leaves weekly only
        assert unsubscribed() == before
        post(browser, url, browser.get(url), action="save", list=[])  # now daily too
    assert unsubscribed() == before + 1
