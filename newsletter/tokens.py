"""Signed tokens and the URLs built from them: the only module that holds the secret.

A token is opaque and URL-safe: base64url (RFC 4648 section 5, decoded strictly) of a small
binary claim (version, what it is for, the issue, the subscriber, and for a click the link)
followed by a 17-byte MAC, 44 characters in all.  Verifying recomputes the MAC and compares
in constant time, so a token cannot be forged or altered without the secret, and nothing in
it needs a database lookup to check.

Version 2 (now): one MAC per message.  Keyed BLAKE2b (RFC 7693 section 2.5: the key is the
hash's first block, a MAC in itself, no HMAC construction needed) of (version, issue,
subscriber) with a 51-byte output, cut into one 17-byte MAC per purpose (unsubscribe, open,
click).  A cut of a PRF's output is a PRF of its own, so a pixel token still can never be
replayed as an unsubscribe token.  The link of a click token is carried beside the MAC, not
under it: it only selects among the links stored for the issue (an index not stored is a
404), which the reader holding the message could follow anyway.  Chosen over HMAC-SHA256 by
measurement (bench/bench_token_mac.py: 0.40 µs for the one BLAKE2b against 2.0 µs for an
HMAC-SHA256 per purpose; bench/RESULTS.md).

Version 1 (mail sent before): an HMAC-SHA256 of the whole claim per token, under a key per
purpose.  Those tokens keep verifying; confirmation links (`Purpose.CONFIRM`) only ever had
this form.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from enum import IntEnum

from newsletter.errors import ConfigError, TokenError

# The version written now; version 1 is verified only (see the module's docstring).
TOKEN_VERSION = 2
_LEGACY_VERSION = 1
# version, purpose, issue id (or list id), subscriber id, link (0 unless a click)
_CLAIM = struct.Struct(">BBIQH")
_CLAIM_HEAD = struct.Struct(">BBIQ")
_LINK = struct.Struct(">H")
# What one version-2 MAC signs: the version, the issue and the subscriber.
_SIGNED = struct.Struct(">BIQ")
# 136 bits of MAC: forging a token takes ~2**136 guesses.  It also makes a token 33 bytes,
# a multiple of 3, so base64 needs no padding and the tokens of one message can be encoded
# in a single call and cut apart (`Tokens.sign_message`).
MAC_BYTES = 17
TOKEN_BYTES = _CLAIM.size + MAC_BYTES
TOKEN_LENGTH = TOKEN_BYTES * 4 // 3
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_STANDARD = str.maketrans("-_", "+/")
# base64url and nothing else: '+', '/' and '=' are standard base64's (RFC 4648 section 5).
_WELL_FORMED = re.compile(f"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")


class Purpose(IntEnum):
    UNSUBSCRIBE = 1
    OPEN = 2
    CLICK = 3
    # Double opt-in links mailed before migration 0004 (list id in the issue field); they are
    # only verified now, until they expire.  New links carry a random token instead.
    CONFIRM = 4


# Where each purpose's MAC is cut from the one digest of a message (version 2).
_CUTS = {Purpose.UNSUBSCRIBE: 0, Purpose.OPEN: MAC_BYTES, Purpose.CLICK: 2 * MAC_BYTES}
_DIGEST_BYTES = len(_CUTS) * MAC_BYTES


@dataclass(frozen=True)
class Claim:
    purpose: Purpose
    # The issue for unsubscribe/open/click; the list for a subscription confirmation.
    issue_id: int
    subscriber_id: int
    link: int | None = None


@dataclass(frozen=True)
class MessageTokens:
    """The tokens of one personal message, as ASCII bytes, from one MAC."""

    unsubscribe: bytes
    open: bytes
    # One per link, index 0..n-1.
    clicks: list[bytes]


class _HmacSha256:
    """HMAC-SHA256 under one key with the padded-key states hashed once (RFC 2104, section
    4): each MAC then costs two hash copies instead of a key set-up."""

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))

    def __call__(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Tokens:
    """Signs and verifies tokens under one secret."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ConfigError(
                "no secret configured: set [newsletter] secret or NEWSLETTER_SECRET to a long random string "
                "(a secret made up per run would break every link already sent)",
                key="newsletter.secret",
            )
        master = secret.encode("utf-8")
        # Version 1: a key per purpose.
        self._legacy_macs = {
            purpose: _HmacSha256(hmac.digest(master, f"newsletter token key:{purpose.name}".encode(), "sha256"))
            for purpose in Purpose
        }
        # Version 2: one keyed state, copied per message (the key block is hashed once).
        self._message_mac = hashlib.blake2b(
            key=hmac.digest(master, b"newsletter token key v2: keyed BLAKE2b per message", "sha256"),
            digest_size=_DIGEST_BYTES,
        )

    def _digest(self, issue_id: int, subscriber_id: int) -> bytes:
        mac = self._message_mac.copy()
        mac.update(_SIGNED.pack(TOKEN_VERSION, issue_id, subscriber_id))
        return mac.digest()

    def _raw(self, purpose: Purpose, issue_id: int, subscriber_id: int, link: int) -> bytes:
        if purpose is Purpose.CONFIRM:
            # Only ever verified in production now; tests mint the links mailed before 0004.
            claim = _CLAIM.pack(_LEGACY_VERSION, purpose, issue_id, subscriber_id, link)
            return claim + self._legacy_macs[purpose](claim)[:MAC_BYTES]
        cut = _CUTS[purpose]
        claim = _CLAIM.pack(TOKEN_VERSION, purpose, issue_id, subscriber_id, link)
        return claim + self._digest(issue_id, subscriber_id)[cut : cut + MAC_BYTES]

    def sign(self, purpose: Purpose, issue_id: int, subscriber_id: int, link: int | None = None) -> str:
        raw = self._raw(purpose, issue_id, subscriber_id, link or 0)
        return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).decode("ascii")

    def sign_message(self, issue_id: int, subscriber_id: int, click_count: int) -> MessageTokens:
        """The unsubscribe, open and click tokens (links 0..click_count-1) of one message:
        the same tokens as `sign` for each, from one MAC and one base64 call."""
        digest = self._digest(issue_id, subscriber_id)
        head = _CLAIM_HEAD.pack
        click_head = head(TOKEN_VERSION, Purpose.CLICK, issue_id, subscriber_id)
        click_mac = digest[2 * MAC_BYTES :]
        link = _LINK.pack
        raw = b"".join(
            [
                head(TOKEN_VERSION, Purpose.UNSUBSCRIBE, issue_id, subscriber_id),
                b"\0\0",
                digest[:MAC_BYTES],
                head(TOKEN_VERSION, Purpose.OPEN, issue_id, subscriber_id),
                b"\0\0",
                digest[MAC_BYTES : 2 * MAC_BYTES],
                *[click_head + link(index) + click_mac for index in range(click_count)],
            ]
        )
        encoded = binascii.b2a_base64(raw, newline=False).translate(_URLSAFE)
        return MessageTokens(
            encoded[:TOKEN_LENGTH],
            encoded[TOKEN_LENGTH : 2 * TOKEN_LENGTH],
            [encoded[start : start + TOKEN_LENGTH] for start in range(2 * TOKEN_LENGTH, len(encoded), TOKEN_LENGTH)],
        )

    def verify(self, token: str, purpose: Purpose) -> Claim:
        """The claim in `token`, or TokenError if it is malformed, altered or for another purpose."""
        if len(token) != TOKEN_LENGTH or not _WELL_FORMED.fullmatch(token):
            raise TokenError("malformed token")
        raw = binascii.a2b_base64(token.translate(_STANDARD))
        claim, mac = raw[: _CLAIM.size], raw[_CLAIM.size :]
        version, kind, issue_id, subscriber_id, link = _CLAIM.unpack(claim)
        if version == TOKEN_VERSION and purpose in _CUTS:
            cut = _CUTS[purpose]
            expected = self._digest(issue_id, subscriber_id)[cut : cut + MAC_BYTES]
        elif version == _LEGACY_VERSION:
            expected = self._legacy_macs[purpose](claim)[:MAC_BYTES]
        else:
            raise TokenError("malformed token")
        if not hmac.compare_digest(mac, expected):
            raise TokenError("token signature does not verify")
        # Version 2 leaves the link out of the MAC, so a token of any other purpose must
        # carry none (version 1 signed it: 0 there).
        if kind != purpose or (purpose is not Purpose.CLICK and link):
            raise TokenError("token is not for this purpose")
        return Claim(Purpose(kind), issue_id, subscriber_id, link if purpose is Purpose.CLICK else None)


