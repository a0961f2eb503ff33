"""Header fields by the rules receivers hold us to: RFC 2047 encoded words, addresses with
ASCII domains (the one place an international domain becomes punycode), and Date.

Every header line we write ends in CRLF and is 7-bit ASCII: SES has no SMTPUTF8, and a bare
LF ends the header block for some receivers.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from email.utils import formatdate

from newsletter.errors import InputError

CRLF = b"\r\n"
# RFC 2047 section 2: a header line holding an encoded word is at most 76 characters.  39
# bytes of UTF-8 make 52 base64 characters, 64 with `=?utf-8?b?` and `?=`, which leaves room
# for the longest field name we write before it ("Reply-To: ").
_ENCODED_WORD_BYTES = 39
_ATOM_SAFE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ .-]*$")
_HEADER_SAFE = re.compile(r"^[\x20-\x7e]*$")


def encode_words(text: str) -> str:
    """`text` as RFC 2047 encoded words when it is not plain ASCII, else unchanged."""
    if _HEADER_SAFE.match(text):
        return text
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
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words)


def format_address(name: str, address: str) -> str:
    """`Name <address>` with the name quoted or RFC 2047-encoded as it needs."""
    if not name:
        return address
    if _HEADER_SAFE.match(name):
        if _ATOM_SAFE.match(name):
            return f"{name} <{address}>"
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{address}>'
    # Folded before the address, which would otherwise share the 76-character line of the
    # last encoded word (RFC 2047 section 2).
    return f"{encode_words(name)}\r\n <{address}>"


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
    """One header field, CRLF-terminated; `value` must already be ASCII (encoded as needed)."""
    return f"{name}: {value}".encode("ascii") + CRLF


_date_cache: tuple[int, str] = (0, "")


def date_now() -> str:
    """RFC 5322 Date of this second, formatted once per second rather than per message."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]
