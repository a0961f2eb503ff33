"""`newsletter build` and the error cases, through the real click command (in this process,
cli_in_process.py), so the exit status and stderr are the ones an editor sees; the installed
console script is run once as a program of its own."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_in_process import run_newsletter
from sample_issues import DIGEST, EXAMPLE, EXAMPLE_CONFIG, FIXTURES, seed_case

from newsletter import __version__
from newsletter.compose.issue.parse import load_issue


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`newsletter ARGS` in `cwd`, with no NEWSLETTER_* variables from the caller."""
    return run_newsletter(*args, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess, prefix: str, words: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {prefix}"), lines[0]
    assert words in lines[0], lines[0]


def copy_fixture(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copy(FIXTURES / name, tmp_path / name))


# ---------------------------------------------------------------------------------------
# One test per malformed issue: exit 1, `FILE:LINE: what is wrong`, no traceback
# ---------------------------------------------------------------------------------------


MALFORMED = [
    "no_title.md",
    "text_before_first_entry.md",
    "empty_link_target.md",
    "empty_category.md",
    "empty_sources.md",
    "empty_insight.md",
    "summary_without_list.md",
    "empty_summary_item.md",
    "bad_front_matter.md",
    "unknown_front_matter_key.md",
    "unclosed_front_matter.md",
]


@pytest.fixture(scope="module")
def malformed_builds(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """`newsletter build` of each malformed fixture, once for the module: each test below
    asserts on one of them."""
    directory = tmp_path_factory.mktemp("malformed")
    results = {}
    for name in MALFORMED:
        shutil.copy(FIXTURES / name, directory / name)
        results[name] = run_cli("build", name, "--out", f"out-{name}", cwd=directory)
    return results


@pytest.fixture
def build_fixture(malformed_builds):
    return lambda tmp_path, name: (malformed_builds[name], name)


def test_missing_title_names_file_and_line_1(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "no_title.md")
    assert_one_line_error(result, f"{name}:1: ", "must start with a '# ' title")


def test_text_before_the_first_entry_names_its_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "text_before_first_entry.md")
    assert_one_line_error(result, f"{name}:3: ", "text before the first '## ' entry")


def test_empty_link_target_names_file_and_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "empty_link_target.md")
    assert_one_line_error(result, f"{name}:11: ", "link [原文]() has no target")


def test_category_label_with_nothing_after_it_names_its_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "empty_category.md")
    assert_one_line_error(result, f"{name}:5: ", "分类 / Category has nothing after it")


def test_sources_label_with_nothing_after_it_names_its_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "empty_sources.md")
    assert_one_line_error(result, f"{name}:6: ", "来源 / Sources has nothing after it")


def test_insight_label_with_nothing_after_it_names_its_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "empty_insight.md")
    assert_one_line_error(result, f"{name}:8: ", "核心洞察 / Insight has nothing after it")


def test_summary_label_without_a_list_names_its_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "summary_without_list.md")
    assert_one_line_error(result, f"{name}:9: ", "内容简介 / Summary has nothing after it")


def test_summary_item_label_with_nothing_after_it_names_its_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "empty_summary_item.md")
    assert_one_line_error(result, f"{name}:11: ", "summary item '空标签' has nothing after its colon")


def test_front_matter_that_does_not_parse_names_its_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "bad_front_matter.md")
    assert_one_line_error(result, f"{name}:3: ", "front matter is not valid YAML")


def test_unknown_front_matter_key_names_its_line(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "unknown_front_matter_key.md")
    assert_one_line_error(result, f"{name}:3: ", "unknown front matter key 'author'; known keys: subject, preheader")


def test_unclosed_front_matter_names_line_1(tmp_path, build_fixture):
    result, name = build_fixture(tmp_path, "unclosed_front_matter.md")
    assert_one_line_error(result, f"{name}:1: ", "front matter opened with '---' is never closed")


def test_file_that_is_not_utf8_names_the_first_bad_line(tmp_path):
    # An editor's file saved as GBK, a common default for Chinese text on Windows.
    (tmp_path / "gbk.md").write_bytes("# Digest 2026-01-01\n\n## 条目\n".encode("gbk"))
    result = run_cli("build", "gbk.md", cwd=tmp_path)
    assert_one_line_error(result, "gbk.md:3: ", "not UTF-8 text; save the file as UTF-8")


def test_file_that_does_not_exist_names_the_file(tmp_path):
    # A missing file has no line to name: the message is `FILE: …`.
    result = run_cli("build", "issues/missing.md", cwd=tmp_path)
    assert_one_line_error(result, "issues/missing.md: ", "no such issue file")
    assert not (tmp_path / "build").exists()


def test_directory_instead_of_a_file_is_a_clean_error(tmp_path):
    (tmp_path / "issues").mkdir()
    result = run_cli("build", "issues", cwd=tmp_path)
    assert_one_line_error(result, "issues: ", "is a directory")


def test_check_command_reports_the_same_error_as_build(tmp_path):
    copy_fixture(tmp_path, "empty_link_target.md")
    result = run_cli("check", "empty_link_target.md", cwd=tmp_path)
    assert_one_line_error(result, "empty_link_target.md:11: ", "has no target")


