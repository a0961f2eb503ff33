"""Links already sent in an earlier issue of the same list: a warning on the line of the
repeated link, from `newsletter check` and from the send's plan, read from the store's links
of issues whose send began."""

from __future__ import annotations

import pytest

from newsletter.compose.build import check_issue

pytest.register_assert_rewrite("tests.send_world")
from tests.send_world import World

pytest_plugins = ["tests.send_world"]

REPEATED = "https://compute.example.com/weekly/2026-47"  # a source of the example issue

LATER = f"""# 🤖 AI行业速递 - 2026年12月07日

## 一条新闻

> **分类：** 市场动态
> **来源：** [新来源](https://fresh.example.net/story)

**核心洞察：** 新的一期。
**内容简介：**

- 回顾：上期提到的[价格战]({REPEATED})仍在继续。
"""


def write_later(world: World, text: str = LATER):
    path = world.root / "issues" / "2026-12-07.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_link_sent_in_an_earlier_issue_of_the_list_warns_on_its_line(world: World):
    world.add_subscribers(2)
    assert world.send().complete
    later = write_later(world)
    _, findings = check_issue(world.settings, later)
    repeats = [f for f in findings if f.check == "repeat"]
    assert [(f.line, f.severity) for f in repeats] == [(11, "warning")]
    assert f"link {REPEATED} was already sent in issue 2026-11-30 (2026-11-30)" in repeats[0].message
    # The earlier issue itself repeats nothing.
    assert [f for f in check_issue(world.settings, world.issue_file)[1] if f.check == "repeat"] == []


def test_the_plan_of_a_later_send_carries_the_repeat_warning(world: World):
    world.add_subscribers(2)
    world.send()
    later = write_later(world)
    from newsletter.sending.plan import SendOptions, plan_send

    plan = plan_send(world.settings, world.store, later, SendOptions())
    repeats = [f for f in plan.findings if f.check == "repeat"]
    assert [(f.line, f.severity) for f in repeats] == [(11, "warning")] and not plan.blocked


def test_links_of_an_issue_never_sent_or_of_another_list_do_not_count(world: World):
    world.add_subscribers(2)
    world.plan()  # stored, never sent
    later = write_later(world)
    assert [f for f in check_issue(world.settings, later)[1] if f.check == "repeat"] == []
    world.add_subscribers(1, list_slug="weekly", prefix="weekly")
    world.send(list_slug="weekly")
    # Sent, but to another list than the later issue's (the default).
    assert [f for f in check_issue(world.settings, later)[1] if f.check == "repeat"] == []


def test_check_without_a_database_creates_none(tmp_path):
    from newsletter.config import load_settings

    settings = load_settings(environ={}, cwd=tmp_path)
    path = tmp_path / "2026-12-07.md"
    path.write_text(LATER, encoding="utf-8")
    # Its subject's only Latin letters ("AI") are capitals: that warning, and nothing else.
    assert [f.check for f in check_issue(settings, path)[1]] == ["subject-capitals"]
    assert not (tmp_path / "newsletter.db").exists()
