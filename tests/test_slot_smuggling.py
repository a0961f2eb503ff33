"""Slot markers cannot be smuggled: no spelling of `%%nl:NAME%%` in an issue (an HTML entity,
a backslash escape) becomes a live slot in build, check or send, nor a KeyError; the reader
sees what the editor typed."""

from __future__ import annotations

import pytest

from newsletter.compose.render import SlottedText
from tests.send_world import World, parse_message

pytest_plugins = ["tests.send_world"]

TEST_ADDRESS = "editor@example.com"
# Each spelling decodes to the marker of a slot in Markdown (CommonMark: entity references and
# backslash escapes of ASCII punctuation).
SPELLINGS = {
    "entity, unknown link": ("%&#37;nl:link:99%%", "%%nl:link:99%%"),
    "entity, the unsubscribe URL": ("%&#37;nl:unsubscribe_url%%", "%%nl:unsubscribe_url%%"),
    "backslash, a link": ("%\\%nl:link:0%%", "%%nl:link:0%%"),
    "named entity": ("&percnt;&percnt;nl:open_pixel&percnt;&percnt;", "%%nl:open_pixel%%"),
}


def smuggle(world: World, written: str) -> None:
    text = world.issue_file.read_text(encoding="utf-8")
    world.issue_file.write_text(
        text.replace("**核心洞察：** ", f"**核心洞察：** 看 {written} 这里 ", 1), encoding="utf-8"
    )


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_a_smuggled_marker_is_text_in_build(world: World, spelling: str):
    written, shown = SPELLINGS[spelling]
    smuggle(world, written)
    out = world.root / "out"
    result = world.cli("build", str(world.issue_file), "--out", str(out))
    assert "Traceback" not in result.stderr, result.stderr
    html = (out / "email.html").read_text(encoding="utf-8")
    text = (out / "email.txt").read_text(encoding="utf-8")
    assert f"看 {shown} 这里" in html and f"看 {shown} 这里" in text


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_a_smuggled_marker_is_text_in_a_sent_message(world: World, spelling: str):
    written, shown = SPELLINGS[spelling]
    smuggle(world, written)
    result = world.cli("send", str(world.issue_file), "--test", TEST_ADDRESS, "--force")
    assert result.returncode == 0, result.stderr
    (path,) = world.outbox_files()
    message = parse_message(path.read_bytes())
    html = message.get_body(preferencelist=("html",)).get_content()
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert f"看 {shown} 这里" in html and f"看 {shown} 这里" in text


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_check_runs_on_a_smuggled_marker(world: World, spelling: str):
    smuggle(world, SPELLINGS[spelling][0])
    result = world.cli("check", str(world.issue_file))
    assert "Traceback" not in result.stderr, result.stderr
    assert "unfilled slot" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "part",
    ["%%nl:link:0%%", "a %%nl:x%% b", "%%%nl:link:1%%%", "%%nl:%%nl:", "%%nl:literal%%", "nl:x%%", "%%nl"],
)
def test_stored_text_reads_back_as_it_was_written(part: str):
    """What sending stores (`marked`) and reads back (`parse`) keeps editor text as text."""
    slotted = SlottedText((part, " middle ", part), ("unsubscribe_url", "link:0"))
    assert SlottedText.parse(slotted.marked()) == slotted
