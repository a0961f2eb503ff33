"""The public archive: `/`, `/issues/SLUG` (the emails' view-in-browser target) and the Atom
feed, over real HTTP, with a draft that must stay private and an issue whose text needs
escaping everywhere."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest

from newsletter.sending.campaign import run_send
from newsletter.sending.plan import SendOptions, plan_send
from newsletter.store import ledger

pytest.register_assert_rewrite("tests.web_site")
from tests.send_world import World
from tests.web_site import Site, html_part, served, text_part

pytest_plugins = ["tests.web_site"]

ATOM = "{http://www.w3.org/2005/Atom}"

# An English issue whose every field holds characters HTML and XML must escape.
TRICKY_ISSUE = """---
subject: "Tools & <Tricks> weekly"
preheader: Ampersands & angle <brackets> survive
date: 2026-12-07
language: en
---
# Tools & <Tricks> weekly

## Parsers & <script>alert("x")</script>

> **Category:** Security & Safety
> **Sources:** [Example & Co](https://example.com/a?x=1&y=2)

**Key insight:** Escaping matters: <b>not bold</b> & "quotes" stay text.

**Summary:**

- Point: text & more <i>tags</i>.
"""

DRAFT_ISSUE = """# Draft that was never sent

## Secret story

> **Category:** Internal
> **Sources:** [Draft](https://draft.example.com/)

**Key insight:** Nobody outside should see this.

**Summary:**

- Point: unpublished.
"""


def publish(site: Site, name: str, text: str, *, send: bool = True) -> Path:
    path = site.world.root / "issues" / name
    path.write_text(text, encoding="utf-8")
    plan = plan_send(site.world.settings, site.world.store, path, SendOptions())
    if send:
        run_send(plan)
    return path


@pytest.fixture(scope="module")
def published(site: Site) -> Site:
    site.world.add_subscribers(2)
    site.send()  # the example issue, 2026-11-30, in Chinese
    publish(site, "2026-12-07-tools.md", TRICKY_ISSUE)
    publish(site, "2026-12-24-draft.md", DRAFT_ISSUE, send=False)
    return site


def test_the_archive_lists_sent_issues_newest_first_and_never_a_draft(published: Site):
    with published.client() as browser:
        page = browser.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    titles = re.findall(r'<a href="[^"]*/issues/([^"]+)" lang="[^"]+">([^<]+)</a>', page.text)
    assert [slug for slug, _ in titles] == ["2026-12-07-tools", "2026-11-30"]
    assert "Tools &amp; &lt;Tricks&gt; weekly" in page.text
    assert "<Tricks>" not in page.text
    assert "Draft that was never sent" not in page.text
    assert '<html lang="zh-CN">' in page.text
    assert "2026年11月30日" in page.text and "2026-12-07" in page.text


def test_an_issue_page_is_the_stored_web_version_with_nothing_personal(published: Site):
    with published.world.store.read() as conn:
        stored = ledger.get_issue(conn, "2026-11-30")
    with published.client() as browser:
        page = browser.get("/issues/2026-11-30")
    assert page.status_code == 200
    assert page.text == stored.web_html
    for personal in ("/u/", "/o/", "/c/", "reader0@example.org", "reader1@example.org", "%%nl:"):
        assert personal not in page.text
    assert "public" in page.headers["cache-control"]


def test_the_view_in_browser_link_of_an_email_opens_the_issue_page(published: Site):
    view = f"{published.url}/issues/2026-11-30"
    (message,) = [
        message
        for message in published.messages()
        if message["To"].addresses[0].addr_spec == "reader1@example.org" and view in text_part(message)
    ]
    assert view in html_part(message)
    with published.client() as browser:
        page = browser.get(view)
    assert page.status_code == 200
    assert "端侧大模型走进千元机" in page.text


def test_issue_text_is_escaped_on_its_page(published: Site):
    with published.client() as browser:
        page = browser.get("/issues/2026-12-07-tools")
    assert page.status_code == 200
    assert '<html lang="en">' in page.text
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text
    assert "<b>not bold</b>" not in page.text


def test_a_draft_and_an_unknown_slug_are_404_pages(published: Site):
    with published.client() as browser:
        for path in ("/issues/2026-12-24-draft", "/issues/no-such-issue", "/issues/..%2f..%2fetc", "/nothing/here"):
            page = browser.get(path)
            assert page.status_code == 404, path
            assert "找不到页面" in page.text
            assert '<html lang="zh-CN">' in page.text


def test_the_feed_is_atom_with_full_escaped_content(published: Site):
    with published.client() as reader:
        answer = reader.get("/feed.xml")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = ET.fromstring(answer.content)  # well-formed XML, or this raises
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}title") == "AI行业速递"
    assert feed.findtext(f"{ATOM}id") == f"{published.url}/"
    assert feed.find(f"{ATOM}author/{ATOM}name").text == "AI行业速递"
    self_link = [link for link in feed.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert self_link[0].get("href") == f"{published.url}/feed.xml"
    entries = feed.findall(f"{ATOM}entry")
    assert [entry.findtext(f"{ATOM}id") for entry in entries] == [
        f"{published.url}/issues/2026-12-07-tools",
        f"{published.url}/issues/2026-11-30",
    ]
    tricky, example = entries
    assert tricky.findtext(f"{ATOM}title") == "Tools & <Tricks> weekly"
    assert tricky.findtext(f"{ATOM}summary") == "Ampersands & angle <brackets> survive"
    content = tricky.find(f"{ATOM}content")
    assert content.get("type") == "html"
    # Once unescaped by the feed reader, the content is the page's article HTML, in which
    # the issue's own text is still escaped.
    assert "&lt;script&gt;" in content.text and "<script>" not in content.text
    assert "<style>" not in content.text and "<html" not in content.text
    # Full content, not an excerpt: every entry of the example issue is in it.
    assert "端侧大模型走进千元机" in example.find(f"{ATOM}content").text
    assert "推理芯片价格战" in example.find(f"{ATOM}content").text
    # RFC 3339 times; the feed was updated when its newest entry was.
    updated = [datetime.fromisoformat(entry.findtext(f"{ATOM}updated")) for entry in entries]
    assert feed.findtext(f"{ATOM}updated") == max(entry.findtext(f"{ATOM}updated") for entry in entries)
    assert all(moment.tzinfo is not None for moment in updated)
    assert "Draft that was never sent" not in answer.text


def test_feed_entries_are_dated_on_the_day_the_archive_shows(published: Site):
    with published.client() as reader:
        feed = ET.fromstring(reader.get("/feed.xml").content)
        archive = reader.get("/").text
    dates = {
        entry.findtext(f"{ATOM}id").rsplit("/", 1)[1]: datetime.fromisoformat(entry.findtext(f"{ATOM}published"))
        for entry in feed.findall(f"{ATOM}entry")
    }
    # The example issue is dated 2026-11-30 and was sent today: the feed keeps its date.
    assert dates["2026-11-30"].astimezone().date().isoformat() == "2026-11-30"
    assert dates["2026-12-07-tools"].astimezone().date().isoformat() == "2026-12-07"
    assert 'datetime="2026-11-30"' in archive and 'datetime="2026-12-07"' in archive


@pytest.mark.parametrize("path", ["/feed.xml", "/issues/2026-11-30", "/"])
def test_archive_answers_carry_validators_and_a_reader_holding_them_gets_304(published: Site, path: str):
    with published.client() as reader:
        first = reader.get(path)
        tag, modified = first.headers["etag"], first.headers["last-modified"]
        assert re.fullmatch(r'"[0-9a-f]{32}"', tag)
        assert modified.endswith(" GMT")
        assert reader.get(path).headers["etag"] == tag  # the same bytes, the same tag

        by_tag = reader.get(path, headers={"If-None-Match": tag})
        by_weak_tag = reader.get(path, headers={"If-None-Match": f'"other", W/{tag}'})
        by_date = reader.get(path, headers={"If-Modified-Since": modified})
        assert [by_tag.status_code, by_weak_tag.status_code, by_date.status_code] == [304, 304, 304]
        assert by_tag.content == b"" and by_tag.headers["etag"] == tag

        # Another tag wins over a matching date (RFC 9110, 13.2.2); an older date or a bad
        # one gets the whole answer.
        stale_tag = reader.get(path, headers={"If-None-Match": '"0000"', "If-Modified-Since": modified})
        older = reader.get(path, headers={"If-Modified-Since": "Mon, 01 Jan 2024 00:00:00 GMT"})
        garbage = reader.get(path, headers={"If-Modified-Since": "yesterday"})
        for answer in (stale_tag, older, garbage):
            assert answer.status_code == 200 and answer.content == first.content


def test_pages_carry_the_security_headers(published: Site):
    with published.client() as browser:
        for path in ("/", "/issues/2026-11-30", "/subscribe", "/nothing"):
            headers = browser.get(path).headers
            assert "default-src 'none'" in headers["content-security-policy"], path
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "same-origin"


def test_an_archive_with_nothing_sent_says_so(database_url: str, tmp_path: Path):
    world = World(tmp_path, database_url)
    try:
        with served(world) as running, running.client() as browser:
            page = browser.get("/")
            feed = ET.fromstring(browser.get("/feed.xml").content)
        assert page.status_code == 200
        assert "还没有发出的期刊。" in page.text
        assert feed.findall(f"{ATOM}entry") == []
        assert feed.findtext(f"{ATOM}updated")
    finally:
        world.close()
