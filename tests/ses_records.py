"""SES event records from the AWS documentation's examples (tests/fixtures/ses), aimed at
messages of our own ledger, and wrapped in SNS envelopes signed as SNS signs them.

Only what ties a record to our database is changed: `mail.messageId` (the id SES returned
at send), the recipient addresses, and where a test needs it a time or bounce type.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sns_signing import sign_sns_message

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
CERT_PATH = "/SimpleNotificationService-test.pem"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The per-type object of each event-publishing record, and where its addresses are.
_DETAIL = {
    "Bounce": ("bounce", "bouncedRecipients"),
    "Complaint": ("complaint", "complainedRecipients"),
    "DeliveryDelay": ("deliveryDelay", "delayedRecipients"),
    "Delivery": ("delivery", None),
    "Send": ("send", None),
    "Reject": ("reject", None),
    "Open": ("open", None),
    "Click": ("click", None),
    "Subscription": ("subscription", None),
}


def ses_record(
    event_type: str,
    *,
    message_id: str,
    recipient: str,
    at: datetime | None = None,
    message_id_header: str | None = None,
    **detail_changes: Any,
) -> dict[str, Any]:
    """The documentation's `event_<type>.json` record about our message to `recipient`.

    `at` replaces the event's own timestamp; `detail_changes` are set on the per-type
    object (e.g. bounceType="Transient"); `message_id_header` puts our Message-ID among the
    headers SES reports, as it does for raw sends.
    """
    name = "event_delivery_delay.json" if event_type == "DeliveryDelay" else f"event_{event_type.lower()}.json"
    record = copy.deepcopy(fixture(name))
    key, addresses = _DETAIL[event_type]
    mail = record["mail"]
    mail["messageId"] = message_id
    mail["destination"] = [recipient]
    if "commonHeaders" in mail:
        mail["commonHeaders"]["to"] = [recipient]
        mail["commonHeaders"].pop("messageId", None)
    mail["headers"] = [header for header in mail.get("headers", []) if header["name"].lower() != "message-id"]
    if message_id_header is not None:
        mail["headers"].append({"name": "Message-ID", "value": message_id_header})
    detail = record.setdefault(key, {})
    if addresses:
        for item in detail[addresses]:
            item["emailAddress"] = recipient
    if event_type == "Delivery":
        detail["recipients"] = [recipient]
    if at is not None:
        if "timestamp" in detail or event_type not in ("Send", "Reject"):
            detail["timestamp"] = iso(at)
        else:
            mail["timestamp"] = iso(at)
    detail.update(detail_changes)
    return record


def sns_notification(
    record: dict[str, Any] | str,
    *,
    cert_url: str,
    key,
    version: str = "1",
    topic: str = TOPIC,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """An SNS HTTP(S) Notification carrying `record`, signed with `key`."""
    body = fixture("sns_notification.json")
    body.pop("Signature", None)
    body.pop("Subject", None)
    body.update(
        Message=record if isinstance(record, str) else json.dumps(record),
        MessageId=str(uuid.uuid4()),
        TopicArn=topic,
        Timestamp=iso(timestamp or datetime.now(UTC)),
        SigningCertURL=cert_url,
    )
    return sign_sns_message(body, key, version)