def test_entry_without_category_or_sources_warns_and_builds(tmp_path):
    name = copy_fixture(tmp_path, "entry_without_category_or_sources.md").name
    result = run_cli("build", name, "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"{name}:10: warning: entry '只有正文的条目' has no 分类 / Category",
        f"{name}:10: warning: entry '只有正文的条目' has no 来源 / Sources",
    ]
    assert (tmp_path / "out" / "email.html").is_file()


# ---------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [pytest.param(DIGEST, id="digest"), seed_case()])
def test_build_of_a_full_size_issue_writes_three_files_and_prints_their_sizes(tmp_path, path):
    result = run_cli("build", str(path), "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Its one finding: the subject's only Latin letters ("AI") are capitals (SUBJ_ALL_CAPS).
    assert [line.rsplit(" [", 1)[1] for line in result.stderr.splitlines()] == ["subject-capitals]"]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["email.html", "email.txt", "web.html"]
    for line, name in zip(result.stdout.splitlines(), ["email.html", "email.txt", "web.html"], strict=False):
        size = (out / name).stat().st_size / 1024
        assert re.fullmatch(rf"out/{re.escape(name)}  {size:.1f} KB", line), line
    email_html = (out / "email.html").read_text(encoding="utf-8")
    email_text = (out / "email.txt").read_text(encoding="utf-8")
    assert "%%nl:" not in email_html and "%%nl:" not in email_text
    assert 'href="http://127.0.0.1:8000/u/preview"' in email_html  # the embedded default base_url
    first_source = load_issue(path).entries[0].sources[0].url
    assert first_source and f'href="{first_source}"' in email_html


def test_build_without_out_writes_under_build_slug(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    result = run_cli("build", EXAMPLE.name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "build" / "2026-11-30"
    assert {p.name for p in out.iterdir()} == {"email.html", "email.txt", "web.html"}
    assert result.stdout.splitlines()[0].startswith("build/2026-11-30/email.html  ")


def test_build_uses_the_configuration_file(tmp_path):
    result = run_cli("--config", str(EXAMPLE_CONFIG), "build", str(EXAMPLE), "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    email_text = (tmp_path / "out" / "email.txt").read_text(encoding="utf-8")
    assert email_text.startswith("AI行业速递 · 2026年11月30日\n")
    assert "示例传媒 · 北京市海淀区示例路 1 号" in email_text


def test_build_with_a_failing_check_writes_the_files_and_exits_1(tmp_path):
    (tmp_path / "rel.md").write_text(
        "# 速递 2026-01-01\n\n## 条目\n\n> **分类：** 市场\n> **来源：** [甲](/relative/link)\n", encoding="utf-8"
    )
    result = run_cli("build", "rel.md", "--out", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "rel.md:6: error: link '/relative/link' is relative; mail needs absolute https:// or mailto: links [links]"
    )
    assert (tmp_path / "out" / "email.html").is_file()


def test_templates_option_overrides_one_template_and_keeps_the_rest(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "digest.txt.j2").write_text(
        "本期：{{ issue.title }}（{{ issue.entries | length }} 篇）\n退订：{{ slot('unsubscribe_url') }}\n",
        encoding="utf-8",
    )
    result = run_cli("build", str(EXAMPLE), "--out", "out", "--templates", "mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert (out / "email.txt").read_text(encoding="utf-8") == (
        "本期：🤖 AI行业速递 - 2026年11月30日（5 篇）\n退订：http://127.0.0.1:8000/u/preview\n"
    )
    assert "端侧大模型走进千元机" in (out / "email.html").read_text(encoding="utf-8")


def test_broken_custom_template_is_one_line_naming_template_and_line(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "digest.html.j2").write_text(
        '{% extends "page.html.j2" %}\n{% block main %}\n<h1>{{ issue.title }</h1>\n{% endblock %}\n', encoding="utf-8"
    )
    result = run_cli("build", str(EXAMPLE), "--templates", "mine", "--out", "out", cwd=tmp_path)
    assert_one_line_error(result, "mine/digest.html.j2:3: ", "template syntax error")


def test_templates_option_with_a_missing_directory_is_a_usage_error(tmp_path):
    result = run_cli("build", str(EXAMPLE), "--templates", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "'nope' does not exist" in result.stderr


# ---------------------------------------------------------------------------------------
# The command itself
# ---------------------------------------------------------------------------------------


def test_version_and_help_with_an_example_on_every_command(tmp_path):
    assert run_cli("--version", cwd=tmp_path).stdout.strip() == f"newsletter, version {__version__}"
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0 and "newsletter build issues/" in top.stdout
    for command in ("build", "check", "preview"):
        result = run_cli(command, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Example:" in result.stdout and f"newsletter {command} issues/" in result.stdout


def test_console_script_is_installed_next_to_the_interpreter(tmp_path):
    script = Path(sys.executable).parent / "newsletter"
    if not script.is_file():
        pytest.skip(f"no console script at {script}")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == f"newsletter, version {__version__}"


def test_missing_argument_is_a_usage_error_without_traceback(tmp_path):
    result = run_cli("build", cwd=tmp_path)
    assert result.returncode == 2
    assert "Missing argument 'ISSUE_FILE'" in result.stderr and "Traceback" not in result.stderr
