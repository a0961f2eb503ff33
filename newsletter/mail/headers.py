"""Header fields by the rules receivers hold us to: RFC 2047 encoded words, addresses with
ASCII domains (the one place an international domain becomes punycode), Date, and folding.

Every header line we write ends in CRLF and is 7-bit ASCII: SES has no SMTPUTF8, and a bare
LF ends the header block for some receivers.

Line length (RFC 5322 section 2.1.1): a line MUST be at most 998 characters and SHOULD be at
most 78.  `header_line` folds at whitespace (section 2.2.3: a CRLF before any whitespace;
unfolding removes the CRLF and gives back the same value) wherever a line would pass 78.
Where no whitespace is allowed, inside a URL or a Message-ID, a line may pass 78; values we
build from unbounded input (display names) are made foldable so that no line passes 998.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from datetime import UTC, datetime
from email.utils import format_datetime

from newsletter.errors import InputError

CRLF = b"\r\n"
FOLD = "\r\n "
# RFC 5322 section 2.1.1.
MAX_LINE = 78
MAX_LINE_HARD = 998
# RFC 2047 section 2: a header line holding an encoded word is at most 76 characters.  39
# bytes of UTF-8 make 52 base64 characters, 64 with `=?utf-8?b?` and `?=`, which leaves room
# for the longest field name we write before it ("Reply-To: ").
_ENCODED_WORD_BYTES = 39
# Used with fullmatch: `$` would also match before a final newline.
_ATOM_SAFE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ .-]*")
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")
# Text a decoder would take for an encoded word (RFC 2047 section 2: "=?" charset "?"
# encoding "?" text "?="), so it must not go out as it is: a display name written as
# "=?utf-8?b?...?=" would be shown as whatever it decodes to.
_LOOKS_ENCODED = re.compile(r"=\?[^?\s]*\?[^?\s]*\?[^?\s]*\?=")
# The longest word that fits a folded line after its leading space.
_LONGEST_WORD = MAX_LINE - 1


def encode_words(text: str) -> str:
    """`text` as RFC 2047 encoded words when it is not plain ASCII or would read as an
    encoded word itself, else unchanged."""
    if _HEADER_SAFE.fullmatch(text) and "=?" not in text:
        return text
    return _encoded(text)


def _encoded(text: str) -> str:
    whole = text.encode("utf-8")
    if len(whole) <= _ENCODED_WORD_BYTES:
        # Most names fit one word: skip the character loop below (it runs per recipient).
        return f"=?utf-8?b?{binascii.b2a_base64(whole, newline=False).decode('ascii')}?="
    words, chunk = [], b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    if chunk:
        words.append(chunk)
    # Adjacent encoded words separated by folding whitespace are joined without a space
    # when decoded (RFC 2047 section 6.2), so long text may be split anywhere.
    return FOLD.join(f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words)


def format_address(name: str, address: str) -> str:
    """`Name <address>` with the name quoted or RFC 2047-encoded as it needs.

    A plain ASCII name is written as it is (quoted if it holds specials) unless it looks
    like an encoded word or holds a word too long to fold onto a line of its own; those
    are encoded, and an encoded name may be split anywhere.
    """
    if not name:
        return address
    if _HEADER_SAFE.fullmatch(name) and not _LOOKS_ENCODED.search(name) and _foldable(name):
        if _ATOM_SAFE.fullmatch(name):
            return f"{name} <{address}>"
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{address}>'
    # Folded before the address, which would otherwise share the 76-character line of the
    # last encoded word (RFC 2047 section 2).
    return f"{_encoded(name)}{FOLD}<{address}>"


def _foldable(name: str) -> bool:
    """Whether every word of `name` fits a folded line (a quoted name adds two quotes)."""
    return len(name) < _LONGEST_WORD - 2 or all(len(word) < _LONGEST_WORD - 2 for word in name.split(" "))


def ascii_address(address: str) -> str:
    """The address with its domain in punycode: SES has no SMTPUTF8, so headers and the
    envelope must be ASCII.  A non-ASCII local part cannot be sent at all."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise InputError(f"{address}: the part before @ is not ASCII; mail to it needs SMTPUTF8, which SES lacks")
    if domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as err:
        raise InputError(f"{address}: the domain cannot be written in punycode ({err})") from err


def header_line(name: str, value: str) -> bytes:
    """One header field, folded, CRLF-terminated; `value` must already be ASCII (encoded
    as needed) and may hold folds of its own (`FOLD`)."""
    line = f"{name}: {value}"
    if len(line) <= MAX_LINE or (FOLD in value and max(map(len, line.split(FOLD))) <= MAX_LINE - 1):
        # Short already, or folded by the caller: the common case, per recipient.
        return line.encode("ascii") + CRLF
    return fold(line).encode("ascii") + CRLF


def fold(line: str) -> str:
    """`line` (a whole `Name: value` field) folded at whitespace so that each line is at most
    78 characters where whitespace allows; a word longer than that stays whole on a line of
    its own.  Unfolding (removing each CRLF) gives back `line` exactly."""
    out: list[str] = []
    current = ""
    # Existing folds are whitespace like any other: split there too.
    for index, word in enumerate(line.replace(FOLD, " ").split(" ")):
        if index == 0:
            current = word
            continue
        joined = len(current) + 1 + len(word)
        # No break before the value's first word: RFC 5322 allows it, but parsers differ on
        # the whitespace it leaves at the start of the value (Python's email keeps it).  None
        # before an empty word (a run of spaces), which would leave a line of whitespace only
        # (RFC 5322 section 3.2.2); none for a word that would not fit a line of its own
        # either, unless the line would pass 998.
        stays = index == 1 or joined <= MAX_LINE or not word or (1 + len(word) > MAX_LINE and joined <= MAX_LINE_HARD)
        if stays:
            current += " " + word
        else:
            out.append(current)
            current = word
    out.append(current)
    return FOLD.join(out)


_date_cache: tuple[int, str] = (0, "")


def date_now() -> str:
    """RFC 5322 Date of this second, formatted once per second rather than per message.

    In UTC with a numeric zone, `+0000`: RFC 5322 section 4.3 makes the alphabetic `GMT` an
    obsolete form, and `-0000` would claim the sender's zone is unknown (section 3.3)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, format_datetime(datetime.fromtimestamp(now, UTC)))
    return _date_cache[1]
