"""The transport the configuration names, opened."""

from __future__ import annotations

from typing import TYPE_CHECKING

from newsletter.mail.dkim_signer import dkim_signer
from newsletter.transports.base import Transport

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from newsletter.config import Settings


def open_transport(settings: Settings, *, workers: int = 1) -> Transport:
    """The transport named by `settings.transport.kind`, ready to share between `workers` threads.

    Each provider module is imported here, on demand, so that `newsletter --help` never
    pays for boto3 (about 0.3 s to import).
    """
    kind = settings.transport.kind
    if kind == "outbox":
        from newsletter.transports.outbox import OutboxTransport

        return OutboxTransport(settings.path(settings.transport.outbox.path))
    if kind == "smtp":
        from newsletter.transports.smtp import SmtpTransport

        smtp = settings.transport.smtp
        return SmtpTransport(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=smtp.password,
            timeout=smtp.timeout,
            local_hostname=smtp.local_hostname or settings.sender_domain,
            sign=dkim_signer(settings),
        )
    if kind == "ses":
        from newsletter.transports.ses.send import SesTransport

        ses = settings.transport.ses
        return SesTransport(
            region=ses.region,
            endpoint_url=ses.endpoint_url or None,
            configuration_set=ses.configuration_set or None,
            max_connections=workers,
        )
    # config.py validates the kind; reaching this is a programming error, not a user's.
    raise AssertionError(f"unknown transport kind {kind!r}")
