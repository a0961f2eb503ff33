"""Header fields by the book (RFC 5322, RFC 2047): Date with a numeric zone, lines folded at
78 where whitespace allows and never over 998, display names that would read as encoded
words encoded, and unbounded names made foldable."""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime

import pytest
from mail_lines import assert_folded_by_the_book, lines_of

from newsletter.mail.headers import (
    FOLD,
    date_now,
    encode_words,
    fold,
    format_address,
    header_line,
)


def unfolded_value(field: bytes) -> str:
    return field[:-2].decode("ascii").replace("\r\n", "").partition(": ")[2]


def test_date_has_a_numeric_utc_zone_not_gmt():
    value = date_now()
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000", value), value
    assert parsedate_to_datetime(value).utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "value",
    [
        "short",
        "word " * 60,
        "An editorial subject that goes on for a while, with commas, and clauses, and then some more words",
        'multipart/alternative; boundary="nl.alt.b02a06d081812c43378b5de8"',
        "x" * 300 + " tail",
        "double  spaces   between    words " * 5,
    ],
)
def test_lines_are_folded_at_78_where_whitespace_allows_and_unfold_to_the_value(value):
    field = header_line("Subject", value)
    assert_folded_by_the_book(field)
    assert unfolded_value(field) == value


def test_the_first_word_stays_on_the_field_name_line():
    # Python's email keeps the whitespace a fold right after the colon leaves.
    field = fold("List-Unsubscribe: <https://news.example.com/u/" + "A" * 60 + ">, <mailto:x@example.com>")
    assert field.startswith("List-Unsubscribe: <https://")
    assert field.count(FOLD) == 1


def test_a_5000_octet_ascii_name_is_folded_and_decodes_back():
    name = ("Reader With A Very Long Name " * 200)[:5000].strip()
    field = header_line("To", format_address(name, "reader@example.org"))
    assert len(field) > 5000
    assert_folded_by_the_book(field)
    assert unfolded_value(field) == f"{name} <reader@example.org>"


def test_an_ascii_name_with_an_unbreakable_5000_octet_word_becomes_encoded_words():
    name = "x" * 5000
    field = header_line("To", format_address(name, "reader@example.org"))
    assert_folded_by_the_book(field)
    assert all(len(line) <= 76 for line in lines_of(field)), "RFC 2047: lines with encoded words stay within 76"
    phrase = unfolded_value(field).rpartition("<")[0]
    assert str(make_header(decode_header(phrase))).strip() == name


@pytest.mark.parametrize(
    "name",
    ["=?utf-8?b?5YiY5rSL?=", "Support =?iso-8859-1?q?Team?=", "=?UTF-8?Q?bank?= security"],
)
def test_a_display_name_that_looks_like_an_encoded_word_is_encoded_not_passed_through(name):
    field = header_line("From", format_address(name, "news@example.com"))
    value = unfolded_value(field)
    assert name not in value
    phrase = value.rpartition("<")[0]
    # Decoded, it reads as the characters that were typed, not as what they would decode to.
    assert str(make_header(decode_header(phrase))).strip() == name


def test_a_subject_that_looks_like_an_encoded_word_is_encoded():
    assert encode_words("=?utf-8?b?5YiY5rSL?=") != "=?utf-8?b?5YiY5rSL?="
    assert encode_words("plain subject") == "plain subject"
    assert str(make_header(decode_header(encode_words("Re =?x?q?y?= z")))) == "Re =?x?q?y?= z"


def test_an_ordinary_ascii_name_is_written_as_it_is():
    assert format_address("Jane Doe", "jane@example.org") == "Jane Doe <jane@example.org>"
    assert format_address("Doe, Jane", "jane@example.org") == '"Doe, Jane" <jane@example.org>'
