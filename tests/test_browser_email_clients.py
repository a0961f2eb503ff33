"""The built email in headless Chromium as two kinds of reader get it: a mail client that
keeps the `<style>` blocks, and one that drops every one of them (Gmail's apps with
non-Google accounts, Gmail's mobile webmail), where only the inline styles are left.

At 375 and 680 px, in light and dark mode, either way: one column, no horizontal
scrolling, readable type, every entry title visible, and axe-core (run in the page) finding
no serious or critical accessibility violation.  Screenshots of the style-less email go to
test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import re

import pytest
from sample_issues import DIGEST, EXAMPLE, EXAMPLE_CONFIG, SEED, seed_case

from newsletter.compose.build import build_issue
from newsletter.compose.issue.parse import load_issue
from newsletter.config import load_settings

pytest_plugins = ["browser", "axe"]
pytestmark = pytest.mark.browser

SAMPLES = {"digest": DIGEST, "example": EXAMPLE, "seed": SEED}
WIDTHS = (375, 680)
SCHEMES = ("light", "dark")
MAX_COLUMN = 640
# Body text at least 14 px, titles at least 17 px, and nothing a reader must read under
# 12 px (the badges and footer are the smallest, at 12 px).
BODY_TEXT = ".nl-list li, .nl-insight-text, .nl-toc-item, .nl-p"
SMALLEST_PX, BODY_PX, TITLE_PX = 12, 14, 17
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>.*?</style>", re.DOTALL | re.IGNORECASE)


def without_style(document: str) -> str:
    """The email as those clients keep it: every <style> block gone, inline styles kept."""
    return _STYLE_BLOCK.sub("", document)


@pytest.fixture(scope="module", params=["digest", "example", seed_case("seed")])
def sample(request, tmp_path_factory):
    """(name, email HTML with its styles, entry titles) of one sample issue."""
    path = SAMPLES[request.param]
    settings = load_settings(EXAMPLE_CONFIG, environ={})
    built = build_issue(settings, path, out_dir=tmp_path_factory.mktemp(request.param))
    return request.param, built.files[0].read_text(encoding="utf-8"), [e.title for e in load_issue(path).entries]


@pytest.fixture(scope="module", params=["with style", "without style"])
def email(request, sample, tmp_path_factory, chromium, open_page):
    """A page holding the email as one kind of client shows it, loaded once per module."""
    name, document, titles = sample
    if request.param == "without style":
        document = without_style(document)
        assert "<style" not in document.lower()
    path = tmp_path_factory.mktemp("email") / "email.html"
    path.write_text(document, encoding="utf-8")
    page = open_page(chromium, WIDTHS[0], 900)
    page.goto(path.as_uri())
    yield f"{name}, {request.param}", page, titles
    page.context.close()


def show(page, width: int, scheme: str) -> None:
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size({"width": width, "height": 900})


def each_view():
    return [(width, scheme) for width in WIDTHS for scheme in SCHEMES]


def test_one_column_without_horizontal_scrolling(email):
    name, page, titles = email
    for width, scheme in each_view():
        show(page, width, scheme)
        scroll, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert scroll <= client == width, f"{name} scrolls sideways at {width} px {scheme}: {scroll} > {client}"
        cards = page.evaluate(
            """() => [...document.querySelectorAll('.nl-card')].map(e => {
                 const b = e.getBoundingClientRect();
                 return [b.left, b.right, b.top, b.bottom];
               })"""
        )
        assert len(cards) == len(titles) + 2, "overview, one card per entry, related news"
        column = min(width, MAX_COLUMN)
        for (_, _, top, _), (_, _, _, above_bottom) in zip(cards[1:], cards, strict=False):
            assert top >= above_bottom - 1, f"{name} at {width} px: a card beside another, not below it"
        for left, right, _, _ in cards:
            assert left >= -0.5 and right <= width + 0.5
            assert right - left >= 0.85 * column, f"{name} at {width} px: a card {right - left:.0f} px wide"


def test_every_entry_title_is_visible_and_whole(email):
    name, page, titles = email
    for width, scheme in each_view():
        show(page, width, scheme)
        headings = page.locator("h2.nl-entry-title")
        assert headings.all_inner_texts() == titles
        for heading in headings.all():
            assert heading.is_visible()
            box = heading.bounding_box()
            assert box["height"] > 0 and box["x"] >= 0 and box["x"] + box["width"] <= width
            assert heading.evaluate("e => e.scrollWidth <= e.clientWidth"), f"{name}: clipped title"


def test_type_stays_readable(email):
    name, page, _ = email
    for width, scheme in each_view():
        show(page, width, scheme)
        body = page.locator(BODY_TEXT).evaluate_all("els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")
        titles = page.locator("h2.nl-entry-title").evaluate_all(
            "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))"
        )
        smallest = page.evaluate(
            """() => Math.min(...[...document.querySelectorAll('.nl-body *')]
                 .filter(e => e.offsetParent !== null && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
                 .map(e => parseFloat(getComputedStyle(e).fontSize)))"""
        )
        assert len(body) > 10 and min(body) >= BODY_PX, f"{name} at {width} px: body text at {min(body)} px"
        assert min(titles) >= TITLE_PX, f"{name} at {width} px: titles at {min(titles)} px"
        assert smallest >= SMALLEST_PX, f"{name} at {width} px: text at {smallest} px"


def test_axe_core_finds_no_serious_or_critical_violation(email, axe, screenshot):
    name, page, _ = email
    for width, scheme in each_view():
        show(page, width, scheme)
        assert axe.serious(page) == [], f"{name} at {width} px, {scheme}"
        if "without" in name and width == WIDTHS[0]:
            screenshot(page, f"email-{name}-{width}-{scheme}")
