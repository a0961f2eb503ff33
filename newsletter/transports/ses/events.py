"""Amazon SES events -> `FeedbackEvent`: event publishing records (`eventType`) and the older
identity notifications (`notificationType`), as SNS delivers them over HTTP(S) or into an
SQS queue; pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from newsletter.errors import WebhookError
from newsletter.feedback.event import EventKind, FeedbackEvent
from newsletter.mail.message_id import parse_ledger_message_id
from newsletter.transports.ses.sns import (
    SnsMessage,
    SnsMessageType,
    SnsVerifier,
    json_object,
    parse_timestamp,
)

# eventType (event publishing) and notificationType (identity notifications: Bounce, Complaint,
# Delivery only) -> our kind and the key of the per-type object.  The SES guide spells the
# rendering failure "Rendering Failure" in records and "RenderingFailure" in prose; take both.
_EVENT_TYPES: dict[str, tuple[EventKind, str]] = {
    "Send": (EventKind.SEND, "send"),
    "Delivery": (EventKind.DELIVERY, "delivery"),
    "Bounce": (EventKind.BOUNCE, "bounce"),
    "Complaint": (EventKind.COMPLAINT, "complaint"),
    "Reject": (EventKind.REJECT, "reject"),
    "DeliveryDelay": (EventKind.DELIVERY_DELAY, "deliveryDelay"),
    "Open": (EventKind.OPEN, "open"),
    "Click": (EventKind.CLICK, "click"),
    "Rendering Failure": (EventKind.RENDERING_FAILURE, "failure"),
    "RenderingFailure": (EventKind.RENDERING_FAILURE, "failure"),
    "Subscription": (EventKind.SUBSCRIPTION, "subscription"),
}

# SES publishes one notice when a topic is attached to an identity (notificationType
# "AmazonSnsSubscriptionSucceeded") and a plain-text line when an event destination is created.
# They are authentic and carry no event: acknowledged and ignored, never an error (an error
# would make SNS retry them for an hour).
_SETUP_NOTIFICATION_TYPES = frozenset({"AmazonSnsSubscriptionSucceeded"})
_SETUP_MESSAGE_PREFIX = "Successfully validated SNS topic"


def parse_ses_event(
    record: Mapping[str, Any] | str | bytes, *, sns_message_id: str | None = None
) -> FeedbackEvent | None:
    """An SES event record (the `Message` of an SNS notification, or a raw SQS body) as an
    `FeedbackEvent`; None for SES's setup notices; `WebhookError` for anything not understood."""
    if isinstance(record, (str, bytes)) and _is_setup_text(record):
        return None
    fields = json_object(record, what="SES event")
    type_name = fields.get("eventType", fields.get("notificationType"))
    if isinstance(type_name, str) and type_name in _SETUP_NOTIFICATION_TYPES:
        return None
    if not isinstance(type_name, str) or type_name not in _EVENT_TYPES:
        raise WebhookError(f"SES event: unknown eventType/notificationType {type_name!r}")
    kind, detail_key = _EVENT_TYPES[type_name]

    mail = _object(fields, "mail", where="SES event")
    ses_message_id = _text(mail, "messageId", where="SES event mail")
    destination = _addresses(mail.get("destination"))
    # SES sends "send": {} and may leave an empty object out entirely; other kinds need theirs.
    detail = fields.get(detail_key)
    if detail is None and kind in (EventKind.SEND, EventKind.REJECT, EventKind.RENDERING_FAILURE):
        detail = {}
    if not isinstance(detail, Mapping):
        raise WebhookError(f"SES {type_name} event {ses_message_id}: {detail_key} missing")

    values: dict[str, Any] = {}
    recipients = destination
    if kind is EventKind.BOUNCE:
        listed = _recipient_objects(detail.get("bouncedRecipients"))
        recipients = tuple(address for address, _ in listed)
        values["bounce_type"] = _optional_text(detail, "bounceType")
        values["bounce_subtype"] = _optional_text(detail, "bounceSubType")
        values["permanent"] = values["bounce_type"] == "Permanent"
        values["detail"] = _first(diagnostic for _, diagnostic in listed)
    elif kind is EventKind.COMPLAINT:
        recipients = tuple(address for address, _ in _recipient_objects(detail.get("complainedRecipients")))
        values["complaint_feedback_type"] = _optional_text(detail, "complaintFeedbackType")
        values["complaint_subtype"] = _optional_text(detail, "complaintSubType")
        values["user_agent"] = _optional_text(detail, "userAgent")
    elif kind is EventKind.DELIVERY:
        recipients = _addresses(detail.get("recipients")) or destination
        values["detail"] = _optional_text(detail, "smtpResponse")
    elif kind is EventKind.DELIVERY_DELAY:
        listed = _recipient_objects(detail.get("delayedRecipients"))
        recipients = tuple(address for address, _ in listed) or destination
        values["detail"] = _first(diagnostic for _, diagnostic in listed) or _optional_text(detail, "delayType")
    elif kind in (EventKind.OPEN, EventKind.CLICK):
        values["user_agent"] = _optional_text(detail, "userAgent")
        values["ip_address"] = _optional_text(detail, "ipAddress")
        if kind is EventKind.CLICK:
            values["link"] = _text(detail, "link", where=f"SES Click event {ses_message_id}")
    elif kind is EventKind.REJECT:
        values["detail"] = _optional_text(detail, "reason")
    elif kind is EventKind.RENDERING_FAILURE:
        values["detail"] = _optional_text(detail, "errorMessage")
    elif kind is EventKind.SUBSCRIPTION:
        preferences = detail.get("newTopicPreferences")
        if isinstance(preferences, Mapping) and isinstance(preferences.get("unsubscribeAll"), bool):
            values["unsubscribe_all"] = preferences["unsubscribeAll"]
        values["opted_out"] = _opted_out(detail)
        values["detail"] = _optional_text(detail, "source")
    if not recipients:
        raise WebhookError(f"SES {type_name} event {ses_message_id}: no recipients")

    # Send, Reject and Rendering Failure carry no time of their own: they happen at send time.
    raw_time = detail.get("timestamp") or mail.get("timestamp")
    if not isinstance(raw_time, str):
        raise WebhookError(f"SES {type_name} event {ses_message_id}: timestamp missing")
    timestamp = parse_timestamp(raw_time, what=f"SES {type_name} event timestamp")

    return FeedbackEvent(
        kind=kind,
        source="ses",
        provider_message_id=ses_message_id,
        message_id=_own_message_id(mail),
        recipients=recipients,
        timestamp=timestamp,
        dedupe_key=_dedupe_key(kind, ses_message_id, timestamp, recipients, detail),
        envelope_id=sns_message_id,
        tags=_tags(mail.get("tags")),
        payload=MappingProxyType(dict(fields)),
        **values,
    )


