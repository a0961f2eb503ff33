"""`newsletter init` and `newsletter new`, and the README's "editor's day" run line by line
as written, from a shell with a fresh PATH, after the README's install command."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sample_issues import REPO

from newsletter.compose.build import check_issue
from newsletter.config import load_settings
from newsletter.errors import InputError
from newsletter.project import init_project, new_issue


def test_init_writes_a_working_project_with_a_fresh_secret(tmp_path):
    first = init_project(tmp_path / "one")
    second = init_project(tmp_path / "two")
    config = tomllib.loads((tmp_path / "one" / "newsletter.toml").read_text(encoding="utf-8"))
    other = tomllib.loads((tmp_path / "two" / "newsletter.toml").read_text(encoding="utf-8"))
    secret = config["newsletter"]["secret"]
    assert len(secret) >= 43 and secret != other["newsletter"]["secret"]  # 32 bytes and more, random
    assert config["transport"]["kind"] == "outbox" and config["newsletter"]["database"].startswith("sqlite:///")
    assert (tmp_path / "one" / "issues").is_dir() and (tmp_path / "one" / "subscribers" / "example.csv").is_file()
    settings = load_settings(tmp_path / "one" / "newsletter.toml", environ={})
    assert settings.newsletter.secret == secret and settings.root == (tmp_path / "one").resolve()
    assert first.files and second.files
    assert "# Signs every unsubscribe and tracking link" in (tmp_path / "one" / "newsletter.toml").read_text()


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "newsletter.toml").write_text("# mine\n", encoding="utf-8")
    with pytest.raises(InputError, match="newsletter.toml already exists; newsletter init never overwrites"):
        init_project(tmp_path)
    assert (tmp_path / "newsletter.toml").read_text() == "# mine\n"
    assert not (tmp_path / "subscribers").exists() and not (tmp_path / "issues").exists()


def test_new_writes_a_skeleton_that_passes_every_check_and_never_overwrites(tmp_path):
    init_project(tmp_path)
    settings = load_settings(tmp_path / "newsletter.toml", environ={})
    path = new_issue(settings, datetime(2026, 12, 2).date())
    assert path == tmp_path / "issues" / "2026-12-02.md"
    issue, findings = check_issue(settings, path)
    assert findings == [] and issue.date.isoformat() == "2026-12-02" and issue.slug == "2026-12-02"
    entry = issue.entries[0]
    assert entry.category and entry.sources and entry.insight and entry.summary and issue.related
    path.write_text(path.read_text(encoding="utf-8") + "\n编辑写的字。\n", encoding="utf-8")
    with pytest.raises(InputError, match="2026-12-02.md already exists; edit it, or give another day with --date"):
        new_issue(settings, datetime(2026, 12, 2).date())
    assert "编辑写的字" in path.read_text(encoding="utf-8")


def test_new_takes_a_title_and_writes_english_labels_for_an_english_newsletter(tmp_path):
    init_project(tmp_path, name="The Weekly", language="en")
    settings = load_settings(tmp_path / "newsletter.toml", environ={})
    path = new_issue(settings, datetime(2026, 12, 3).date(), title="The Weekly, third of December")
    issue, findings = check_issue(settings, path)
    assert findings == [] and issue.title == "The Weekly, third of December" and issue.date.day == 3
    assert "**Key insight:**" in path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------
# The README's editor's day, as written
# ---------------------------------------------------------------------------------------

README_DATE = "2026-12-02"


def editors_day_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## The editor's day", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the editor's day has no ```sh block"
    return match.group(1)


def test_the_readmes_editors_day_runs_as_written_from_a_fresh_path(tmp_path):
    if sys.prefix == sys.base_prefix:
        pytest.fail("the tests must run from the README's venv (.venv/bin/pytest), whose activate script it uses")
    block = editors_day_block()
    for command in ("init", "new", "check", "build", "subscribers import", "--at", "issues", "--cancel", "--yes"):
        assert f" {command}" in block, f"the editor's day lost `{command}`"
    # The README's date, or, once its 08:00 in Shanghai has passed, tomorrow's there, so the
    # schedule in it is in the future whenever the test runs.
    shanghai = ZoneInfo("Asia/Shanghai")
    scheduled = datetime.fromisoformat(f"{README_DATE} 08:00").replace(tzinfo=shanghai)
    now = datetime.now(UTC)
    day = README_DATE if scheduled > now + timedelta(minutes=5) else (now.astimezone(shanghai) + timedelta(days=1))
    day = day if isinstance(day, str) else day.date().isoformat()
    script = block.replace(README_DATE, day)
    # The clone: the README's install command made .venv here.
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    result = subprocess.run(
        ["bash", "-e", "-u", "-o", "pipefail", "-x", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    project = tmp_path / "digest"
    assert (project / "issues" / f"{day}.md").is_file() and (project / "build" / day / "email.html").is_file()
    # One [TEST] copy, then both example subscribers once.
    assert len(list((project / "outbox" / "new").iterdir())) == 3
    assert "scheduled" in result.stdout and "is cancelled" in result.stdout
    assert f"{day}: sent completely (2 in all)" in result.stdout
    assert "clicks per entry" in result.stdout


def test_the_editors_day_uses_no_command_outside_the_venv():
    for line in editors_day_block().splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            assert command.startswith((". .venv/bin/activate", "newsletter ")), command
