"""Addresses: what we accept as a subscriber's email address, and the key that finds its
duplicates.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from newsletter.errors import InputError


class Address(NamedTuple):
    """A validated address.

    `email` is the form mail is sent to: trimmed, the domain lowercased and IDNA-encoded
    (SES has no SMTPUTF8, so international domains go out as punycode).  `key` is the
    case-insensitive identity used to find duplicates.  `smtputf8` marks a non-ASCII local
    part: valid, but SES cannot deliver to it.
    """

    email: str
    key: str
    smtputf8: bool


# An RFC 5322 dot-atom local part in ASCII, and a domain of plain ASCII hostname characters:
# the shape of nearly every real address.
_PLAIN_ADDRESS = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@([A-Za-z0-9.-]+)")
_CASE_INSENSITIVE_LOCAL_PARTS = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def normalize_address(raw: str) -> Address:
    """Validate and normalise one address (no DNS look-up); InputError says what is wrong.

    The one place addresses are judged: import, `subscribers add` and the web form use it.
    """
    text = raw.strip()
    # email-validator costs ~70 us an address, which alone would cap an import near 14,000
    # rows/s.  Its verdict on a domain does not depend on the local part, so it is asked once
    # per domain; the common ASCII local part is checked here with the same rule it applies.
    # Anything unusual (quotes, non-ASCII, RFC 2142 role names it lowercases, two @-signs,
    # over-long parts) goes to the full validator, so both paths agree; a test compares them.
    match = _PLAIN_ADDRESS.fullmatch(text)
    if match is not None and len(text) <= 254:
        local, domain = match.groups()
        if len(local) <= 64 and local.lower() not in _CASE_INSENSITIVE_LOCAL_PARTS:
            ascii_domain = _valid_ascii_domain(domain)
            if ascii_domain is not None:
                email = local + "@" + ascii_domain
                return Address(email, email.lower(), False)
    return _validate_fully(text)


@lru_cache(maxsize=65_536)
def _valid_ascii_domain(domain: str) -> str | None:
    try:
        return validate_email("x@" + domain, check_deliverability=False).ascii_domain
    except EmailNotValidError:
        return None


def _validate_fully(text: str) -> Address:
    if not text:
        raise InputError("no address")
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError as err:
        raise InputError(f"{text!r} is not a valid address: {err}") from None
    email = f"{valid.local_part}@{valid.ascii_domain}"
    return Address(email, email.lower(), bool(valid.smtputf8))


def clean_name(raw: str) -> str:
    # Names end up in the To: header; a newline from a multi-line spreadsheet cell must not.
    return " ".join(raw.split())
