"""No traceback, ever, for user input: inputs found by fuzzing each get one line saying what
and where and a non-zero exit from the real command, and nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.send_world import World

pytest_plugins = ["tests.send_world"]


def one_error_line(result) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "panicked" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("written", "line_in_entry"),
    [("见 [链接 `代码", 0), ("见 [链接\n`代码", 1), ("![`", 0)],
    ids=["same line", "next line", "image"],
)
@pytest.mark.parametrize("command", ["build", "check", "send"])
def test_a_link_bracket_before_an_unclosed_code_span_is_a_located_error(
    world: World, command: str, written: str, line_in_entry: int
):
    """markdown-it-pyrs panics here (a PanicException, which is a BaseException)."""
    text = world.issue_file.read_text(encoding="utf-8")
    marker = "**核心洞察：** "
    line = text[: text.index(marker)].count("\n") + 1 + line_in_entry
    world.issue_file.write_text(text.replace(marker, marker + written + " ", 1), encoding="utf-8")
    world.add_subscribers(1)
    args = {"build": ["--out", str(world.root / "out")], "check": [], "send": ["--yes"]}[command]

    error = one_error_line(world.newsletter(command, str(world.issue_file), *args))

    assert error.startswith(f"error: {world.issue_file}:{line}: "), error
    assert world.outbox_count() == 0 and not (world.root / "out").exists()


def test_deeply_nested_front_matter_is_a_located_error(world: World):
    text = world.issue_file.read_text(encoding="utf-8")
    world.issue_file.write_text(text.replace("---\n", "---\nsubject: " + "[" * 5000 + "\n", 1), encoding="utf-8")
    error = one_error_line(world.newsletter("check", str(world.issue_file)))
    assert error.startswith(f"error: {world.issue_file}:2: front matter nests too deeply"), error


def test_a_csv_with_a_bare_cr_and_a_bad_byte_later_is_one_line(world: World):
    csv_file = world.root / "readers.csv"
    csv_file.write_bytes(b"email,name\r\nfirst@example.org,A\rB\r\nsecond@example.org,\xff\r\n")

    error = one_error_line(world.newsletter("subscribers", "import", str(csv_file)))

    assert str(csv_file) in error and "utf-8" in error, error


def test_a_deeply_nested_configuration_is_one_line(world: World):
    world.config_path.write_text("[newsletter]\nname = 'x'\n[x]\ny = " + "[" * 5000 + "]" * 5000 + "\n")
    error = one_error_line(world.newsletter("check", str(world.issue_file)))
    assert str(world.config_path) in error and "nested" in error, error


# (A regular file is refused by the option itself, as a usage error.)
@pytest.mark.parametrize("out", ["/dev/null", "file/below"])
def test_build_into_something_that_is_not_a_directory_is_one_line(world: World, out: str):
    target = Path(out) if out.startswith("/") else world.root / out
    (world.root / "file").write_text("not a directory\n")
    error = one_error_line(world.newsletter("build", str(world.issue_file), "--out", str(target)))
    assert str(target) in error, error
    assert (world.root / "file").read_text() == "not a directory\n"
