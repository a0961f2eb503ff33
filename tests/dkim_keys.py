"""A DKIM key pair for tests: the private key in a PEM file, the public key as the TXT record
a DNS server publishes at SELECTOR._domainkey.DOMAIN."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SELECTOR = "nl2026"


def make_key(directory: Path) -> tuple[Path, str]:
    """A 2048-bit RSA key in a PEM file, and its DKIM TXT record (RFC 6376 section 3.6.1)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "dkim.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}"
