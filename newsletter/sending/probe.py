"""Sends that are not the send: a [TEST] copy to a few addresses, and a dry run that builds
every message and sends none.  Neither touches the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from newsletter.errors import InputError, TransportError
from newsletter.mail.message import Recipient
from newsletter.mail.message_id import random_message_id
from newsletter.sending.plan import TEST_SUBJECT_PREFIX, SendPlan
from newsletter.store import ledger
from newsletter.store.schema import FAILED, QUEUED, SENDING, TEMPORARY
from newsletter.transports.base import Transport
from newsletter.transports.configured import open_transport


@dataclass(frozen=True)
class TestResult:
    address: str
    provider_message_id: str | None
    error: str | None


def send_test(plan: SendPlan, addresses: list[str], *, transport: Transport | None = None) -> list[TestResult]:
    """Send the issue to `addresses` only, subject prefixed [TEST], no ledger rows.

    Its links and unsubscribe link work (they name subscriber 0, whom the web side treats as
    a test reader), so the editor can click through what subscribers will get.
    """
    from newsletter.audience.addresses import normalize_address

    factory = plan.message_factory(subject_prefix=TEST_SUBJECT_PREFIX)
    results = []
    owned = transport is None
    transport = transport or open_transport(plan.settings)
    try:
        for raw in addresses:
            address = normalize_address(raw).email
            message = factory.build(Recipient(0, address), message_id=random_message_id(plan.settings.sender_domain))
            try:
                provider_id = transport.send(
                    message.data,
                    sender=plan.settings.from_address,
                    recipient=message.recipient,
                    tags={"issue": plan.stored.slug, "test": "yes"},
                )
                results.append(TestResult(address, provider_id, None))
            except TransportError as err:
                results.append(TestResult(address, None, str(err)))
    finally:
        if owned:
            transport.close()
    return results


@dataclass
class DryRunSummary:
    built: int = 0
    bytes: int = 0
    unsendable: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def dry_run(plan: SendPlan, *, progress: Callable[[int], None] | None = None) -> DryRunSummary:
    """Build every message the send would send, and send none; the ledger is not touched.

    Recipients are streamed from the database, so memory stays flat in the audience size.
    """
    import sqlalchemy as sa

    from newsletter.store.schema import deliveries, subscribers

    factory = plan.message_factory()
    if plan.snapshotted:
        # The rows the send would take: as `_prepare_queue` and `_settle_uncertain` requeue.
        wanted = deliveries.c.status == QUEUED
        if plan.options.retry_failed:
            wanted = wanted | ((deliveries.c.status == FAILED) & (deliveries.c.failure == TEMPORARY))
        if plan.options.resend_uncertain:
            wanted = wanted | (deliveries.c.status == SENDING)
        query = (
            sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.name)
            .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
            .where(deliveries.c.issue_id == plan.stored.id, wanted)
        )
    else:
        query = ledger.audience_query(plan.list_id)
    summary = DryRunSummary()
    started = time.monotonic()
    with plan.store.read() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
        for subscriber_id, email, name in rows:
            try:
                message = factory.build(Recipient(subscriber_id, email, name))
            except InputError as err:
                summary.unsendable.append(str(err))
                continue
            summary.built += 1
            summary.bytes += len(message.data)
            if progress is not None and summary.built % 1000 == 0:
                progress(summary.built)
    summary.elapsed = time.monotonic() - started
    return summary
