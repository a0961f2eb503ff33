"""Headless Debian Chromium for tests, driven through Playwright's Python package.

A pytest plugin: put `pytest_plugins = ["browser"]` in a test module (tests/ is on
sys.path, so sibling modules import by name) and use

- `chromium` (session): one launched browser shared by every test of the session, since
  starting Chromium costs about a second;
- `new_page` (per test): `new_page(width=680, height=900, color_scheme="light") -> Page`,
  each page in its own context, closed when the test ends;
- `open_page(chromium, width, height, ...)`: the same page, for fixtures of a wider scope;
- `screenshot(page, name)`: a full-page PNG under `test-artifacts/` for a person to look at
  (also as the fixture `screenshot`, and `blocked_requests` likewise).

`playwright install` cannot download its own browser build here, so this launches the
system's Chromium (`$NEWSLETTER_CHROMIUM` or /usr/bin/chromium).  Without it the tests skip,
except under CI (`CI` set), where a missing browser is a failure, not a silent skip.

Pages may load only loopback, file:, data:, about: and blob: URLs.  Anything else is
aborted and recorded, readable with `blocked_requests(page)`: tests must not depend on
the network, and a mail that fetches from third parties leaks its readers' opens.

Mark browser tests with `@pytest.mark.browser` so `-m "not browser"` can leave them out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_SCHEMES = {"file", "data", "about", "blob"}
ARTIFACTS_DIR = Path(
    os.environ.get("NEWSLETTER_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts")
)


def chromium_path() -> str | None:
    path = os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).is_file() else None


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or (parts.scheme in ("http", "https", "ws") and parts.hostname in LOCAL_HOSTS)


def blocked_requests(page) -> list[str]:
    """URLs outside this machine that the page tried to load (and did not)."""
    return page.context._newsletter_blocked  # set by new_page


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG as test-artifacts/NAME.png and return its path."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / (re.sub(r"[^\w.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    executable = chromium_path()
    if executable is None:
        message = "no Chromium at /usr/bin/chromium (apt-get install chromium, or set NEWSLETTER_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, width: int = 680, height: int = 900, *, color_scheme: str = "light", **context_options):
    """A page in a context of its own that can reach nothing outside this machine; close it
    with `page.context.close()` (the `new_page` fixture does that for you)."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme=color_scheme, **context_options
    )
    blocked: list[str] = []
    context._newsletter_blocked = blocked

    def guard(route) -> None:
        url = route.request.url
        if is_local(url):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("blockedbyclient")

    context.route("**/*", guard)
    return context.new_page()


@pytest.fixture
def new_page(chromium) -> Iterator[Callable]:
    """`new_page(width=680, height=900, color_scheme="light") -> Page`, closed after the test."""
    pages = []

    def make(*args, **kwargs):
        pages.append(open_page(chromium, *args, **kwargs))
        return pages[-1]

    yield make
    for page in pages:
        page.context.close()


@pytest.fixture(scope="session", name="screenshot")
def screenshot_fixture() -> Callable:
    """`screenshot(page, name) -> Path`, as the function above, for modules that load this
    file as a plugin (importing it as well would bypass pytest's assertion rewriting)."""
    return screenshot


@pytest.fixture(scope="session", name="blocked_requests")
def blocked_requests_fixture() -> Callable:
    """`blocked_requests(page) -> list[str]`, as the function above."""
    return blocked_requests


@pytest.fixture(scope="session", name="open_page")
def open_page_fixture() -> Callable:
    """`open_page(chromium, width, height, ...)`, as the function above, for fixtures of a
    module or session scope."""
    return open_page