class Links:
    """The public URLs of `newsletter serve`, signed where they name a subscriber."""

    def __init__(self, base_url: str, tokens: Tokens) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens

    def unsubscribe(self, issue_id: int, subscriber_id: int) -> str:
        return f"{self.base_url}/u/{self.tokens.sign(Purpose.UNSUBSCRIBE, issue_id, subscriber_id)}"

    def open_pixel(self, issue_id: int, subscriber_id: int) -> str:
        return f"{self.base_url}/o/{self.tokens.sign(Purpose.OPEN, issue_id, subscriber_id)}.gif"

    def click(self, issue_id: int, subscriber_id: int, link: int) -> str:
        return f"{self.base_url}/c/{self.tokens.sign(Purpose.CLICK, issue_id, subscriber_id, link)}"

    def confirm(self, token: str) -> str:
        """A double opt-in link: `token` is the random one of its confirmation row
        (newsletter.audience.double_opt_in), not signed; it is its own proof."""
        return f"{self.base_url}/confirm/{token}"

    def issue_page(self, slug: str) -> str:
        return f"{self.base_url}/issues/{slug}"


def sample_links(base_url: str) -> Links:
    """Links of real length under a throwaway secret: for size estimates, never for sending."""
    return Links(base_url, Tokens(hashlib.sha256(b"sample only").hexdigest()))


class AddressDigests:
    """Keyed digests of normalised addresses, for the erasure list (schema.erasures).

    HMAC-SHA256 (RFC 2104) of the address key under a key derived from the secret: without
    the secret a digest cannot be tested against guessed addresses, as a plain hash of an
    address could be by anyone holding a copy of the database.  Its own derivation, apart
    from the token keys, so a new token format leaves erasures matching; a new *secret*
    does not, which is what `key_id` (stored with each digest) lets a reader of the table
    tell.
    """

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ConfigError(
                "no secret configured: erasing someone keeps a keyed hash of their address, which needs "
                "[newsletter] secret or NEWSLETTER_SECRET (the one that signs the links)",
                key="newsletter.secret",
            )
        key = hmac.digest(secret.encode("utf-8"), b"newsletter erasure key", "sha256")
        self._mac = _HmacSha256(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:16]

    def digest(self, address_key: str) -> str:
        """The hex digest of an address key (`Address.key`: the address as sent, lowercased)."""
        return self._mac(address_key.encode("utf-8")).hex()
