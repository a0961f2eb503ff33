"""Stats by story: clicks through the real `/c/` redirect on the links of two entries,
then `newsletter stats` (text and --json) and `/stats/SLUG` in Chromium show them per
entry, per category and per link with its words and entry."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from newsletter.stats import issue_stats
from newsletter.store.schema import deliveries, utcnow
from newsletter.web.app import create_app
from newsletter.web.context import WebContext

pytest.register_assert_rewrite("tests.send_world")
from tests.send_world import World, parse_message

pytest_plugins = ["tests.send_world", "browser", "http_server"]

PASSWORD = "editor-password-for-tests"
FIRST = "端侧大模型走进千元机：3B 参数模型首次成为国产手机出厂标配"
THIRD = "推理芯片价格战：每百万 Token 成本一年下降 80%"
# A person's browser: scanners' agents count as machines.
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"


def tracked_href(html: str, words: str) -> str:
    match = re.search(r'<a [^>]*href="([^"]+)"[^>]*>' + re.escape(words) + "</a>", html)
    assert match, f"no link {words!r}"
    return match.group(1).replace("&amp;", "&")


def html_of(world: World, address: str) -> str:
    for path in world.outbox_files():
        message = parse_message(path.read_bytes())
        if message["To"].addresses[0].addr_spec == address:
            return message.get_body(("html",)).get_content()
    raise AssertionError(f"no message to {address}")


@pytest.fixture
def clicked(world: World, serve_asgi):
    """Three readers got the example issue; two clicked links of entries 1 and 3."""
    world.add_subscribers(3)
    world.configure("web", admin_password=PASSWORD)
    assert world.send().complete
    # Sent an hour ago: a click seconds after sending would be judged a link scanner's.
    with world.store.begin() as conn:
        conn.execute(sa.update(deliveries).values(sent_at=utcnow() - timedelta(hours=1)))
    app = create_app(WebContext.create(world.settings, world.store))
    # reader0 clicks one link twice, as if a minute apart: within the app's replay window
    # (newsletter/web/tracking.py) the second would be the same click.
    app.state.recent_hits.seconds = 0
    base = serve_asgi(app)
    clicks = [
        ("reader0@example.org", "示例科技日报"),  # entry 1's source
        ("reader0@example.org", "示例科技日报"),
        ("reader1@example.org", "终端观察"),  # entry 1's other source
        ("reader1@example.org", "算力周刊"),  # entry 3's source
    ]
    with httpx.Client(headers={"User-Agent": BROWSER}) as client:
        for address, words in clicks:
            href = tracked_href(html_of(world, address), words)
            assert urlsplit(href).path.startswith("/c/")
            answer = client.get(base + urlsplit(href).path, follow_redirects=False)
            assert answer.status_code == 302, answer.text
    app.state.recorder.flush()
    return world


def test_clicks_are_counted_per_entry_category_and_link_with_its_words(clicked: World):
    stats = issue_stats(clicked.store, "2026-11-30")
    entries = {entry.title: entry for entry in stats.entries}
    assert (entries[FIRST].clicks, entries[FIRST].people, entries[FIRST].category) == (3, 2, "市场动态")
    assert (entries[THIRD].clicks, entries[THIRD].people, entries[THIRD].category) == (1, 1, "技术前沿解读")
    assert sum(entry.clicks for entry in stats.entries) == 4
    # In the issue's order, then the related news; the editors' own entry has no link.
    assert [e.title for e in stats.entries] == [
        FIRST,
        "开源数据集迎来“来源标注”新规：训练数据必须可追溯到原始授权",
        THIRD,
        "多模态检索进入办公套件：用自然语言搜索会议录像与白板照片",
        "其他相关资讯",
    ]
    categories = {category.category: category for category in stats.categories}
    assert (categories["市场动态"].clicks, categories["市场动态"].people) == (3, 2)
    assert (categories["技术前沿解读"].clicks, categories["技术前沿解读"].people) == (1, 1)
    assert stats.categories[0].category == "市场动态"  # most clicked first
    by_words = {link.text: link for link in stats.links}
    assert (by_words["示例科技日报"].clicks, by_words["示例科技日报"].entry) == (2, FIRST)
    assert (by_words["算力周刊"].clicks, by_words["算力周刊"].category) == (1, "技术前沿解读")


def test_stats_json_and_text_carry_the_entries(clicked: World):
    result = clicked.cli("stats", "2026-11-30", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    first = next(entry for entry in data["entries"] if entry["title"] == FIRST)
    assert {key: first[key] for key in ("title", "category", "clicks", "people")} == {
        "title": FIRST,
        "category": "市场动态",
        "clicks": 3,
        "people": 2,
    }
    text = clicked.cli("stats", "2026-11-30").stdout
    assert "clicks per entry" in text and "clicks per category" in text and "示例科技日报" in text


@pytest.mark.browser
def test_the_stats_page_shows_entries_and_its_headers_never_break_inside_a_word(clicked: World, serve_asgi, new_page):
    app = create_app(WebContext.create(clicked.settings, clicked.store))
    base = serve_asgi(app)
    page = new_page(width=375, http_credentials={"username": "editor", "password": PASSWORD})
    page.goto(f"{base}/stats/2026-11-30")
    first = page.locator("#entries tbody tr", has_text=FIRST)
    assert first.locator("td").all_inner_texts() == ["市场动态", "3", "0", "2"]
    link_row = page.locator("#links tbody tr", has_text="示例科技日报")
    assert FIRST in link_row.inner_text()
    # Each header's text lies on one line: a Range over it has one box per line.
    lines = page.evaluate(
        """() => [...document.querySelectorAll("table.data thead th")].map(th => {
            const range = document.createRange(); range.selectNodeContents(th);
            return [th.textContent, new Set([...range.getClientRects()].map(r => Math.round(r.top))).size];
        })"""
    )
    assert lines and all(count == 1 for _, count in lines), lines
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