def event_from_sns(message: SnsMessage) -> FeedbackEvent | None:
    """The SES event carried by a verified SNS Notification (None for SES's setup notices)."""
    if message.type is not SnsMessageType.NOTIFICATION:
        raise WebhookError(f"SNS message {message.message_id} is a {message.type}, which carries no SES event")
    return parse_ses_event(message.message, sns_message_id=message.message_id)


def event_from_sqs_body(body: str | bytes, *, verifier: SnsVerifier | None = None) -> FeedbackEvent | None:
    """The SES event in an SQS message body, whether SNS wrapped it in its JSON envelope or
    delivered it raw ("raw message delivery"); None for SES setup notices and for SNS
    confirmations that landed in the queue.

    A raw body has no signature: it is trusted because only our AWS account can write to the
    queue.  An envelope is verified when a `verifier` is given (build it with max_age=None:
    SQS keeps messages for days); without one, only its form is checked.
    """
    if _is_setup_text(body):
        return None
    fields = json_object(body, what="SQS message body")
    if "eventType" in fields or "notificationType" in fields:
        return parse_ses_event(fields)
    if "Type" not in fields:
        raise WebhookError("SQS message body is neither an SNS envelope nor an SES event")
    message_type: Any
    message_id: Any
    text: Any
    if verifier is not None:
        message = verifier.verify(fields)
        message_type, message_id, text = message.type, message.message_id, message.message
    else:
        message_type, message_id, text = fields.get("Type"), fields.get("MessageId"), fields.get("Message")
    if message_type != SnsMessageType.NOTIFICATION:
        return None
    if not isinstance(message_id, str) or not isinstance(text, str):
        raise WebhookError("SNS envelope in SQS message: MessageId or Message missing")
    return parse_ses_event(text, sns_message_id=message_id)


