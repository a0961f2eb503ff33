"""The settings the web app refuses to start with, whatever starts it (`newsletter serve`,
`uvicorn newsletter.web.asgi:app`, any other ASGI server): each is a way for a stranger to
act for a reader or the editor.

    refuse_unsafe_settings(settings)        # raises ConfigError naming the key

- The example configuration's demo secret is public: with it anyone can sign an unsubscribe
  or a confirmation link for any subscriber.  Only a loopback `base_url` may use it.
- A short secret can be guessed offline from one signed link (HMAC keys shorter than the
  hash output weaken it: RFC 2104, section 3, asks for at least L = 32 bytes for SHA-256).
  The outbox transport sends nothing beyond this machine, so the local demo keeps working.
- A short admin password on /stats/ falls to guessing over the network.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from newsletter.config import DEMO_SECRET, MIN_SECRET_BYTES, Settings
from newsletter.errors import ConfigError

MIN_ADMIN_PASSWORD_CHARACTERS = 12


def refuse_unsafe_settings(settings: Settings, *, listen_host: str | None = None) -> None:
    """ConfigError for the first unsafe setting; `listen_host` is where the server binds,
    when the caller knows it (`newsletter serve`)."""
    secret = settings.newsletter.secret
    if secret == DEMO_SECRET:
        public_url = not is_loopback(urlsplit(settings.base_url).hostname or "")
        public_listen = listen_host is not None and not is_loopback(listen_host)
        if public_url or public_listen or settings.transport.kind != "outbox":
            raise ConfigError(
                "is the example configuration's demo secret, which anyone can read; set a long random one "
                "(NEWSLETTER_SECRET) before serving beyond this machine",
                key="newsletter.secret",
                source=settings.source,
            )
    if settings.transport.kind != "outbox" and len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"must be at least {MIN_SECRET_BYTES} bytes long with the {settings.transport.kind} transport "
            "(make one: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')",
            key="newsletter.secret",
            source=settings.source,
        )
    password = settings.web.admin_password
    if password and len(password) < MIN_ADMIN_PASSWORD_CHARACTERS:
        raise ConfigError(
            f"must be at least {MIN_ADMIN_PASSWORD_CHARACTERS} characters long (or empty, which closes /stats/)",
            key="web.admin_password",
            source=settings.source,
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
