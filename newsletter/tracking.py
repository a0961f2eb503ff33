"""Signed tokens and the URLs built from them: the only module that holds the secret.

A token is opaque and URL-safe: base64url of a small binary claim (what it is for, the
issue, the subscriber, and for a click the link) followed by a truncated HMAC-SHA256 of
that claim.  Verifying recomputes the MAC and compares in constant time, so a token cannot
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
# 128 bits of MAC: forging one takes ~2**128 guesses, and it keeps URLs short.
MAC_BYTES = 16
# version, purpose, issue id (or list id), subscriber id
_CLAIM = struct.Struct(">BBIQ")
_LINK = struct.Struct(">H")


class Purpose(IntEnum):
    UNSUBSCRIBE = 1
    OPEN = 2
    CLICK = 3
    CONFIRM = 4


@dataclass(frozen=True)
class Claim:
    purpose: Purpose
    # The issue for unsubscribe/open/click; the list for a subscription confirmation.
    issue_id: int
    subscriber_id: int
    link: int | None = None


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
        self._keys = {
            purpose: hmac.digest(master, f"newsletter token key:{purpose.name}".encode(), "sha256") for purpose in Purpose
        }

    def sign(self, purpose: Purpose, issue_id: int, subscriber_id: int, link: int | None = None) -> str:
        claim = _CLAIM.pack(TOKEN_VERSION, purpose, issue_id, subscriber_id)
        if purpose is Purpose.CLICK:
            claim += _LINK.pack(link or 0)
        mac = hmac.digest(self._keys[purpose], claim, "sha256")[:MAC_BYTES]
        return base64.urlsafe_b64encode(claim + mac).rstrip(b"=").decode("ascii")

    def verify(self, token: str, purpose: Purpose) -> Claim:
        """The claim in `token`, or TokenError if it is malformed, altered or for another purpose."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise TokenError("malformed token") from None
        expected = _CLAIM.size + (_LINK.size if purpose is Purpose.CLICK else 0) + MAC_BYTES
        if len(raw) != expected:
            raise TokenError("malformed token")
        claim, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        good = hmac.digest(self._keys[purpose], claim, "sha256")[:MAC_BYTES]
        if not hmac.compare_digest(mac, good):
            raise TokenError("token signature does not verify")
        version, kind, issue_id, subscriber_id = _CLAIM.unpack_from(claim)
        if version != TOKEN_VERSION or kind != purpose:
            raise TokenError("token is not for this purpose")
        link = _LINK.unpack_from(claim, _CLAIM.size)[0] if purpose is Purpose.CLICK else None
        return Claim(Purpose(kind), issue_id, subscriber_id, link)


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

    def confirm(self, list_id: int, subscriber_id: int) -> str:
        return f"{self.base_url}/confirm/{self.tokens.sign(Purpose.CONFIRM, list_id, subscriber_id)}"

    def issue_page(self, slug: str) -> str:
        return f"{self.base_url}/issues/{slug}"


def sample_links(base_url: str) -> Links:
    """Links of real length under a throwaway secret: for size estimates, never for sending."""
    return Links(base_url, Tokens(hashlib.sha256(b"sample only").hexdigest()))
