"""The issue parser: our full-size digest, our example, the seed (where present) and edge
cases, field by field.

Error cases are also run through the real CLI in test_cli_build.py; here they are checked
in-process, where many variants cost nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from sample_issues import DIGEST, EXAMPLE, FIXTURES, SEED, read_plainly, seed_case

from newsletter.compose.issue.model import (
    Anchor,
    Code,
    CodeBlock,
    Emphasis,
    Heading,
    Image,
    Inline,
    ListBlock,
    Paragraph,
    Quote,
    Strong,
    Text,
)
from newsletter.compose.issue.parse import load_issue, parse_issue
from newsletter.errors import IssueError

ENTRY = """## 条目

> **分类：** 市场
> **来源：** [甲](https://a.example.com/1)

**核心洞察：** 洞察。
**内容简介：**

- 要点：文字
"""


def write(tmp_path: Path, text: str, name: str = "issue.md") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_matches_plain_reading(path: Path) -> None:
    issue = load_issue(path)
    plain = read_plainly(path)
    assert issue.title == plain.title
    assert [e.title for e in issue.entries] == [e.title for e in plain.entries]
    for entry, expected in zip(issue.entries, plain.entries, strict=True):
        assert entry.category == expected.category, entry.title
        assert [(s.text, s.url) for s in entry.sources] == expected.sources, entry.title
        assert entry.insight.plain == expected.insight, entry.title
        assert [(i.label, i.text.plain) for i in entry.summary] == [(i.label, i.text) for i in expected.summary], (
            entry.title
        )
        for item, expected_item in zip(entry.summary, expected.summary, strict=True):
            assert [(c.label, c.text.plain) for c in item.children] == [
                (c.label, c.text) for c in expected_item.children
            ]
        assert entry.lead_blocks == () and entry.blocks == (), f"{entry.title}: nothing in the seed format is left over"
    assert [(link.text, link.url) for link in issue.related] == plain.related
    assert issue.warnings == ()


# ---------------------------------------------------------------------------------------
# Our full-size digest, the seed and our example
# ---------------------------------------------------------------------------------------


def test_digest_has_ten_entries_in_four_categories_and_eighteen_related_links():
    issue = load_issue(DIGEST)
    assert len(issue.entries) == 10
    assert len(issue.related) == 18
    assert sum(len(e.sources) for e in issue.entries) == 12
    assert issue.related_title == "其他相关资讯"
    assert issue.title == "🤖 AI行业速递 - 2026年01月22日"
    assert issue.date == dt.date(2026, 1, 22)  # from the title: the file has no front matter
    assert issue.subject == issue.title
    assert issue.language == "zh-CN" and issue.list is None
    assert issue.slug == "2026-01-22"
    assert issue.categories == (("市场动态", 3), ("观点洞察", 3), ("技术前沿解读", 3), ("政策与合规", 1))


@pytest.mark.parametrize("path", [pytest.param(DIGEST, id="digest"), seed_case()])
def test_full_size_issue_every_field_of_every_entry_matches_a_line_by_line_reading(path):
    assert_matches_plain_reading(path)


def test_digest_first_and_last_entries_field_by_field():
    issue = load_issue(DIGEST)
    first = issue.entries[0]
    assert first.title == "云厂商与模型公司的算力长约：三年千亿订单背后的议价权转移"
    assert first.category == "市场动态"
    assert [(s.text, s.url) for s in first.sources] == [
        ("示例财经", "https://finance.example.com/2026/01/22/compute-contracts"),
        ("云端观察", "https://cloud.example.org/analysis/long-term-gpu-deals"),
    ]
    assert first.insight.plain.startswith("算力长约正在把模型公司与云厂商的关系从「按需租用」改写为「相互绑定」。")
    assert first.insight.plain.endswith("而不是在规模上与巨头正面竞争。")
    assert [item.label for item in first.summary] == ["订单规模", "付款结构", "风险条款", "市场反应", "行业影响"]
    assert first.summary[1].text.plain.startswith("合同普遍采用「预付款加阶梯价格」的方式")
    assert all(item.children == () for entry in issue.entries for item in entry.summary)
    last = issue.entries[-1]
    assert last.title.startswith("编程助手进入团队协作阶段")
    assert [(s.text, s.url) for s in last.sources] == [
        ("开发者视点", "https://dev.example.com/blog/team-coding-assistants")
    ]
    assert [item.label for item in last.summary][-1] == "度量方法"
    assert issue.related[0].text == "存储芯片价格连续三个月上涨：训练集群扩建推高高带宽内存需求"
    assert issue.related[-1].text.startswith("本刊招募特约作者")
    assert issue.related[-1].url == "https://indie.example.com/about/contributors"


@pytest.mark.seed
def test_seed_has_ten_entries_and_eighteen_related_links():
    issue = load_issue(SEED)
    assert len(issue.entries) == 10
    assert len(issue.related) == 18
    assert issue.related_title == "其他相关资讯"
    assert issue.title == "🤖 AI行业速递 - 2026年01月22日"
    assert issue.date == dt.date(2026, 1, 22)
    assert issue.subject == issue.title
    assert issue.language == "zh-CN" and issue.list is None
    assert issue.slug == "000_31559cfeefac81fc"


@pytest.mark.seed
def test_seed_first_and_last_entries_field_by_field():
    issue = load_issue(SEED)
    first = issue.entries[0]
    assert first.title == "微软与OpenAI的权力博弈：从资本救场到战略制衡，揭秘AI领域的多方角力"
    assert first.category == "市场动态"
    assert [(s.text, s.url) for s in first.sources] == [
        ("AIGC新智界", "https://mp.weixin.qq.com/s/ElxXHmDht2VKzfzDt81DXw"),
        ("量子位", "https://mp.weixin.qq.com/s/39Z2i_pT3jxSkL2yjlz6HQ"),
    ]
    assert first.insight.plain.startswith("微软与OpenAI的关系揭示了AI领域「资本-技术-控制权」的复杂博弈本质。")
    assert first.insight.plain.endswith("这将决定企业能否在资本与技术的天平上保持长期竞争力。")
    assert [item.label for item in first.summary] == [
        "微软紧急救场",
        "合作关系演变",
        "权力制衡策略",
        "马斯克诉讼争端",
        "战略转型",
    ]
    assert first.summary[3].text.plain.startswith("马斯克以「使命欺诈」和OpenAI背离非营利初衷为由索赔1340亿美元")
    last = issue.entries[-1]
    assert last.title.startswith("Node.js之父Ryan Dahl宣言")
    assert [(s.text, s.url) for s in last.sources] == [("量子位", "https://mp.weixin.qq.com/s/j1uTzTFZnftlEhimnT2LrQ")]
    assert issue.related[-1].text.startswith("量子位招聘AI内容专家")
    assert issue.related[-1].url == "https://mp.weixin.qq.com/s/QOwzQ9m_7Cm1I6sZSFvrHA"
    assert issue.categories == (("市场动态", 2), ("观点洞察", 3), ("技术前沿解读", 5))


def test_example_every_field_of_every_entry_matches_a_line_by_line_reading():
    assert_matches_plain_reading(EXAMPLE)


def test_example_issue_fields_and_the_unusual_ones():
    issue = load_issue(EXAMPLE)
    assert issue.date == dt.date(2026, 11, 30)
    assert issue.preheader.startswith("端侧模型进入手机主力机型")  # from the front matter
    assert [e.category for e in issue.entries] == ["市场动态", "政策与合规", "技术前沿解读", "观点洞察", "产品发布"]
    # 、 between a link and a source without one; | between two links.
    assert [(s.text, s.url) for s in issue.entries[1].sources] == [
        ("开放数据联盟", "https://data.example.net/announcements/provenance-2026"),
        ("编辑部整理", None),
    ]
    assert [s.url for s in issue.entries[2].sources] == [
        "https://compute.example.com/weekly/2026-47",
        "https://research.example.org/inference-cost-2026",
    ]
    assert [(s.text, s.url) for s in issue.entries[3].sources] == [("编辑部", None)]
    nested = issue.entries[1].summary[2]
    assert nested.label == "过渡安排"
    assert [(c.label, c.text.plain) for c in nested.children] == [
        ("例外情况", "公有领域作品和已明确 CC0 授权的内容可以批量声明。")
    ]
    spans = issue.entries[2].summary[1].text.spans + issue.entries[2].summary[3].text.spans
    assert Code("FP8") in spans
    assert Emphasis((Text("服务等级协议"),)) in spans
    assert issue.related[1].note == "预印本"
    assert issue.related[1].url == "https://lab.example.org/papers/low-bit-training"


# ---------------------------------------------------------------------------------------
# Labels, separators, sections
# ---------------------------------------------------------------------------------------


def test_english_labels_half_width_colons_and_colon_outside_the_bold():
    issue = load_issue(FIXTURES / "english_labels.md")
    assert [e.title for e in issue.entries] == ["Chips get cheaper", "Policy moves", "Plain labels without bold"]
    assert [e.category for e in issue.entries] == ["Markets", "Policy", "Research"]
    first, second, third = issue.entries
    assert first.insight.plain == "Inference costs fell five-fold in a year."
    assert [(i.label, i.text.plain) for i in first.summary] == [
        ("Cost", "0.8 per million tokens"),
        ("Supply", "more chips shipped"),
    ]
    assert [(c.label, c.text.plain) for c in first.summary[1].children] == [("Detail", "a nested item")]
    # `**Category**:`, `**Source**:`, `**Insight**:`, `**Summary**:` with the colon outside the bold.
    assert [(s.text, s.url) for s in second.sources] == [("Gov", "https://gov.example.com/x")]
    assert second.insight.plain == "Labels may keep their colon outside the bold."
    assert [(i.label, i.text.plain) for i in second.summary] == [("Scope", "large datasets only")]
    # Labels without any bold.
    assert third.insight.plain == "a plain label works too."
    assert [(i.label, i.text.plain) for i in third.summary] == [("Finding", "it works")]
    assert issue.warnings == ()


def test_sources_split_on_every_separator_and_keep_a_source_without_a_link():
    entry = load_issue(FIXTURES / "english_labels.md").entries[0]
    # separators in the fixture, in order: " , " " | " " ， " "、" " ｜ "
    assert [(s.text, s.url) for s in entry.sources] == [
        ("Compute Weekly", "https://compute.example.com/a"),
        ("Lab Notes", "https://lab.example.org/b"),
        ("Editors' desk", None),
        ("Daily", "https://daily.example.net/c"),
        ("Wire", None),
        ("Last", "https://last.example.com/d"),
    ]


@pytest.mark.parametrize("heading", ["Related", "Other news", "其他相关资讯", "相关资讯"])
def test_related_section_is_recognised_by_its_heading(heading):
    issue = parse_issue(
        f"# T 2026-01-01\n\n{ENTRY}\n## {heading}\n\n- [R](https://r.example.com/1) — note\n- Plain item\n"
    )
    assert len(issue.entries) == 1
    assert issue.related_title == heading
    assert [(link.text, link.url, link.note) for link in issue.related] == [
        ("R", "https://r.example.com/1", "note"),
        ("Plain item", None, ""),
    ]


def test_related_list_in_english_fixture_keeps_notes_and_plain_items():
    issue = load_issue(FIXTURES / "english_labels.md")
    assert [(link.text, link.url, link.note) for link in issue.related] == [
        ("One", "https://one.example.com/1", "first note"),
        ("Two", "https://two.example.com/2", ""),
        ("A headline without a link", None, ""),
    ]


# ---------------------------------------------------------------------------------------
# Front matter and dates
# ---------------------------------------------------------------------------------------


def test_front_matter_overrides_subject_preheader_date_language_and_list():
    issue = load_issue(FIXTURES / "front_matter.md")
    assert issue.subject == "Weekly: chips, policy and more"
    assert issue.preheader == "Three stories this week"
    assert issue.date == dt.date(2026, 2, 14)  # the title says 2026-01-01
    assert issue.language == "en"
    assert issue.list == "weekly-en"
    assert issue.title == "Weekly digest 2026-01-01"
    assert issue.entries[0].line == 10  # lines count from the top of the file, front matter included


def test_without_front_matter_subject_is_the_title_and_preheader_the_entry_titles():
    issue = parse_issue(f"# Title 2026-01-01\n\n{ENTRY}\n## Second\n\n> **分类：** x\n> **来源：** y\n")
    assert issue.subject == "Title 2026-01-01"
    assert issue.preheader == "条目 · Second"
    assert issue.language == "zh-CN"
    assert parse_issue(f"# T 2026-01-01\n\n{ENTRY}", default_language="en").language == "en"


@pytest.mark.parametrize(
    "title, date",
    [
        ("# 🤖 AI行业速递 - 2026年01月22日", dt.date(2026, 1, 22)),
        ("# AI行业速递 2026年1月2日", dt.date(2026, 1, 2)),
        ("# Digest - 2026-01-22", dt.date(2026, 1, 22)),
        ("# Digest 2026-3-4", dt.date(2026, 3, 4)),
    ],
)
def test_date_comes_from_the_title_in_both_forms(title, date):
    assert parse_issue(f"{title}\n\n{ENTRY}").date == date


def test_date_as_a_quoted_string_in_front_matter():
    issue = parse_issue(f"---\ndate: '2025-12-30'\n---\n# No date here\n\n{ENTRY}")
    assert issue.date == dt.date(2025, 12, 30)


def test_date_falls_back_to_the_file_name(tmp_path):
    issue = load_issue(write(tmp_path, f"# No date here\n\n{ENTRY}", name="2026-05-06.md"))
    assert issue.date == dt.date(2026, 5, 6)
    assert issue.slug == "2026-05-06"


# ---------------------------------------------------------------------------------------
# Markdown the parser does not recognise, inline Markdown, raw HTML, soft breaks
# ---------------------------------------------------------------------------------------


def test_unknown_blocks_are_kept_in_source_order_before_and_after_the_insight():
    entry = load_issue(FIXTURES / "unknown_blocks.md").entries[0]
    assert [type(b) for b in entry.lead_blocks] == [Paragraph, Paragraph, Paragraph]
    assert entry.lead_blocks[0].inline.spans == (Image("https://img.example.com/lead.png", "头图：芯片", "封面"),)
    assert entry.lead_blocks[1].inline.plain.startswith("开头段落")
    assert entry.lead_blocks[2].inline.plain == '<div class="raw">块级 HTML</div>'
    assert [type(b) for b in entry.blocks] == [Paragraph, Heading, ListBlock, CodeBlock, Quote]
    paragraph, heading, ordered, code, quote = entry.blocks
    assert paragraph.inline.plain == "After the summary, a paragraph."
    assert (heading.level, heading.inline.plain) == (3, "A sub-heading")
    assert ordered.ordered and ordered.start == 3
    assert [item[0].inline.plain for item in ordered.items] == ["third", "fourth"]
    assert (code.code, code.language) == ('print("<hello>")', "python")
    assert quote.blocks == (Paragraph(Inline((Text("a plain quote"),))),)
    assert [(i.label, i.text.plain) for i in entry.summary] == [("要点", "带 粗体 的文字"), ("", "没有标签的一条")]


def test_inline_markdown_becomes_bold_italic_code_and_link_spans():
    insight = load_issue(FIXTURES / "unknown_blocks.md").entries[0].insight
    assert Strong((Text("bold"),)) in insight.spans
    assert Emphasis((Text("italic"),)) in insight.spans
    assert Code("code <x>") in insight.spans
    assert Anchor("https://link.example.com/y", (Text("a link"),)) in insight.spans
    assert [a.url for a in insight.links()] == ["https://link.example.com/y"]


def test_raw_html_in_the_source_stays_literal_text():
    issue = load_issue(FIXTURES / "unknown_blocks.md")
    entry = issue.entries[0]
    assert entry.title == "条目 <b>标题</b> 与 强调"
    assert "<script>alert(1)</script>" in entry.lead_blocks[1].inline.plain
    assert issue.related[0].text == "相关 <一>"


def test_soft_line_breaks_join_cjk_without_a_space_and_latin_with_one():
    insight = load_issue(FIXTURES / "unknown_blocks.md").entries[0].insight.plain
    assert insight.startswith("中文第一行中文第二行，English words continue here with bold")
    english = load_issue(FIXTURES / "english_labels.md").entries[0].insight.plain
    assert english == "Inference costs fell five-fold in a year."
    paragraph = parse_issue(f"# T 2026-01-01\n\n{ENTRY}\n第一句\nsecond line\n三\n").entries[0].blocks[0]
    assert paragraph.inline.plain == "第一句second line三"


def test_hard_line_break_and_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.md"
    path.write_bytes(
        f"# T 2026-01-01\r\n\r\n{ENTRY}\r\nline one  \r\nline two\r\n".replace("\n", "\r\n")
        .replace("\r\r", "\r")
        .encode()
    )
    entry = load_issue(path).entries[0]
    assert entry.line == 3
    assert entry.blocks[0].inline.plain == "line one\nline two"


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbf" + f"# T 2026-01-01\n\n{ENTRY}".encode())
    assert load_issue(path).title == "T 2026-01-01"


def test_issue_model_is_immutable():
    issue = load_issue(EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue.title = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue.entries[0].category = "changed"  # type: ignore[misc]
    assert isinstance(issue.entries, tuple) and isinstance(issue.entries[0].summary, tuple)


# ---------------------------------------------------------------------------------------
# Warnings and errors, in-process
# ---------------------------------------------------------------------------------------


def test_entry_without_category_or_sources_gives_two_warnings_with_the_entry_line():
    issue = parse_issue(f"# T 2026-01-01\n\n{ENTRY}\n## Bare entry\n\nJust text.\n", path="x.md")
    assert [str(w) for w in issue.warnings] == [
        "x.md:13: warning: entry 'Bare entry' has no 分类 / Category",
        "x.md:13: warning: entry 'Bare entry' has no 来源 / Sources",
    ]


FM = "---\nsubject: S\n"
MALFORMED = {
    # name: (source, line, words the message must contain)
    "second_title": (f"# T 2026-01-01\n\n{ENTRY}\n# Again\n", 13, "second '# ' title"),
    "empty_entry_title": ("# T 2026-01-01\n\n##\n\ntext\n", 3, "title is empty"),
    "second_category": ("# T 2026-01-01\n\n## E\n\n> **分类：** a\n> **分类：** b\n", 6, "first is on line 5"),
    "summary_in_quote": ("# T 2026-01-01\n\n## E\n\n> **内容简介：**\n", 5, "inside a '>' quote"),
    "text_between_summary_and_list": (
        "# T 2026-01-01\n\n## E\n\n**内容简介：**\nstray\n\n- a：b\n",
        6,
        "followed directly by its list",
    ),
    "related_with_a_paragraph": (f"# T 2026-01-01\n\n{ENTRY}\n## 其他相关资讯\n\nnot a list\n", 15, "list of links"),
    "empty_related": (f"# T 2026-01-01\n\n{ENTRY}\n## 其他相关资讯\n", 13, "related-news section is empty"),
    "image_without_source": ("# T 2026-01-01\n\n## E\n\n![alt]()\n", 5, "has no source"),
    "no_entries": ("# T 2026-01-01\n", 1, "no entries"),
    "no_date": (f"# Title\n\n{ENTRY}", 1, "no issue date"),
    "impossible_date_in_title": (f"# T 2026-02-30\n\n{ENTRY}", 1, "not a real date"),
    "front_matter_not_a_mapping": (f"---\njust words\n---\n# T 2026-01-01\n\n{ENTRY}", 2, "key: value"),
    "front_matter_list_value": (f"{FM}list: [a, b]\n---\n# T 2026-01-01\n\n{ENTRY}", 3, "single value"),
    "front_matter_empty_value": (f"{FM}preheader:\n---\n# T 2026-01-01\n\n{ENTRY}", 3, "is empty"),
    "front_matter_date_not_a_date": (f"{FM}date: tomorrow\n---\n# T\n\n{ENTRY}", 3, "not a date"),
    "front_matter_impossible_date": (f"{FM}date: 2026-13-01\n---\n# T\n\n{ENTRY}", 3, "not a real date"),
    "slot_mark_in_body": (f"# T 2026-01-01\n\n{ENTRY}\nsee %%nl:view_url%% here\n", 13, "reserved"),
    "slot_mark_in_front_matter": (
        f"---\npreheader: 'x %%nl:unsubscribe_url%% y'\n---\n# T 2026-01-01\n\n{ENTRY}",
        2,
        "reserved",
    ),
    "summary_item_without_text": (
        "# T 2026-01-01\n\n## E\n\n**内容简介：**\n\n- a：b\n- 标签：\n",
        8,
        "'标签' has nothing after",
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_issue_error_names_the_line(name):
    source, line, words = MALFORMED[name]
    with pytest.raises(IssueError) as caught:
        parse_issue(source, path="bad.md")
    message = str(caught.value)
    assert message.startswith(f"bad.md:{line}: "), message
    assert words in message
    assert "\n" not in message
