"""Excerpts that end where a reader would: the preheader and the feed summary, cut at a word
or ideograph boundary in a budget of columns (a CJK character fills two), with an ellipsis."""

from __future__ import annotations

import unicodedata
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

import pytest

from newsletter.compose.excerpt import ELLIPSIS, excerpt, width
from newsletter.compose.issue.parse import PREHEADER_COLUMNS, load_issue
from newsletter.config import load_settings, replace
from newsletter.store.archive import SentIssue
from newsletter.web.archive import FEED_SUMMARY_COLUMNS, atom_feed
from newsletter.web.context import WebContext

TITLES = "微软与OpenAI的权力博弈：从资本救场到战略制衡 · WAIC UP! 2026：AI从单一模型向复杂系统进化 · 液态神经网络新突破"


def test_text_that_fits_is_kept_whole_and_gets_no_ellipsis():
    assert excerpt("短文本 short text", 40) == "短文本 short text"
    assert excerpt("  spaces   collapse \n here ", 40) == "spaces collapse here"


@pytest.mark.parametrize("limit", range(8, 90, 7))
def test_a_cut_fits_the_columns_and_ends_in_an_ellipsis(limit):
    cut = excerpt(TITLES, limit)
    assert cut.endswith(ELLIPSIS)
    assert width(cut) <= limit
    assert TITLES.startswith(cut[:-1])


def test_cjk_characters_count_two_columns():
    assert width("中文") == 4 and width("ab") == 2 and width("🤖") == 2
    assert excerpt("一二三四五六七八九十", 9) == "一二三四…"


@pytest.mark.parametrize("limit", range(6, 60, 3))
def test_a_latin_word_is_never_split(limit):
    text = "The quick brown fox jumps over the lazy dog while 端侧模型 keeps running"
    cut = excerpt(text, limit)[:-1]
    rest = text[len(cut) :]
    # The cut falls at a space, or next to a CJK character, never between two letters.
    assert not (cut and rest and cut[-1].isascii() and cut[-1].isalnum() and rest[0].isascii() and rest[0].isalnum())


def test_a_phrase_end_near_the_limit_is_preferred_and_separators_are_not_left_dangling():
    assert excerpt(TITLES, 50) == "微软与OpenAI的权力博弈：从资本救场到战略制衡…"
    assert not excerpt("甲乙丙 · 丁戊己庚辛壬癸子丑寅卯", 12).endswith(("·…", " …"))


def test_no_cut_splits_a_user_perceived_character():
    family = "👨\u200d👩\u200d👧\u200d👦"
    assert excerpt(family * 6, 7) == family * 3 + ELLIPSIS
    flags = "🇨🇳🇯🇵🇩🇪🇫🇷🇬🇧"
    for limit in range(2, 10):
        assert len(excerpt(flags, limit)[:-1]) % 2 == 0, "a flag is two regional indicators"
    accented = unicodedata.normalize("NFD", "é") * 8  # e + COMBINING ACUTE ACCENT
    for limit in range(2, 8):
        cut = excerpt(accented + " x", limit)[:-1]
        assert not cut or not unicodedata.combining(accented[len(cut)]), "an accent parted from its letter"


def test_one_word_longer_than_the_room_is_cut_hard():
    assert excerpt("https://example.com/" + "a" * 80, 20) == "https://example.com…"


def test_the_default_preheader_is_the_titles_cut_with_an_ellipsis(tmp_path):
    entry = "## {title}\n\n> **分类：** 分类\n> **来源：** [来源](https://example.com/)\n\n**核心洞察：** 正文。\n"
    titles = ["端侧大模型走进千元机：3B 参数模型首次成为国产手机出厂标配"] * 6
    path = tmp_path / "2026-01-01.md"
    path.write_text("# 测试 2026-01-01\n\n" + "\n---\n\n".join(entry.format(title=t) for t in titles), encoding="utf-8")
    preheader = load_issue(path).preheader
    assert preheader.endswith(ELLIPSIS) and width(preheader) <= PREHEADER_COLUMNS
    assert " · ".join(titles).startswith(preheader[:-1])


def test_the_feed_summary_of_a_long_preheader_is_cut_at_a_boundary_with_an_ellipsis(tmp_path):
    settings = replace(load_settings(environ={}, cwd=tmp_path), newsletter={"secret": "feed-test-secret"})
    long = "An editor's long preheader that goes on " * 20
    issue = SentIssue(
        slug="2026-01-01",
        title="T",
        subject="T",
        preheader=long.strip(),
        issue_date=date(2026, 1, 1),
        language="en",
        snapshot_at=datetime(2026, 1, 1, tzinfo=UTC),
        completed_at=None,
        web_html="<main><p>x</p></main>",
    )
    feed = ET.fromstring(atom_feed(WebContext.create(settings, store=None), [issue]))  # type: ignore[arg-type]
    summary = feed.findtext("{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}summary")
    assert summary.endswith(ELLIPSIS) and FEED_SUMMARY_COLUMNS - 10 <= width(summary) <= FEED_SUMMARY_COLUMNS
    assert long.startswith(summary[:-1]) and long[len(summary) - 1] == " ", "cut after a whole word"
