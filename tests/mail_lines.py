"""How a header field was written, line by line, and RFC 5322's rules on those lines (section
2.1.1: at most 998 characters, and at most 78 where whitespace allows a fold), for the tests
that read messages as they left."""

from __future__ import annotations

import re

from newsletter.mail.headers import MAX_LINE, MAX_LINE_HARD


def header_fields(content: bytes) -> list[bytes]:
    """Each header field of a message as written, its folded lines joined by CRLF, with its
    final CRLF."""
    block = content.partition(b"\r\n\r\n")[0] + b"\r\n"
    return [match.group(0) for match in re.finditer(rb"[^ \t\r\n][^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", block)]


def lines_of(field: bytes) -> list[str]:
    assert field.endswith(b"\r\n") and field.isascii()
    return field[:-2].decode("ascii").split("\r\n")


def assert_folded_by_the_book(field: bytes) -> None:
    """Each line at most 78 unless it is one word that cannot be broken (after the field
    name, or after a fold's leading space), and every line at most 998."""
    lines = lines_of(field)
    for index, line in enumerate(lines):
        assert len(line) <= MAX_LINE_HARD, f"line {index} is {len(line)} characters"
        if len(line) > MAX_LINE:
            words = line.split(" ")
            unbreakable = (index == 0 and len(words) == 2) or (index > 0 and len(words) == 2 and words[0] == "")
            assert unbreakable, f"line {index} ({len(line)} characters) could have been folded: {line[:90]}"
        if index:
            assert line.startswith(" ") and line.strip(), "a continuation starts with whitespace and is not only that"