def _dedupe_key(
    kind: EventKind, ses_message_id: str, timestamp: datetime, recipients: tuple[str, ...], detail: Mapping[str, Any]
) -> str:
    # Built from what the event *is*, not from the envelope it came in: an SNS retry, an SQS
    # redelivery, the same record read raw or enveloped, and a bounce reported both by event
    # publishing and by identity notifications all describe one event and must count once.
    # The SNS MessageId alone would miss all but the first.  feedbackId (bounce, complaint)
    # and link (click) separate events that share the rest.
    parts = [
        kind.value,
        ses_message_id,
        timestamp.isoformat(timespec="milliseconds"),
        ",".join(sorted(address.lower() for address in recipients)),
        str(detail.get("feedbackId") or ""),
        str(detail.get("link") or ""),
    ]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _is_setup_text(body: str | bytes) -> bool:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text.lstrip().startswith(_SETUP_MESSAGE_PREFIX)


def _object(fields: Mapping[str, Any], key: str, *, where: str) -> Mapping[str, Any]:
    value = fields.get(key)
    if not isinstance(value, Mapping):
        raise WebhookError(f"{where}: {key} missing")
    return value


def _text(fields: Mapping[str, Any], key: str, *, where: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookError(f"{where}: {key} missing")
    return value


def _optional_text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    return value if isinstance(value, str) and value else None


def _addresses(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str) and item)


def _recipient_objects(value: Any) -> list[tuple[str, str | None]]:
    """[(emailAddress, diagnosticCode)] from bouncedRecipients / complainedRecipients / delayedRecipients."""
    if not isinstance(value, list):
        return []
    listed = []
    for item in value:
        if isinstance(item, Mapping) and isinstance(item.get("emailAddress"), str) and item["emailAddress"]:
            listed.append((item["emailAddress"], _optional_text(item, "diagnosticCode")))
    return listed


def _first(values: Iterable[str | None]) -> str | None:
    return next((value for value in values if value), None)


def _tags(value: Any) -> Mapping[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        return MappingProxyType({})
    tags = {
        str(name): tuple(str(item) for item in items) if isinstance(items, list) else (str(items),)
        for name, items in value.items()
    }
    return MappingProxyType(tags)


def _own_message_id(mail: Mapping[str, Any]) -> str | None:
    """Our Message-ID among the headers SES reports with an event (`mail.headers`, or
    `mail.commonHeaders.messageId`), if one of them is ours.

    It finds the ledger row of an event that overtakes the send's own bookkeeping: the row
    is written `sending` (with its Message-ID) before the message leaves, but gets its SES
    id only when the sender records a batch of outcomes.
    """
    candidates: list[str] = []
    headers = mail.get("headers")
    if isinstance(headers, list):
        candidates += [
            header["value"]
            for header in headers
            if isinstance(header, Mapping)
            and isinstance(header.get("name"), str)
            and header["name"].lower() == "message-id"
            and isinstance(header.get("value"), str)
        ]
    common = mail.get("commonHeaders")
    if isinstance(common, Mapping) and isinstance(common.get("messageId"), str):
        candidates.append(common["messageId"])
    for candidate in candidates:
        own = parse_ledger_message_id(candidate)
        if own is not None:
            return own.header
    return None


def _opted_out(subscription: Mapping[str, Any]) -> bool:
    """Whether an SES Subscription event says the contact opted out.

    We keep one audience per list and no SES topics, so an opt-out from any topic is taken
    as leaving: honouring an unsubscribe is the law (CAN-SPAM, RFC 8058's one click), while
    a reader who meant less can subscribe again.  Opting *in* through SES is ignored:
    subscribing happens through our own double opt-in.
    """
    preferences = subscription.get("newTopicPreferences")
    if not isinstance(preferences, Mapping):
        return False
    if preferences.get("unsubscribeAll") is True:
        return True
    statuses = preferences.get("topicSubscriptionStatus")
    if not isinstance(statuses, list):
        return False
    return any(isinstance(item, Mapping) and item.get("subscriptionStatus") == "OptOut" for item in statuses)
