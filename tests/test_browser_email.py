"""The built email.html in headless Chromium at phone (375 px) and desktop (680 px) widths,
in light and dark mode.  Screenshots go to test-artifacts/ for a person to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from sample_issues import DIGEST, EXAMPLE, EXAMPLE_CONFIG, SEED, seed_case

from newsletter.compose.build import build_issue
from newsletter.compose.issue.parse import load_issue
from newsletter.config import load_settings

pytest_plugins = ["browser"]
pytestmark = pytest.mark.browser

# Our full-size digest and our example always; the seed where it is (a `seed` case).
SAMPLES = {"digest": DIGEST, "example": EXAMPLE, "seed": SEED}
PHONE, DESKTOP = 375, 680
MAX_CARD_WIDTH = 640

# WCAG 2.x relative luminance and contrast of an element's text against the first opaque
# background behind it (the email sets backgrounds on cells, not on the text itself).
CONTRAST_JS = """
(elements) => elements.map(element => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let node = element, background = null;
  while (node && node.nodeType === 1) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) { background = c; break; }
    node = node.parentElement;
  }
  background = background || [255, 255, 255];
  const a = lum(rgb(getComputedStyle(element).color)), b = lum(background);
  return [element.innerText.slice(0, 30), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
})
"""
# Text that must stay readable: titles, insight, summary, sources, related links, footer.
READABLE = ".nl-title, .nl-entry-title, .nl-insight-text, .nl-list li, .nl-sources, .nl-related a, .nl-foot-p"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[Path, list[str]]]:
    settings = load_settings(EXAMPLE_CONFIG, environ={})
    result = {}
    for name, path in SAMPLES.items():
        if path.is_file():
            out = build_issue(settings, path, out_dir=tmp_path_factory.mktemp(name))
            result[name] = (out.files[0], [entry.title for entry in load_issue(path).entries])
    return result


@pytest.fixture(scope="module", params=["digest", "example", seed_case("seed")])
def email(request, built, chromium, open_page):
    """(name, loaded page, entry titles): each email is loaded once per module; every test
    sets the viewport and colour scheme it needs first."""
    path, titles = built[request.param]
    page = open_page(chromium, PHONE, 900)
    page.goto(path.as_uri())
    yield request.param, page, titles
    page.context.close()


def show(page, width: int, scheme: str = "light") -> None:
    page.emulate_media(color_scheme=scheme)  # media queries re-apply without a reload
    page.set_viewport_size({"width": width, "height": 900})


def test_phone_width_has_no_horizontal_scrolling_and_shows_every_title(email, screenshot, blocked_requests):
    name, page, titles = email
    show(page, PHONE)
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1] == PHONE, f"{name} scrolls sideways at {PHONE} px: {widths}"
    headings = page.locator("h2.nl-entry-title")
    assert headings.all_inner_texts() == titles
    for heading in headings.all():
        assert heading.is_visible()
        box = heading.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE and box["height"] > 0
        assert heading.evaluate("e => e.scrollWidth <= e.clientWidth"), f"clipped title: {heading.inner_text()}"
    screenshot(page, f"{name}-{PHONE}")
    assert blocked_requests(page) == []


def test_desktop_width_centres_a_column_of_at_most_640_px(email, screenshot, blocked_requests):
    name, page, titles = email
    show(page, DESKTOP)
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('.nl-card')].map(e => {
             const b = e.getBoundingClientRect();
             return [b.left, document.documentElement.clientWidth - b.right, b.width];
           })"""
    )
    assert len(boxes) == len(titles) + 2  # overview, one per entry, related news
    for left, right, width in boxes:
        assert abs(left - right) <= 2, f"{name}: card off centre ({left:.1f} px left, {right:.1f} px right)"
        assert 0 < width <= MAX_CARD_WIDTH
        assert left > 0, "cards keep a margin on a desktop-width window"
    assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP
    assert page.locator("h2.nl-entry-title").all_inner_texts() == titles
    screenshot(page, f"{name}-{DESKTOP}")
    assert blocked_requests(page) == [], "the email loads something from outside"


def test_text_keeps_aa_contrast_in_light_and_dark_mode_at_both_widths(email, screenshot):
    name, page, _ = email
    low = []
    for scheme in ("light", "dark"):
        for width in (DESKTOP, PHONE):
            show(page, width, scheme)
            body = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (body == "rgb(244, 245, 247)") == (scheme == "light"), f"{scheme} mode page background: {body}"
            ratios = page.locator(READABLE).evaluate_all(CONTRAST_JS)
            assert len(ratios) > 20
            low += [(scheme, width, text, round(ratio, 2)) for text, ratio in ratios if ratio < 4.5]
    assert not low, f"{name}: text under WCAG AA 4.5:1: {low[:5]}"
    screenshot(page, f"{name}-{PHONE}-dark")
