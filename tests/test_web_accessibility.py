"""Every page `newsletter serve` shows a person, checked by axe-core in headless Chromium at
phone and desktop widths, in light and dark mode: no serious or critical violation.

The pages are reached as a reader reaches them: the archive and an issue page, a 404, the
unsubscribe page from a real message's List-Unsubscribe (asked, done, resubscribed), the
subscribe form (empty, with an error, sent), the confirmation link from the real
confirmation mail (asked, done), and the stats pages behind basic auth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

pytest.register_assert_rewrite("tests.web_site")
from browser import open_page

from tests.send_world import World
from tests.web_site import Site, served, text_part, unsubscribe_url

pytest_plugins = ["browser", "axe", "tests.web_site"]
pytestmark = pytest.mark.browser

VIEWS = [(375, 740, "light"), (1024, 800, "dark")]
ADMIN_PASSWORD = "a11y-admin-password"


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("a11y-world")
    world = World(root, f"sqlite:///{root / 'newsletter.db'}")
    world.configure("web", admin_password=ADMIN_PASSWORD)
    try:
        with served(world) as site:
            # reader0 for the unsubscribe page; one reader per view that unsubscribes.
            world.add_subscribers(1 + 2 * len(VIEWS))
            site.send()
            yield site
    finally:
        world.close()


def check_in_every_view(chromium, axe, visit, name: str) -> None:
    """`visit(page)` brings a fresh page to the state to check; axe runs in each view."""
    for width, height, scheme in VIEWS:
        # bypass_csp: the pages' Content-Security-Policy forbids every script, axe-core's too.
        page = open_page(chromium, width, height, color_scheme=scheme, http_credentials=CREDENTIALS, bypass_csp=True)
        try:
            visit(page)
            assert axe.serious(page) == [], f"{name} at {width} px, {scheme}"
        finally:
            page.context.close()


CREDENTIALS = {"username": "admin", "password": ADMIN_PASSWORD}


def test_archive_issue_page_and_404(sent: Site, chromium, axe):
    check_in_every_view(chromium, axe, lambda page: page.goto(sent.url + "/"), "the archive")
    check_in_every_view(chromium, axe, lambda page: page.goto(sent.url + "/issues/2026-11-30"), "an issue page")
    check_in_every_view(chromium, axe, lambda page: page.goto(sent.url + "/no/such/page"), "the 404 page")


def test_unsubscribe_asked_done_and_resubscribed(sent: Site, chromium, axe):
    readers = iter(range(1, 1 + 2 * len(VIEWS)))

    def asked(page):
        page.goto(unsubscribe_url(sent.message_to("reader0@example.org")))

    def done(page):
        page.goto(unsubscribe_url(sent.message_to(f"reader{next(readers)}@example.org")))
        with page.expect_navigation():
            page.get_by_role("button", name="确认退订").click()
        assert page.get_by_role("heading", name="已退订").is_visible()

    def resubscribed(page):
        done(page)
        with page.expect_navigation():
            page.get_by_role("button", name="我点错了，重新订阅").click()
        assert page.get_by_role("heading", name="已重新订阅").is_visible()

    check_in_every_view(chromium, axe, asked, "the unsubscribe page")
    check_in_every_view(chromium, axe, done, "the unsubscribed page")
    check_in_every_view(chromium, axe, resubscribed, "the resubscribed page")


def test_subscribe_form_error_sent_and_confirmation(sent: Site, chromium, axe):
    def form(page):
        page.goto(sent.url + "/subscribe")

    def error(page):
        form(page)
        page.get_by_label("邮箱地址").fill("not an address")
        with page.expect_navigation():
            page.get_by_role("button", name="订阅").click()
        assert page.get_by_role("alert").is_visible()

    addresses = iter(f"a11y{n}@example.org" for n in range(10))

    def subscribed(page):
        form(page)
        page.get_by_label("邮箱地址").fill(next(addresses))
        with page.expect_navigation():
            page.get_by_role("button", name="订阅").click()
        assert page.get_by_role("heading", name="请查收确认邮件").is_visible()

    check_in_every_view(chromium, axe, form, "the subscribe form")
    check_in_every_view(chromium, axe, error, "the subscribe form with an error")
    check_in_every_view(chromium, axe, subscribed, "the confirmation-sent page")

    # The confirmation link from the real confirmation mail, asked and then confirmed.
    mails = sent.wait_for_messages(1 + 2 * len(VIEWS) + len(VIEWS))
    links = [
        re.search(r"https?://\S+/confirm/\S+", text_part(m)).group(0) for m in mails if "/confirm/" in text_part(m)
    ]
    assert len(links) == len(VIEWS)
    check_in_every_view(chromium, axe, lambda page: page.goto(links[0]), "the confirmation page")

    def confirmed(page):
        page.goto(links[1])
        button = page.get_by_role("button")
        if button.count():
            with page.expect_navigation():
                button.first.click()

    check_in_every_view(chromium, axe, confirmed, "the confirmed page")


def test_stats_pages(sent: Site, chromium, axe):
    check_in_every_view(chromium, axe, lambda page: page.goto(sent.url + "/stats/"), "the stats index")
    check_in_every_view(chromium, axe, lambda page: page.goto(sent.url + "/stats/2026-11-30"), "an issue's stats")
