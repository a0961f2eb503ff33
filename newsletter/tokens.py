"""Signed tokens and the URLs built from them: the only module that holds the secret.

A token is opaque and URL-safe: base64url of a small binary claim (what it is for, the
issue, the subscriber, and for a click the link) followed by a truncated HMAC-SHA256 of
that claim, 44 characters in all.  Verifying recomputes the MAC and compares in constant time, so a token cannot
be forged or altered without the secret, and nothing in it needs a database lookup to check.

Each purpose signs with its own key derived from the secret, so an open-pixel token can
never be replayed as an unsubscribe token even though both name the same pair.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

from newsletter.errors import ConfigError, TokenError

TOKEN_VERSION = 1
# version, purpose, issue id (or list id), subscriber id, link (0 unless a click)
_CLAIM = struct.Struct(">BBIQH")
# 136 bits of MAC: forging a token takes ~2**136 guesses.  It also makes a token 33 bytes,
# a multiple of 3, so base64 needs no padding and the tokens of one message can be encoded
# in a single call and cut apart (`Tokens.sign_clicks`).
MAC_BYTES = 17
TOKEN_BYTES = _CLAIM.size + MAC_BYTES
TOKEN_LENGTH = TOKEN_BYTES * 4 // 3
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class Purpose(IntEnum):
    UNSUBSCRIBE = 1
    OPEN = 2
    CLICK = 3
    # Double opt-in links mailed before migration 0004 (list id in the issue field); they are
    # only verified now, until they expire.  New links carry a random token instead.
    CONFIRM = 4


@dataclass(frozen=True)
class Claim:
    purpose: Purpose
    # The issue for unsubscribe/open/click; the list for a subscription confirmation.
    issue_id: int
    subscriber_id: int
    link: int | None = None


class _HmacSha256:
    """HMAC-SHA256 under one key with the padded-key states hashed once (RFC 2104, section
    4): each MAC then costs two hash copies instead of a key set-up, which matters when one
    message carries a signed URL for every link."""

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
        self._macs = {
            purpose: _HmacSha256(hmac.digest(master, f"newsletter token key:{purpose.name}".encode(), "sha256"))
            for purpose in Purpose
        }

    def _raw(self, purpose: Purpose, issue_id: int, subscriber_id: int, link: int) -> bytes:
        claim = _CLAIM.pack(TOKEN_VERSION, purpose, issue_id, subscriber_id, link)
        return claim + self._macs[purpose](claim)[:MAC_BYTES]

    def sign(self, purpose: Purpose, issue_id: int, subscriber_id: int, link: int | None = None) -> str:
        raw = self._raw(purpose, issue_id, subscriber_id, link or 0)
        return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).decode("ascii")

    def sign_clicks(self, issue_id: int, subscriber_id: int, count: int) -> list[bytes]:
        """Click tokens for links 0..count-1 of one message, as ASCII bytes: the same tokens
        as `sign(Purpose.CLICK, ...)`, with one base64 call for all of them."""
        # `_raw` and `_HmacSha256.__call__` inlined: one message signs dozens of links, and
        # on a slow core the call overhead was a third of the cost (bench/bench_message.py).
        mac = self._macs[Purpose.CLICK]
        inner, outer = mac._inner.copy, mac._outer.copy
        pack = _CLAIM.pack
        pieces = []
        for link in range(count):
            claim = pack(TOKEN_VERSION, Purpose.CLICK, issue_id, subscriber_id, link)
            digest = inner()
            digest.update(claim)
            final = outer()
            final.update(digest.digest())
            pieces.append(claim)
            pieces.append(final.digest()[:MAC_BYTES])
        encoded = binascii.b2a_base64(b"".join(pieces), newline=False).translate(_URLSAFE)
        return [encoded[start : start + TOKEN_LENGTH] for start in range(0, len(encoded), TOKEN_LENGTH)]

    def verify(self, token: str, purpose: Purpose) -> Claim:
        """The claim in `token`, or TokenError if it is malformed, altered or for another purpose."""
        if len(token) != TOKEN_LENGTH:
            raise TokenError("malformed token")
        try:
            raw = base64.urlsafe_b64decode(token)
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        claim, mac = raw[: _CLAIM.size], raw[_CLAIM.size :]
        if not hmac.compare_digest(mac, self._macs[purpose](claim)[:MAC_BYTES]):
            raise TokenError("token signature does not verify")
        version, kind, issue_id, subscriber_id, link = _CLAIM.unpack(claim)
        if version != TOKEN_VERSION or kind != purpose:
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
