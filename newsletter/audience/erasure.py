"""Erasure that lasts: a reader's right to have their data deleted (GDPR art. 17), kept.

Erasing someone (`newsletter subscribers remove`, or "erase me" on the preference page)
deletes the subscriber and everything that hangs on them (memberships, ledger rows, events,
pending confirmations: ON DELETE CASCADE), and keeps only a keyed digest of the normalised
address in `erasures` (newsletter.tokens.AddressDigests).  From then on no import, no
`subscribers add` and no subscribe form brings the address back, unless the editor says
`--resubscribe` because the person asked to come back: an erased address that reappears in
an old spreadsheet must not start receiving mail again.  The form has no such flag: it
sends nothing to an erased address (and answers as for anyone else).

The digest is keyed with the configured secret, so the table cannot be checked against a
list of guessed addresses without it; changing the secret makes the recorded digests stop
matching (newsletter.tokens.AddressDigests).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from newsletter.audience.addresses import normalize_address
from newsletter.config import Settings
from newsletter.errors import ConfigError, InputError
from newsletter.store import Store
from newsletter.store.erasures import delete_subscriber, erased_at, erasure_count, forget_erasures, record_erasure
from newsletter.store.memberships import address_by_key, address_of
from newsletter.store.schema import utcnow
from newsletter.tokens import AddressDigests


def address_digests(settings: Settings) -> AddressDigests | None:
    """The digests under the configured secret, None when no secret is configured."""
    return AddressDigests(settings.newsletter.secret) if settings.newsletter.secret else None


class ErasureCheck:
    """Which address keys are on the erasure list, for the writers that add people.

    Without a secret nothing can be checked; that is only refused when the list is not
    empty, so an installation that never erased anyone works without one.
    """

    def __init__(self, conn: sa.Connection, digests: AddressDigests | None) -> None:
        self.digests = digests
        if digests is None and erasure_count(conn):
            raise ConfigError(
                "people have been erased from this database, and checking an address against them needs the "
                "secret they were recorded with: set [newsletter] secret or NEWSLETTER_SECRET",
                key="newsletter.secret",
            )

    def erased(self, conn: sa.Connection, keys: list[str]) -> dict[str, datetime]:
        """{address key: when it was erased} for the erased ones among `keys`."""
        if self.digests is None or not keys:
            return {}
        digest_of = {self.digests.digest(key): key for key in keys}
        return {digest_of[digest]: moment for digest, moment in erased_at(conn, list(digest_of)).items()}

    def lift(self, conn: sa.Connection, keys: list[str]) -> None:
        """The person asked to come back: their address may be added again."""
        if self.digests is not None and keys:
            forget_erasures(conn, [self.digests.digest(key) for key in keys])


def erased_message(email: str, moment: datetime) -> str:
    return (
        f"{email} was erased on {moment:%Y-%m-%d} at their request; not added back "
        "(pass --resubscribe if they asked to come back)"
    )


def refuse_if_erased(conn: sa.Connection, check: ErasureCheck, key: str, email: str, *, resubscribe: bool) -> None:
    """For one new address: InputError if it was erased, unless `resubscribe` (which lifts it)."""
    found = check.erased(conn, [key])
    if not found:
        return
    if not resubscribe:
        raise InputError(erased_message(email, found[key]))
    check.lift(conn, [key])


def is_erased(store: Store, digests: AddressDigests | None, email: str) -> bool:
    """Whether the address is on the erasure list (False when no secret could check it)."""
    key = normalize_address(email).key
    with store.read() as conn:
        if digests is None:
            return False
        return bool(erased_at(conn, [digests.digest(key)]))


def erase_subscriber(
    store: Store,
    digests: AddressDigests,
    *,
    source: str,
    email: str | None = None,
    subscriber_id: int | None = None,
) -> str:
    """Erase a subscriber, found by address or id (see the module docstring); returns the
    erased address.  InputError when there is nobody to erase."""
    if (email is None) == (subscriber_id is None):
        raise TypeError("pass exactly one of email or subscriber_id")
    with store.begin() as conn:
        found = address_by_key(conn, normalize_address(email).key) if email is not None else None
        if subscriber_id is not None:
            found = address_of(conn, subscriber_id)
        if found is None:
            raise InputError(f"no subscriber {email if email is not None else f'#{subscriber_id}'}")
        key = delete_subscriber(conn, found.id)
        assert key is not None  # found in this transaction
        record_erasure(conn, digests.digest(key), key_id=digests.key_id, source=source, at=utcnow())
    return found.email
