"""Pre-send checks: each kind of finding, triggered by a crafted issue or template, and
`newsletter check`'s exit codes through the real command."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest
from cli_in_process import run_newsletter
from sample_issues import DIGEST, EXAMPLE, FIXTURES, seed_case

from newsletter.compose.build import check_issue, render_issue
from newsletter.compose.checks import (
    GMAIL_CLIP_BYTES,
    SIZE_WARNING_BYTES,
    check_rendered,
    display_width,
    sized_html,
)
from newsletter.compose.render import (
    EMAIL_TEMPLATE,
    TEXT_TEMPLATE,
    WEB_TEMPLATE,
    packaged_templates_dir,
)
from newsletter.config import load_settings
from newsletter.errors import RenderError

HEAD = "# 检查 2026-01-01\n\n"
ENTRY = """## 条目 {n}

> **分类：** 分类{k}
> **来源：** [来源](https://source.example.com/{n})

**核心洞察：** {text}
**内容简介：**

- 要点：{text}
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(environ={}, cwd=tmp_path_factory.mktemp("no-config"))


def write_issue(
    tmp_path: Path, body: str = "", *, front: str = "", entries: int = 1, text: str = "正文。", name="issue.md"
) -> Path:
    parts = [f"---\n{front}---\n" if front else "", HEAD]
    parts += [ENTRY.format(n=n, k=n % 3, text=text) + "\n" for n in range(entries)]
    parts.append(body)
    path = tmp_path / name
    path.write_text("".join(parts), encoding="utf-8")
    return path


def findings_of(settings, path: Path, templates: Path | None = None) -> list:
    return check_issue(settings, path, templates_dir=templates)[1]


def kinds(findings) -> set[tuple[str, str]]:
    return {(f.check, f.severity) for f in findings}


def custom_template(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A templates directory holding a copy of one packaged template with one change."""
    directory = tmp_path / "templates"
    directory.mkdir(exist_ok=True)
    text = (packaged_templates_dir() / name).read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {name}; update this test"
    (directory / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    return directory


def test_a_clean_issue_has_no_findings(tmp_path, settings):
    assert findings_of(settings, write_issue(tmp_path)) == []


@pytest.mark.parametrize("path", [pytest.param(EXAMPLE, id="example"), pytest.param(DIGEST, id="digest"), seed_case()])
def test_sample_issues_pass_every_check(path, settings):
    # Every sample's subject is "🤖 AI行业速递 - …": their only Latin letters are capitals, which
    # SpamAssassin scores as SUBJ_ALL_CAPS; that is the editor's call, so only a warning.
    assert [(f.check, f.severity) for f in findings_of(settings, path)] == [("subject-capitals", "warning")]


# ---------------------------------------------------------------------------------------
# Size against Gmail's clip
# ---------------------------------------------------------------------------------------


def issue_of_size(tmp_path: Path, settings, low: int, high: int) -> Path:
    """An issue whose email HTML, as received, is between `low` and `high` bytes."""
    text = "推理成本的快速下降正在改变产品的定价逻辑，" * 12

    def size(entries: int) -> int:
        path = write_issue(tmp_path, entries=entries, text=text)
        return len(sized_html(render_issue(settings, path), settings).encode())

    one, two = size(1), size(2)
    entries = max(1, (low + high) // 2 - one) // (two - one) + 1
    for _ in range(20):
        current = size(entries)
        if low < current <= high:
            return write_issue(tmp_path, entries=entries, text=text)
        entries += 1 if current <= low else -1
    raise AssertionError(f"could not make an issue between {low} and {high} bytes")


def test_email_over_gmails_102_kb_clip_fails(tmp_path, settings):
    path = issue_of_size(tmp_path, settings, GMAIL_CLIP_BYTES, GMAIL_CLIP_BYTES + 30_000)
    findings = findings_of(settings, path)
    assert kinds(findings) == {("size", "error")}
    assert "Gmail clips anything over 102 KB" in str(findings[0])


def test_email_between_90_and_102_kb_warns(tmp_path, settings):
    path = issue_of_size(tmp_path, settings, SIZE_WARNING_BYTES, GMAIL_CLIP_BYTES)
    findings = findings_of(settings, path)
    assert kinds(findings) == {("size", "warning")}
    assert not any(f.failed for f in findings)


def test_size_counts_the_tracked_links_a_subscriber_receives(tmp_path, settings):
    rendered = render_issue(settings, write_issue(tmp_path, entries=3))
    preview_size = len(rendered.preview(settings)[0].encode())
    assert len(sized_html(rendered, settings).encode()) > preview_size
    untracked = dataclasses.replace(
        settings, tracking=dataclasses.replace(settings.tracking, clicks=False, opens=False)
    )
    assert len(sized_html(rendered, untracked).encode()) < len(sized_html(rendered, settings).encode())


# ---------------------------------------------------------------------------------------
# Markup: alt text, lang, links, script
# ---------------------------------------------------------------------------------------


def test_image_without_alt_text_in_the_issue_fails(tmp_path, settings):
    path = write_issue(
        tmp_path, "插图：\n\n![](https://img.example.com/chart.png)\n\n![图表说明](https://img.example.com/ok.png)\n"
    )
    findings = findings_of(settings, path)
    assert kinds(findings) == {("alt", "error")}
    assert len(findings) == 1
    assert "'https://img.example.com/chart.png' has no alt text" in findings[0].message


def test_image_without_alt_attribute_in_a_template_fails(tmp_path, settings):
    templates = custom_template(
        tmp_path,
        EMAIL_TEMPLATE,
        '<h1 class="nl-title">',
        '<img src="https://img.example.com/logo.png" width="40" /><h1 class="nl-title">',
    )
    findings = findings_of(settings, write_issue(tmp_path), templates)
    assert kinds(findings) == {("alt", "error")}


def test_template_without_lang_fails(tmp_path, settings):
    templates = custom_template(tmp_path, EMAIL_TEMPLATE, '<mjml lang="{{ issue.language }}" dir="ltr">', "<mjml>")
    findings = findings_of(settings, write_issue(tmp_path), templates)
    assert kinds(findings) == {("lang", "error")}
    assert "no lang attribute" in findings[0].message


@pytest.mark.parametrize(
    "link, reason",
    [
        ("/archive/2026-01-01", "is relative"),
        ("page.html", "is relative"),
        ("ftp://files.example.com/a", "is neither http(s) nor mailto"),
    ],
)
def test_relative_or_odd_scheme_link_in_the_issue_fails(tmp_path, settings, link, reason):
    path = write_issue(tmp_path, f"详见[这里]({link})。\n")
    findings = findings_of(settings, path)
    assert kinds(findings) == {("links", "error")}
    assert f"link {link!r} {reason}" in findings[0].message


def test_mailto_and_https_links_pass(tmp_path, settings):
    path = write_issue(tmp_path, "写信给[编辑](mailto:editors@example.com)或看[网页](https://www.example.com/)。\n")
    assert findings_of(settings, path) == []


def test_empty_and_javascript_links_in_a_template_fail(tmp_path, settings):
    templates = custom_template(
        tmp_path,
        EMAIL_TEMPLATE,
        '<p class="nl-foot-p">© ',
        '<p><a href="">空</a> <a href="javascript:alert(1)">脚本</a></p><p class="nl-foot-p">© ',
    )
    findings = findings_of(settings, write_issue(tmp_path), templates)
    messages = [f.message for f in findings if f.check == "links"]
    assert kinds(findings) == {("links", "error")}
    assert any("link '' is empty" in m for m in messages)
    assert any("link 'javascript:alert(1)' is neither http(s) nor mailto" in m for m in messages)


def test_script_in_a_template_fails(tmp_path, settings):
    templates = custom_template(
        tmp_path,
        EMAIL_TEMPLATE,
        "<mj-raw>{{ slot('open_pixel') }}</mj-raw>",
        "<mj-raw><script>track()</script>{{ slot('open_pixel') }}</mj-raw>",
    )
    findings = findings_of(settings, write_issue(tmp_path), templates)
    assert kinds(findings) == {("script", "error")}


# ---------------------------------------------------------------------------------------
# Leftover template syntax and slots
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, old, new, part",
    [
        (TEXT_TEMPLATE, "{{ issue.title }}\n", "{{ issue.title }}\n{{ '{{' }} subscriber.name }}\n", "text part"),
        (WEB_TEMPLATE, "<h1>{{ issue.title }}</h1>", "<h1>{{ issue.title }} {{ '{%' }} endif %}</h1>", "web page"),
        (
            EMAIL_TEMPLATE,
            '<h1 class="nl-title">{{ issue.title }}</h1>',
            '<h1 class="nl-title">{{ issue.title }} {{ "{{" }}name}}</h1>',
            "HTML part",
        ),
    ],
)
def test_leftover_template_syntax_in_a_part_fails(tmp_path, settings, name, old, new, part):
    findings = findings_of(settings, write_issue(tmp_path), custom_template(tmp_path, name, old, new))
    assert kinds(findings) == {("leftovers", "error")}
    assert f"leftover template syntax in the {part}" in findings[0].message


@pytest.mark.parametrize("name", [TEXT_TEMPLATE, EMAIL_TEMPLATE])
def test_slot_that_nothing_fills_is_a_render_error_naming_the_template(tmp_path, settings, name):
    old = "{{ issue.title }}" if name == TEXT_TEMPLATE else '<h1 class="nl-title">'
    templates = custom_template(tmp_path, name, old, old + "{{ slot('unsubscribe') }}")
    with pytest.raises(RenderError, match=rf"^{re.escape(name)}: unknown slot 'unsubscribe'; slot\(\) takes"):
        check_issue(settings, write_issue(tmp_path), templates_dir=templates)


def test_slot_mark_a_template_mangled_is_an_unfilled_slot(tmp_path, settings):
    templates = custom_template(tmp_path, TEXT_TEMPLATE, "{{ issue.title }}\n", "{{ issue.title }}\n%%nl:Bad-Name%%\n")
    findings = findings_of(settings, write_issue(tmp_path), templates)
    assert kinds(findings) == {("leftovers", "error")}
    assert "unfilled slot in the text part" in findings[0].message


def test_template_syntax_written_in_the_issue_itself_is_not_a_finding(tmp_path, settings):
    path = write_issue(tmp_path, "模板里写 `{{ name }}` 和 {% if x %} 会原样显示。\n")
    assert findings_of(settings, path) == []


# ---------------------------------------------------------------------------------------
# Subject
# ---------------------------------------------------------------------------------------


def test_subject_over_78_columns_warns_and_78_passes(tmp_path, settings):
    long = write_issue(tmp_path, front=f"subject: {'x' * 79}\n", name="long.md")
    findings = findings_of(settings, long)
    assert kinds(findings) == {("subject", "warning")}
    assert "subject is 79 columns wide" in findings[0].message and findings[0].line == 2
    assert findings_of(settings, write_issue(tmp_path, front=f"subject: {'x' * 78}\n", name="ok.md")) == []


@pytest.mark.parametrize(
    "subject",
    ["🤖 AI行业速递 - 2026年01月22日", "WEEKLY NEWS FROM THE LAB", "本周 GPU 与 TPU 价格"],
)
def test_subject_whose_latin_letters_are_all_capitals_warns(tmp_path, settings, subject):
    findings = findings_of(settings, write_issue(tmp_path, front=f"subject: {subject}\n"))
    assert kinds(findings) == {("subject-capitals", "warning")}
    assert "SUBJ_ALL_CAPS" in findings[0].message


@pytest.mark.parametrize(
    "subject",
    # A lowercase letter; no Latin letter at all; one word; under SpamAssassin's 10 bytes.
    ["🤖 AI行业速递 - 本周 iPhone 之外", "本周 行业 速递", "AI行业速递", "AI 速递"],
)
def test_subject_with_a_lowercase_letter_one_word_or_short_passes(tmp_path, settings, subject):
    assert findings_of(settings, write_issue(tmp_path, front=f"subject: {subject}\n")) == []


def test_empty_subject_fails(tmp_path, settings):
    # No issue file can produce one (an empty title or subject is refused by the parser),
    # so the check is run on a rendered issue whose subject was emptied.
    rendered = render_issue(settings, write_issue(tmp_path))
    emptied = dataclasses.replace(rendered, issue=dataclasses.replace(rendered.issue, subject=""))
    findings = check_rendered(emptied, settings)
    assert kinds(findings) == {("subject", "error")}
    assert "subject is empty" in findings[0].message


def test_finding_prints_as_one_line_with_file_severity_and_check(tmp_path, settings):
    path = write_issue(tmp_path, "[相对](/x)\n")
    line = path.read_text(encoding="utf-8").split("\n").index("[相对](/x)") + 1
    (finding,) = findings_of(settings, path)
    assert str(finding).startswith(f"{path}:{line}: error: link '/x' is relative")
    assert str(finding).endswith("[links]") and "\n" not in str(finding)


# ---------------------------------------------------------------------------------------
# `newsletter check` through the real command
# ---------------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_newsletter(*args, cwd=cwd)


def test_check_command_exits_0_and_says_ok_for_a_clean_issue(tmp_path):
    path = write_issue(tmp_path, entries=2)
    result = run_cli("check", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: ok (2 entries)"
    assert result.stderr == ""


def test_check_command_exits_1_with_one_line_per_finding(tmp_path):
    path = write_issue(tmp_path, "[相对](/x) 与 ![](https://img.example.com/a.png)\n", front=f"subject: {'长' * 80}\n")
    result = run_cli("check", str(path), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert sorted(line.rsplit("[", 1)[1] for line in lines) == ["alt]", "links]", "subject]"]
    assert all(re.match(rf"{re.escape(str(path))}:\d+: (error|warning): ", line) for line in lines), lines
    assert "Traceback" not in result.stderr and "ok" not in result.stdout


def test_check_command_exits_0_on_warnings_only(tmp_path, settings):
    path = issue_of_size(tmp_path, settings, SIZE_WARNING_BYTES, GMAIL_CLIP_BYTES)
    result = run_cli("check", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: email HTML is" in result.stderr and "[size]" in result.stderr
    assert result.stdout.strip().startswith(f"{path}: ok")


def test_check_command_uses_custom_templates(tmp_path):
    templates = custom_template(tmp_path, EMAIL_TEMPLATE, '<mjml lang="{{ issue.language }}" dir="ltr">', "<mjml>")
    result = run_cli("check", str(write_issue(tmp_path)), "--templates", str(templates), cwd=tmp_path)
    assert result.returncode == 1
    assert "[lang]" in result.stderr


# ---------------------------------------------------------------------------------------
# Findings with FILE:LINE, one fixture issue each (tests/fixtures/issues/)
# ---------------------------------------------------------------------------------------


def located(settings, name: str) -> list[tuple[int | None, str, str]]:
    path = FIXTURES / name
    return [(f.line, f.check, f.severity) for f in findings_of(settings, path)]


def test_a_misspelt_label_fails_on_its_line_suggesting_the_label_it_resembles(settings):
    findings = findings_of(settings, FIXTURES / "misspelt_label.md")
    by_line = {f.line: f for f in findings}
    assert sorted(by_line) == [8, 13, 15]
    assert (by_line[8].severity, by_line[8].check) == ("error", "labels")
    assert "unknown label '核心洞查'" in by_line[8].message and "did you mean '核心洞察'?" in by_line[8].message
    assert str(by_line[8]).startswith(f"{FIXTURES / 'misspelt_label.md'}:8: error: ")
    assert "did you mean 'key insight'?" in by_line[13].message and by_line[13].severity == "error"
    # A bold lead-in that resembles no label is the editor's own style: only a warning.
    assert (by_line[15].severity, by_line[15].check) == ("warning", "labels")


def test_a_misspelt_label_leaves_the_entry_without_its_insight(settings):
    issue = check_issue(settings, FIXTURES / "misspelt_label.md")[0]
    assert not issue.entries[0].insight


def test_a_relative_image_and_link_fail_on_their_lines(settings):
    assert located(settings, "relative_image.md") == [(13, "images", "error"), (15, "links", "error")]


def test_a_file_link_fails_on_its_line(settings):
    findings = findings_of(settings, FIXTURES / "file_link.md")
    assert [(f.line, f.check, f.severity) for f in findings] == [(11, "links", "error")]
    assert "'file:///home/editor/drafts/story.html' points at a file on this computer" in findings[0].message


def test_an_image_without_alt_text_fails_on_its_line(settings):
    assert located(settings, "image_without_alt.md") == [(13, "alt", "error")]


def test_a_subject_is_measured_in_columns_with_cjk_counting_two(settings):
    (finding,) = findings_of(settings, FIXTURES / "wide_subject.md")
    # 41 characters, 82 columns: too wide, but only a warning.
    assert (finding.line, finding.check, finding.severity) == (2, "subject", "warning")
    assert "82 columns" in finding.message


def test_display_width_counts_wide_characters_two_and_marks_none():
    assert display_width("abc") == 3
    assert display_width("核心洞察") == 8
    assert display_width("🤖 AI") == 5
    assert display_width("e\u0301") == 1  # e + a combining acute accent


def test_findings_without_a_line_in_the_issue_name_the_file_only(tmp_path, settings):
    templates = custom_template(tmp_path, EMAIL_TEMPLATE, '<mjml lang="{{ issue.language }}" dir="ltr">', "<mjml>")
    path = write_issue(tmp_path)
    (finding,) = findings_of(settings, path, templates)
    assert finding.line is None and str(finding).startswith(f"{path}: error: ")
