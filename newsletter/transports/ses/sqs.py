"""`newsletter events pull`: SES events from an SQS queue, for servers SNS cannot reach.

    summary = pull_events(settings, store, queue_url, once=True, report=print)

The configuration set publishes to an SNS topic, and an SQS queue subscribed to the topic
keeps the events until this reads them, so a deployment without a public HTTPS endpoint
loses nothing.  Each message is parsed (`event_from_sqs_body`: an SNS envelope, or the SES
record itself with raw message delivery), applied in a database transaction, and deleted
from the queue only after that transaction committed.  A crash between the commit and the
delete means SQS delivers the message again, which the event's dedupe key turns into a
no-op; the other order could lose an event.

A message that cannot be read (not JSON, not an SES event, an envelope that does not
verify) is reported and left in the queue: after its visibility timeout SQS offers it again,
and the queue's redrive policy moves it to a dead-letter queue after `maxReceiveCount`
receives, where a person can look at it (SQS Developer Guide, "Using dead-letter queues").
Deleting it here would destroy the evidence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from newsletter.config import Settings
from newsletter.errors import NewsletterError, WebhookError
from newsletter.feedback.apply import Applied, apply_feedback_event
from newsletter.feedback.suppression import SuppressionPolicy
from newsletter.interrupts import stop_on_signals
from newsletter.store import Store
from newsletter.transports.ses.events import event_from_sqs_body
from newsletter.transports.ses.sns import SnsVerifier

log = logging.getLogger(__name__)

# SQS long polling waits at most 20 seconds (SQS API Reference, ReceiveMessage
# WaitTimeSeconds); a receive returns at most 10 messages.
MAX_WAIT_SECONDS = 20
MAX_BATCH = 10


class QueueError(NewsletterError):
    """The queue cannot be read or written: wrong URL, no access, SQS unreachable."""


@dataclass
class PullSummary:
    received: int = 0
    recorded: int = 0
    duplicates: int = 0
    ignored: int = 0
    # Messages left in the queue because they could not be read.
    poison: int = 0
    deleted: int = 0
    interrupted: bool = False
    suppressed: list[tuple[int, str]] = field(default_factory=list)

    def describe(self) -> str:
        line = (
            f"{self.received} received: {self.recorded} recorded, {self.duplicates} already seen, "
            f"{self.ignored} ignored, {self.poison} unreadable (left in the queue); {self.deleted} deleted"
        )
        if self.suppressed:
            line += f"; {len(self.suppressed)} subscriber(s) suppressed"
        if self.interrupted:
            line += "; stopped by Ctrl-C"
        return line


Report = Callable[[str], None]


def sqs_client(settings: Settings):
    """A boto3 SQS client in the SES region (or at the configured endpoint, for tests)."""
    import boto3

    ses = settings.transport.ses
    return boto3.session.Session().client("sqs", region_name=ses.region, endpoint_url=ses.endpoint_url or None)


def pull_events(
    settings: Settings,
    store: Store,
    queue_url: str,
    *,
    once: bool = False,
    max_messages: int | None = None,
    wait_seconds: int = MAX_WAIT_SECONDS,
    verifier: SnsVerifier | None = None,
    client: Any = None,
    report: Report | None = None,
) -> PullSummary:
    """Read, apply and delete messages until interrupted; with `once`, until a receive comes
    back empty; with `max_messages`, after that many messages at most.

    SNS envelopes are verified (signature, topic, certificate host, but not age: SQS keeps
    messages for days) when `settings.events.topic_arns` lists topics or a `verifier` is
    given.  Without either, envelopes are trusted like raw messages are: only principals
    the queue policy allows can write to the queue.
    """
    report = report or (lambda line: None)
    if verifier is None and settings.events.topic_arns:
        verifier = SnsVerifier.from_settings(settings.events, max_age=None)
    policy = SuppressionPolicy.from_settings(settings.events)
    summary = PullSummary()
    stop = threading.Event()
    with stop_on_signals(stop, interrupt=True):
        try:
            client = client or sqs_client(settings)
            report(f"reading {queue_url}" + (" until it is empty" if once else " (Ctrl-C to stop)"))
            if verifier is None:
                report(
                    "note: events.topic_arns is empty, so SNS envelopes are not verified (the queue policy is trusted)"
                )
            while not stop.is_set() and (max_messages is None or summary.received < max_messages):
                batch = min(MAX_BATCH, max_messages - summary.received) if max_messages is not None else MAX_BATCH
                messages = _receive(client, queue_url, batch, wait_seconds)
                if not messages:
                    if once:
                        break
                    continue
                done: list[dict[str, str]] = []
                try:
                    for message in messages:
                        summary.received += 1
                        if _handle(message, store, policy, verifier, summary, report):
                            done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
                finally:
                    # Also when interrupted mid-batch: what committed is deleted, the rest
                    # returns to the queue when its visibility timeout ends.
                    _delete(client, queue_url, done, summary, report)
        except KeyboardInterrupt:
            stop.set()
    summary.interrupted = stop.is_set()
    return summary


def _handle(
    message: dict[str, Any],
    store: Store,
    policy: SuppressionPolicy,
    verifier: SnsVerifier | None,
    summary: PullSummary,
    report: Report,
) -> bool:
    """Apply one message; True when it may be deleted."""
    sqs_id = message.get("MessageId", "?")
    try:
        event = event_from_sqs_body(message.get("Body", ""), verifier=verifier)
    except WebhookError as err:
        summary.poison += 1
        receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
        report(f"unreadable message {sqs_id} (received {receives} times), left for the queue's redrive policy: {err}")
        log.warning("SQS message %s unreadable: %s", sqs_id, err)
        return False
    if event is None:
        # SES's set-up notice or an SNS subscription confirmation: nothing to apply.
        summary.ignored += 1
        report(f"message {sqs_id}: a notice with no SES event, deleted")
        return True
    with store.begin() as conn:
        result = apply_feedback_event(conn, event, policy)
    if result.applied is Applied.RECORDED:
        summary.recorded += 1
    elif result.applied is Applied.DUPLICATE:
        summary.duplicates += 1
    else:
        summary.ignored += 1
    summary.suppressed.extend(result.suppressed)
    report(result.describe())
    return True


def _receive(client, queue_url: str, batch: int, wait_seconds: int) -> list[dict[str, Any]]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch,
            WaitTimeSeconds=max(0, min(wait_seconds, MAX_WAIT_SECONDS)),
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
    except ClientError as err:
        raise QueueError(f"cannot read {queue_url}: {_client_error_text(err)}") from err
    except BotoCoreError as err:
        raise QueueError(f"cannot read {queue_url}: {err}") from err
    return list(answer.get("Messages", []))


def _delete(client, queue_url: str, entries: list[dict[str, str]], summary: PullSummary, report: Report) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    if not entries:
        return
    try:
        answer = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    except (ClientError, BotoCoreError) as err:
        # Applied and committed, so nothing is lost: SQS delivers them again and the dedupe
        # key makes that a no-op.  Stop, though, since every further delete would fail too.
        text = _client_error_text(err) if isinstance(err, ClientError) else str(err)
        raise QueueError(
            f"cannot delete from {queue_url} (the events are stored; SQS will redeliver them): {text}"
        ) from err
    summary.deleted += len(answer.get("Successful", []))
    for failure in answer.get("Failed", []):
        reason = f"{failure.get('Code')}: {failure.get('Message')}"
        report(f"could not delete a message ({reason}); it is stored and will be seen again")


def _client_error_text(err) -> str:
    error = err.response.get("Error", {})
    return f"{error.get('Code', 'error')}: {error.get('Message', str(err))}"
