"""Short excerpts of text that end where a reader would: the preheader, the feed summary.

`excerpt(text, limit)` keeps at most `limit` columns and, when it had to cut, ends in `…`.
Columns, not characters: a CJK character fills two columns in an inbox's preview line as in
a terminal (Unicode Standard Annex #11, East Asian Width W and F), so a Chinese excerpt of
140 columns takes the room of 140 Latin letters.

Where it cuts: Chinese and Japanese are written without spaces, and any boundary between
two ideographs or kana is a line-break opportunity (UAX #14, class ID), so the cut may fall
there; between Latin letters or digits it may not, and a word is never split; a cut never
falls inside a user-perceived character (a combining mark, a ZWJ emoji sequence, a
variation selector, a pair of regional indicators).  Within the last fifth of the room a
cut after punctuation or a space is preferred, so an excerpt ends at a phrase when it can.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

ELLIPSIS = "…"
# Separators that look wrong in front of the ellipsis ("标题 ·…", "甲，…").
_TRAILING = " \t\n·,，、;；:：-–—|/"
# A cut after one of these ends a phrase.
_PHRASE_ENDS = set(" ，。、；：！？,.;:!?·)）」』】》\"'")
_ZWJ = "\u200d"


# Cached: the preheader of every build measures a few hundred characters of a small alphabet
# (bench/bench_build.py).
@lru_cache(maxsize=8192)
def columns(char: str) -> int:
    """Columns `char` fills: 2 for East Asian Wide and Fullwidth, 0 for combining marks."""
    if unicodedata.combining(char) or _joins_previous(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """Columns `text` fills; an emoji joined to the one before it by a ZWJ adds none."""
    return sum(_widths(text))


def _widths(text: str, stop: int | None = None) -> list[int]:
    """Each character's columns; with `stop`, only until their sum passes it (what comes
    after cannot change where an excerpt of `stop` columns is cut)."""
    widths = []
    used = 0
    previous = ""
    for char in text:
        char_width = 0 if previous == _ZWJ else columns(char)
        widths.append(char_width)
        previous = char
        used += char_width
        if stop is not None and used > stop:
            break
    return widths


def excerpt(text: str, limit: int) -> str:
    """`text` (whitespace collapsed) in at most `limit` columns, cut as the module says."""
    text = " ".join(text.split())
    widths = _widths(text, stop=limit)
    if sum(widths) <= limit:
        return text
    room = limit - columns(ELLIPSIS)
    # The longest prefix that fits the room, and where its last fifth begins.
    used, end, floor_index = 0, 0, 0
    for index, char_width in enumerate(widths):
        if used + char_width > room:
            break
        used += char_width
        end = index + 1
        if used <= room * 4 // 5:
            floor_index = end
    best: int | None = None
    preferred: int | None = None
    for candidate in range(end, 0, -1):
        if not _may_cut(text, candidate):
            continue
        if best is None:
            best = candidate
        if text[candidate - 1] in _PHRASE_ENDS:
            preferred = candidate
            break
        if candidate <= floor_index:
            break
    cut = preferred or best
    if cut is None:
        # One word longer than the room (a long URL): cut it, at a character boundary.
        cut = next((c for c in range(end, 0, -1) if not _inside_character(text, c)), 0)
    return text[:cut].rstrip(_TRAILING) + ELLIPSIS


def _may_cut(text: str, cut: int) -> bool:
    """Whether `text[:cut]` ends at a break opportunity."""
    if cut >= len(text):
        return True
    if _inside_character(text, cut):
        return False
    before, after = text[cut - 1], text[cut]
    if before.isspace() or after.isspace():
        return True
    # Closing punctuation stays with what it closes ("AI」" is not cut before the "」").
    if unicodedata.category(after) in ("Pe", "Pf", "Po") and not after.isspace():
        return False
    if _is_ideographic(before) or _is_ideographic(after):
        return True
    # After punctuation, unless a word or number goes on ("3.5", "e.g").
    return before in _PHRASE_ENDS and not (after.isascii() and after.isalnum())


def _is_ideographic(char: str) -> bool:
    """CJK ideographs, kana and fullwidth forms: text with no spaces between its words.
    (Hangul is written with spaces, so it breaks like Latin.)"""
    if unicodedata.east_asian_width(char) not in ("W", "F"):
        return False
    name = unicodedata.name(char, "")
    return not name.startswith("HANGUL")


def _joins_previous(char: str) -> bool:
    code = ord(char)
    return (
        char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences
    )


def _inside_character(text: str, cut: int) -> bool:
    """Whether a cut before `text[cut]` would split one user-perceived character."""
    if cut <= 0 or cut >= len(text):
        return False
    before, after = text[cut - 1], text[cut]
    if unicodedata.combining(after) or _joins_previous(after) or before == _ZWJ:
        return True
    # Regional indicators pair up into flags: count the run before the cut.
    if _regional(before) and _regional(after):
        run = 0
        while cut - 1 - run >= 0 and _regional(text[cut - 1 - run]):
            run += 1
        return run % 2 == 1
    return False


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
