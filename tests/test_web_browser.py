"""The public pages in headless Chromium: the unsubscribe button from a real message, the
archive, an issue page and the subscribe form, at desktop and phone widths.  Screenshots go
to test-artifacts/web-*.png for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from newsletter.store.schema import ACTIVE, UNSUBSCRIBED

pytest.register_assert_rewrite("tests.web_site")
from browser import blocked_requests, open_page, screenshot

from tests.send_world import World
from tests.web_site import Site, served, unsubscribe_url

pytest_plugins = ["browser", "tests.web_site"]
pytestmark = pytest.mark.browser

PHONE = (375, 740)
DESKTOP = (1024, 800)


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("browser-world")
    world = World(root, f"sqlite:///{root / 'newsletter.db'}")
    try:
        with served(world) as site:
            world.add_subscribers(3)
            site.send()
            yield site
    finally:
        world.close()


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_a_reader_unsubscribes_with_the_button_from_a_real_message(sent: Site, chromium):
    url = unsubscribe_url(sent.message_to("reader0@example.org"))
    page = open_page(chromium, *PHONE)
    try:
        page.goto(url)
        button = page.get_by_role("button", name="确认退订")
        assert button.is_visible()
        assert "reader0@example.org" in page.locator("main").inner_text()
        assert no_horizontal_scroll(page)
        screenshot(page, "web-unsubscribe-ask-phone")
        assert sent.status("reader0@example.org") == ACTIVE  # opening the page changed nothing

        with page.expect_navigation():
            button.click()
        assert page.get_by_role("heading", name="已退订").is_visible()
        assert "reader0@example.org 不会再收到「AI行业速递」" in page.locator("main").inner_text()
        screenshot(page, "web-unsubscribe-done-phone")
        assert sent.status("reader0@example.org") == UNSUBSCRIBED

        with page.expect_navigation():
            page.get_by_role("button", name="我点错了，重新订阅").click()
        assert page.get_by_role("heading", name="已重新订阅").is_visible()
        assert sent.status("reader0@example.org") == ACTIVE
        assert blocked_requests(page) == []
    finally:
        page.context.close()


def test_the_unsubscribe_button_works_from_the_keyboard_in_dark_mode(sent: Site, chromium):
    url = unsubscribe_url(sent.message_to("reader1@example.org"))
    page = open_page(chromium, *DESKTOP, color_scheme="dark")
    try:
        page.goto(url)
        button = page.get_by_role("button", name="确认退订")
        # Tab from the top of the page: the header's link first, then the button.
        for _ in range(5):
            page.keyboard.press("Tab")
            if button.evaluate("element => element === document.activeElement"):
                break
        assert button.evaluate("element => element === document.activeElement")
        outline = button.evaluate("element => getComputedStyle(element).outlineStyle")
        assert outline != "none"  # the focus is visible
        screenshot(page, "web-unsubscribe-ask-dark-focus")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.get_by_role("heading", name="已退订").is_visible()
        assert sent.status("reader1@example.org") == UNSUBSCRIBED
    finally:
        page.context.close()


def test_the_archive_an_issue_page_and_the_404_page_render(sent: Site, chromium):
    page = open_page(chromium, *DESKTOP)
    try:
        page.goto(sent.url + "/")
        assert page.get_by_role("heading", name="AI行业速递", level=1).is_visible()
        link = page.get_by_role("link", name="🤖 AI行业速递 - 2026年11月30日")
        assert link.is_visible()
        screenshot(page, "web-archive-desktop")
        # The same page at phone width: a reflow, no reload.
        page.set_viewport_size({"width": PHONE[0], "height": PHONE[1]})
        assert no_horizontal_scroll(page)
        screenshot(page, "web-archive-phone")

        with page.expect_navigation():
            link.click()
        assert page.url == f"{sent.url}/issues/2026-11-30"
        assert page.get_by_role(
            "heading", name="端侧大模型走进千元机：3B 参数模型首次成为国产手机出厂标配"
        ).is_visible()
        assert no_horizontal_scroll(page)
        screenshot(page, "web-issue-phone")
        page.set_viewport_size({"width": DESKTOP[0], "height": DESKTOP[1]})
        # The top of it: a full-page screenshot of a long issue at this width takes seconds.
        screenshot(page, "web-issue-desktop", full_page=False)

        answer = page.goto(sent.url + "/no/such/page")
        assert answer.status == 404
        assert page.get_by_role("heading", name="找不到页面").is_visible()
        screenshot(page, "web-not-found-desktop")
        assert blocked_requests(page) == []
    finally:
        page.context.close()


def test_the_subscribe_form_in_a_browser(sent: Site, chromium):
    page = open_page(chromium, *PHONE)
    try:
        page.goto(sent.url + "/subscribe")
        email = page.get_by_label("邮箱地址")
        email.fill("not an address")
        screenshot(page, "web-subscribe-phone")
        with page.expect_navigation():
            page.get_by_role("button", name="订阅").click()
        assert page.get_by_role("alert").is_visible()
        assert page.get_by_label("邮箱地址").get_attribute("aria-invalid") == "true"
        screenshot(page, "web-subscribe-error-phone")

        page.get_by_label("邮箱地址").fill("browser.reader@example.org")
        page.get_by_label("称呼（可选）").fill("浏览器读者")
        with page.expect_navigation():
            page.get_by_role("button", name="订阅").click()
        assert page.get_by_role("heading", name="请查收确认邮件").is_visible()
        screenshot(page, "web-subscribe-sent-phone")
        assert blocked_requests(page) == []
    finally:
        page.context.close()
    sent.wait_for_messages(4)  # three issues and the confirmation
