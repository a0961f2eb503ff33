"""The preference page in headless Chromium, from the unsubscribe link of a real message:
untick a list and save, download the data file, erase, and find that re-importing the
spreadsheet the reader came from does not bring them back.  Screenshots go to
test-artifacts/web-preferences-*.png."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.audience.csv_import import import_csv
from newsletter.audience.erasure import address_digests
from newsletter.audience.lists import set_list
from newsletter.audience.subscribers import get_subscriber
from newsletter.store.schema import ACTIVE, UNSUBSCRIBED

pytest.register_assert_rewrite("tests.web_site")
from browser import open_page, screenshot

from tests.send_world import World
from tests.web_site import Site, served, unsubscribe_url

pytest_plugins = ["browser", "tests.web_site"]
pytestmark = pytest.mark.browser

READER = "li.na@example.org"
PHONE = (375, 740)


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Path]]:
    """Readers imported from a spreadsheet onto `daily` and `weekly`; a daily issue sent."""
    root = tmp_path_factory.mktemp("preferences-browser")
    world = World(root, f"sqlite:///{root / 'newsletter.db'}")
    sheet = root / "readers.csv"
    sheet.write_text(
        f'email,name,lists,city\n{READER},李娜,"daily,weekly",北京\nother@example.org,其他,daily,上海\n',
        encoding="utf-8",
    )
    try:
        with served(world) as site:
            digests = address_digests(world.settings)
            assert import_csv(world.store, sheet, digests=digests).imported == 2
            set_list(world.store, world.settings, "daily", name="每日速递", description="工作日早上 8 点", public=True)
            set_list(world.store, world.settings, "weekly", name="每周精选", description="每周五", public=True)
            site.send_edition("daily-1", "daily")
            yield site, sheet
    finally:
        world.close()


def test_untick_save_download_erase_and_the_spreadsheet_does_not_bring_them_back(sent, chromium, tmp_path):
    site, sheet = sent
    (message,) = [m for m in site.messages() if m["To"].addresses[0].addr_spec == READER]
    url = unsubscribe_url(message)
    page = open_page(chromium, *PHONE, accept_downloads=True)
    try:
        page.goto(url)
        daily = page.get_by_role("checkbox", name="每日速递")
        weekly = page.get_by_role("checkbox", name="每周精选")
        assert daily.is_checked() and weekly.is_checked()
        assert page.get_by_text("工作日早上 8 点").is_visible()
        screenshot(page, "web-preferences-phone")
        assert get_subscriber(site.world.store, READER).memberships == {"daily": ACTIVE, "weekly": ACTIVE}

        daily.uncheck()
        with page.expect_navigation():
            page.get_by_role("button", name="保存").click()
        assert page.get_by_role("heading", name="已保存").is_visible()
        assert f"{READER} 会收到：每周精选。" in page.locator("main").inner_text()
        screenshot(page, "web-preferences-saved-phone")
        assert get_subscriber(site.world.store, READER).memberships == {"daily": UNSUBSCRIBED, "weekly": ACTIVE}

        page.get_by_role("link", name="管理我的订阅").click()
        page.wait_for_load_state()
        assert not page.get_by_role("checkbox", name="每日速递").is_checked()
        with page.expect_download() as download:
            page.get_by_role("button", name="下载我的数据").click()
        assert download.value.suggested_filename == "my-newsletter-data.json"
        data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
        assert (data["email"], data["name"], data["attributes"]) == (READER, "李娜", {"city": "北京"})
        standing = {item["list"]: (item["status"], item["changed_by"]) for item in data["memberships"]}
        assert standing == {"daily": (UNSUBSCRIBED, "preferences"), "weekly": (ACTIVE, "import")}
        assert [item["issue"] for item in data["issues_sent"]] == ["daily-1"]
        assert data["opens"] == [] and data["clicks"] == []
        assert [item["kind"] for item in data["other_events"]] == ["unsubscribe"]

        with page.expect_navigation():
            page.get_by_role("button", name="删除我的数据").click()
        assert page.get_by_role("heading", name="删除你的数据？").is_visible()
        assert get_subscriber(site.world.store, READER) is not None  # asking erased nothing
        screenshot(page, "web-preferences-erase-phone")
        with page.expect_navigation():
            page.get_by_role("button", name="确认删除").click()
        assert page.get_by_role("heading", name="已删除").is_visible()
    finally:
        page.context.close()

    assert get_subscriber(site.world.store, READER) is None
    report = import_csv(site.world.store, sheet, digests=address_digests(site.world.settings))
    assert (report.imported, report.unchanged, report.skipped) == (0, 1, 1)
    assert get_subscriber(site.world.store, READER) is None
