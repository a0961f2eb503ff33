"""DKIM signatures (RFC 6376) for senders whose SMTP server does not sign for them.

SES signs with the identity's Easy DKIM keys, so this is for `[transport.smtp]` only:
`dkim_selector` and `dkim_key_file` (a PEM RSA private key) make every message carry a
`DKIM-Signature` for the From domain, which is what DMARC alignment needs (RFC 7489
section 3.1.1).  The public key is published as a TXT record at
`SELECTOR._domainkey.FROM-DOMAIN`; `newsletter doctor` checks that it is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import ConfigError, TransportError

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from newsletter.config import Settings

# What is signed.  Gmail's bulk-sender rules ask for From, To, Subject, Date and Message-ID
# at least; RFC 8058 section 4 requires List-Unsubscribe and List-Unsubscribe-Post to be
# covered, or a relay could point the one-click POST elsewhere.  A header named once more
# than it occurs is signed as absent too ("oversigned", RFC 6376 section 8.15), so nobody
# can add a second From, Subject or List-Unsubscribe that a reader's client would show.
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
)
OVERSIGNED = ("from", "subject", "list-unsubscribe", "list-unsubscribe-post")
# relaxed/relaxed (RFC 6376 section 3.4): survives the header refolding and trailing-space
# changes relays make; "simple" bodies break on the smallest rewrap.
CANONICALIZATION = (b"relaxed", b"relaxed")


class DkimSigner:
    """Signs messages for `domain` with `selector`'s private key."""

    def __init__(self, *, selector: str, domain: str, private_key: bytes) -> None:
        import dkim

        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self.private_key = private_key
        self.headers = tuple(name.encode("ascii") for name in SIGNED_HEADERS + OVERSIGNED)
        self._dkim = dkim
        # Fails now, naming the file, rather than on the first message.
        dkim.parse_pem_private_key(private_key)

    def public_key(self) -> bytes:
        """The public half, DER SubjectPublicKeyInfo: what the selector's p= must hold."""
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self.private_key, password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __call__(self, message: bytes) -> bytes:
        """`message` with its DKIM-Signature header field in front."""
        dkim = self._dkim
        try:
            signature = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.private_key,
                canonicalize=CANONICALIZATION,
                include_headers=list(self.headers),
                linesep=b"\r\n",
            )
        except dkim.DKIMException as err:
            # Every message would fail the same way: stop the send rather than fail each reader.
            raise TransportError(f"DKIM signing failed: {err}", permanent=True, stops_send=True) from err
        return signature + message


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The signer `[transport.smtp] dkim_selector` and `dkim_key_file` ask for, or None."""
    smtp = settings.transport.smtp
    if not smtp.dkim_selector and not smtp.dkim_key_file:
        return None
    if not (smtp.dkim_selector and smtp.dkim_key_file):
        missing = "dkim_key_file" if smtp.dkim_selector else "dkim_selector"
        raise ConfigError(
            "DKIM signing needs both dkim_selector and dkim_key_file",
            key=f"transport.smtp.{missing}",
            source=settings.source,
        )
    path: Path = settings.path(smtp.dkim_key_file)
    try:
        key = path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"cannot read the DKIM key {path}: {err.strerror}",
            key="transport.smtp.dkim_key_file",
            source=settings.source,
        ) from err
    import dkim

    try:
        return DkimSigner(selector=smtp.dkim_selector, domain=settings.sender_domain, private_key=key)
    except (dkim.KeyFormatError, dkim.UnparsableKeyError, ValueError) as err:
        raise ConfigError(
            f"{path} is not a PEM RSA private key ({str(err).splitlines()[0]})",
            key="transport.smtp.dkim_key_file",
            source=settings.source,
        ) from err
