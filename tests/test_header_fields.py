"""Headers stay headers: nothing an editor configures or writes can put a CR or LF into a
header field, where a bare LF ends the header block for many receivers (RFC 5322 section
2.2: a field is one line, unless folded with CRLF and whitespace)."""

from __future__ import annotations

import re

import pytest

from newsletter.mail.headers import encode_words, format_address
from tests.send_world import World

pytest_plugins = ["tests.send_world"]

TEST_ADDRESS = "editor@example.com"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def header_block(raw: bytes) -> bytes:
    return raw.partition(b"\r\n\r\n")[0]


def assert_no_bare_line_ends(world: World) -> None:
    for path in world.outbox_files():
        head = header_block(path.read_bytes())
        assert not re.search(rb"(?<!\r)\n|\r(?!\n)", head), head


@pytest.mark.parametrize("value", ["daily\n", "daily\r\n", "daily\r"])
def test_a_front_matter_list_with_a_line_end_is_refused(world: World, value: str):
    text = world.issue_file.read_text(encoding="utf-8")
    quoted = value.replace("\r", "\\r").replace("\n", "\\n")
    world.issue_file.write_text(text.replace("---\n", f'---\nlist: "{quoted}"\n', 1), encoding="utf-8")

    result = world.cli("send", str(world.issue_file), "--test", TEST_ADDRESS)

    assert_no_bare_line_ends(world)
    assert result.returncode == 1, result.stdout
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "is not a valid slug" in errors[0], errors
    assert world.outbox_count() == 0


def test_an_import_list_with_a_line_end_is_refused(world: World):
    csv_file = world.root / "readers.csv"
    csv_file.write_text("email\nreader@example.org\n", encoding="utf-8")
    result = world.cli("subscribers", "import", str(csv_file), "--list", "daily\n")
    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "is not a valid slug" in errors[0], errors


HEADER_STRINGS = {
    "newsletter.name": ("newsletter", "name", "AI行业速递\n"),
    "newsletter.from": ("newsletter", "from", "Digest <digest@example.com>\n"),
    "newsletter.reply_to": ("newsletter", "reply_to", "Replies <replies@example.com>\r\nBcc: x@example.net"),
    "newsletter.base_url": ("newsletter", "base_url", "https://news.example.com\n"),
    "newsletter.unsubscribe_mailto": ("newsletter", "unsubscribe_mailto", "leave@example.com\r"),
    "newsletter.test_recipients": ("newsletter", "test_recipients", ["editor@example.com\nBcc: x@example.net"]),
    "transport.smtp.local_hostname": ("transport.smtp", "local_hostname", "mail.example.com\r\nRSET"),
}


@pytest.mark.parametrize("key", list(HEADER_STRINGS))
def test_a_configured_string_with_cr_or_lf_is_refused_naming_the_key(world: World, key: str):
    section, name, value = HEADER_STRINGS[key]
    world.configure(section, **{name: value})

    result = world.cli("send", str(world.issue_file), "--test", TEST_ADDRESS)

    assert_no_bare_line_ends(world)
    assert result.returncode == 1, result.stdout
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and key in errors[0] and "line break" in errors[0], errors
    assert world.outbox_count() == 0


def test_a_multi_line_postal_address_is_fine(world: World):
    """The footer's address is body text, never a header: several lines are what it is."""
    world.configure("newsletter", address="示例传媒\n北京市海淀区示例路 1 号")
    result = world.cli("send", str(world.issue_file), "--test", TEST_ADDRESS)
    assert result.returncode == 0, result.stderr
    assert_no_bare_line_ends(world)


@pytest.mark.parametrize("name", ["Reader\n", "Reader\r\n", "=?utf-8?q?Reader?=\n"])
def test_a_name_ending_in_a_line_break_never_goes_out_as_it_is(name: str):
    """Names are cleaned on the way in (audience/addresses.py); the header code does not count
    on it: `$` in a pattern also matches before a final newline."""
    for value in (format_address(name, "reader@example.org"), encode_words(name)):
        assert "\n" not in value.replace("\r\n ", "") and "\r" not in value.replace("\r\n ", ""), value
