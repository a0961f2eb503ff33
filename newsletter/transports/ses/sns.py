"""Amazon SNS signature verification and Amazon SES event parsing; pure.

Three things live here, all without a database or a web framework:

* `SnsVerifier` checks that an SNS HTTP(S) message really comes from Amazon SNS, from a topic we
  subscribed to, and returns it as an `SnsMessage`.  The only network access is fetching the
  signing certificate, through an injected callable (`HttpFetcher` by default), and cached.
* `parse_ses_event`, `event_from_sns` and `event_from_sqs_body` turn SES event-publishing records
  (`eventType`) and the older identity notifications (`notificationType`) into a frozen `SesEvent`.
* `SuppressionPolicy` decides whether an event stops all later mail to the recipient.

The web endpoint (`/hooks/ses`) and `newsletter events pull` (SQS) call these; every refusal is a
`WebhookError` whose message says why, which the web layer answers with 403.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from newsletter.config import EventsSettings
from newsletter.errors import WebhookError

# ---------------------------------------------------------------------------------------------
# SNS messages
# ---------------------------------------------------------------------------------------------

# Where SNS signing certificates and SubscribeURLs live: https on sns.<region>.amazonaws.com
# (or .amazonaws.com.cn in the China regions), no port, no credentials.  Matched against the
# URL's "scheme://host[:port]", so one pattern decides both the scheme and the host; only a
# test passes a wider one (e.g. r"http://127\.0\.0\.1:\d+").
SNS_ORIGIN_PATTERN = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"

# SNS's total retry time for an HTTP/S endpoint "cannot be greater than 3,600 seconds. This is a
# hard limit" (AWS SNS Developer Guide, "Amazon SNS message delivery retries"), and a retry keeps
# the original Timestamp and MessageId.  So an authentic notification reaching the webhook more
# than an hour after its Timestamp is a replay, not a retry.  The extra 15 minutes absorb clock
# skew and throttled deliveries: rejecting a genuine bounce costs more than accepting a replay,
# which the dedupe key makes harmless anyway.  Messages read from SQS may legitimately be days
# old (SQS keeps them up to 14 days), so the SQS path builds its verifier with max_age=None.
SNS_HTTP_MAX_AGE = timedelta(hours=1, minutes=15)


class SnsMessageType(StrEnum):
    NOTIFICATION = "Notification"
    SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
    UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"


# The string to sign, per message type: each name then its value, each followed by "\n", in
# byte-sort order of the names (AWS SNS Developer Guide, "Verifying the signatures of Amazon SNS
# messages").  Subject is signed only when the notification carries one.
_SIGNED_FIELDS: dict[SnsMessageType, tuple[str, ...]] = {
    SnsMessageType.NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SnsMessageType.SUBSCRIPTION_CONFIRMATION: (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    SnsMessageType.UNSUBSCRIBE_CONFIRMATION: (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}
_OPTIONAL_SIGNED_FIELDS = frozenset({"Subject"})

# SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA (PKCS #1 v1.5 padding).
_SIGNATURE_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}

CertificateFetcher = Callable[[str], bytes]
"""Returns the body at a URL (a PEM certificate, a SubscribeURL's answer) or raises WebhookError."""


@dataclass(frozen=True)
class SnsMessage:
    """An SNS message whose signature, topic, certificate URL and age have been checked."""

    type: SnsMessageType
    message_id: str
    topic_arn: str
    timestamp: datetime
    message: str
    subject: str | None = None
    # SubscriptionConfirmation and UnsubscribeConfirmation only.
    subscribe_url: str | None = None
    token: str | None = None
    # Notification only.
    unsubscribe_url: str | None = None


class HttpFetcher:
    """GETs a URL and returns its body: the default `CertificateFetcher`, also good for
    visiting a SubscribeURL.

    It follows no redirects, because the verifier has checked the host of the URL it was
    given, and a redirect would take the fetch to a host nobody checked.  TLS certificates are
    verified by the default context: the https origin check is only worth something if the
    peer's certificate chain is validated.
    """

    def __init__(self, *, timeout: float = 10.0, max_bytes: int = 64 * 1024) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._opener = urllib.request.build_opener(_RefuseRedirects())

    def __call__(self, url: str) -> bytes:
        # urllib would also open file:, ftp: and data: URLs; nothing here has reason to.
        if urlsplit(url).scheme not in ("http", "https"):
            raise WebhookError(f"fetching {url} refused: only http(s) URLs are fetched")
        try:
            with self._opener.open(url, timeout=self.timeout) as response:
                body = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as err:
            raise WebhookError(f"fetching {url} failed: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise WebhookError(f"fetching {url} failed: {reason}") from err
        if len(body) > self.max_bytes:
            raise WebhookError(f"fetching {url} failed: body larger than {self.max_bytes} bytes")
        return body


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


class SnsVerifier:
    """Verifies SNS HTTP(S) messages (AWS SNS Developer Guide, "Verifying the signatures of
    Amazon SNS messages") and returns them as `SnsMessage`.

    Checks, cheapest first: the body is a JSON object with the fields its `Type` signs; the
    `SignatureVersion` is 1 or 2; the `TopicArn` is in the allow-list; the `SigningCertURL` (and
    a confirmation's `SubscribeURL`) is on an SNS origin and the certificate a `.pem`; the
    `Timestamp` is not older than `max_age`; then the RSA signature over the string to sign,
    with the public key of the certificate at `SigningCertURL`.

    The certificate is trusted because it was fetched over verified TLS from an SNS host; the
    AWS SDKs' message validators rely on the same two facts (an SNS host pattern and https)
    rather than inspecting the certificate's issuer.  Certificates
    are cached by URL (SNS publishes a new certificate under a new URL), at most `cache_size`.

    `verify` blocks while fetching a certificate it has not seen; call it from a worker thread
    in async code.  It is safe to share one verifier between threads.
    """

    def __init__(
        self,
        topic_arns: Iterable[str],
        *,
        fetch_certificate: CertificateFetcher | None = None,
        sns_origin_pattern: str | re.Pattern[str] = SNS_ORIGIN_PATTERN,
        max_age: timedelta | None = SNS_HTTP_MAX_AGE,
        clock: Callable[[], datetime] | None = None,
        cache_size: int = 16,
    ) -> None:
        self.topic_arns = frozenset(topic_arns)
        self.fetch_certificate = fetch_certificate or HttpFetcher()
        self.sns_origin_pattern = re.compile(sns_origin_pattern)
        self.max_age = max_age
        self.clock = clock or _utc_now
        self.cache_size = cache_size
        self._public_keys: OrderedDict[str, RSAPublicKey] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, events_settings: EventsSettings, **options: Any) -> SnsVerifier:
        """A verifier for `settings.events`; `options` as for the constructor."""
        return cls(events_settings.topic_arns, **options)

    def verify(self, body: Mapping[str, Any] | str | bytes) -> SnsMessage:
        """The checked message, or `WebhookError` saying which check failed."""
        fields = _as_json_object(body, what="SNS message")
        raw_type = fields.get("Type")
        try:
            message_type = SnsMessageType(raw_type)
        except ValueError:
            raise WebhookError(f"SNS message: unknown Type {raw_type!r}") from None
        signed = self._signed_values(fields, message_type)

        version = fields.get("SignatureVersion")
        if not isinstance(version, str) or version not in _SIGNATURE_HASHES:
            raise WebhookError(f"SNS message: unsupported SignatureVersion {version!r} (expected '1' or '2')")
        signature = _decode_signature(fields.get("Signature"))

        topic_arn = signed["TopicArn"]
        if topic_arn not in self.topic_arns:
            if not self.topic_arns:
                raise WebhookError(f"SNS topic {topic_arn} not allowed: no topics configured (events.topic_arns)")
            raise WebhookError(f"SNS topic {topic_arn} not allowed (events.topic_arns)")

        cert_url = fields.get("SigningCertURL")
        if not isinstance(cert_url, str):
            raise WebhookError("SNS message: SigningCertURL missing")
        self._check_origin(cert_url, what="SigningCertURL")
        if not urlsplit(cert_url).path.endswith(".pem"):
            raise WebhookError(f"SNS message: SigningCertURL {cert_url} is not a .pem certificate")
        if message_type is not SnsMessageType.NOTIFICATION:
            self._check_origin(signed["SubscribeURL"], what="SubscribeURL")

        timestamp = _parse_timestamp(signed["Timestamp"], what="SNS Timestamp")
        if self.max_age is not None:
            age = self.clock() - timestamp
            if age > self.max_age:
                raise WebhookError(
                    f"SNS message {signed['MessageId']} is stale: Timestamp {signed['Timestamp']} "
                    f"is older than {self.max_age}"
                )

        public_key = self._public_key(cert_url)
        try:
            public_key.verify(
                signature, string_to_sign(signed), padding.PKCS1v15(), _SIGNATURE_HASHES[version]()
            )
        except InvalidSignature:
            raise WebhookError(
                f"SNS message {signed['MessageId']}: signature does not verify (SignatureVersion {version})"
            ) from None

        unsubscribe_url = fields.get("UnsubscribeURL")
        return SnsMessage(
            type=message_type,
            message_id=signed["MessageId"],
            topic_arn=topic_arn,
            timestamp=timestamp,
            message=signed["Message"],
            subject=signed.get("Subject"),
            subscribe_url=signed.get("SubscribeURL"),
            token=signed.get("Token"),
            unsubscribe_url=unsubscribe_url if isinstance(unsubscribe_url, str) else None,
        )

    def _signed_values(self, fields: Mapping[str, Any], message_type: SnsMessageType) -> dict[str, str]:
        values: dict[str, str] = {}
        for name in _SIGNED_FIELDS[message_type]:
            value = fields.get(name)
            # SNS leaves Subject out when there is none; a JSON null is treated the same.
            if value is None and name in _OPTIONAL_SIGNED_FIELDS:
                continue
            if value is None:
                raise WebhookError(f"SNS {message_type}: field {name} missing")
            if not isinstance(value, str):
                raise WebhookError(f"SNS {message_type}: field {name} must be a string")
            values[name] = value
        return values

    def _check_origin(self, url: str, *, what: str) -> None:
        # urlsplit silently drops tabs and newlines (WHATWG URL rules), so the URL it checks
        # would not be the URL that gets fetched; refuse them instead.
        if any(character.isspace() or not character.isprintable() for character in url):
            raise WebhookError(f"SNS message: {what} {url!r} contains whitespace or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            raise WebhookError(f"SNS message: {what} {url!r} is not a URL: {err}") from err
        if parts.username is not None or parts.password is not None:
            raise WebhookError(f"SNS message: {what} {url!r} carries credentials")
        origin = f"{parts.scheme}://{parts.hostname or ''}" + (f":{port}" if port is not None else "")
        # fullmatch, not match: "$" also matches before a trailing newline, and a pattern
        # passed without anchors must still not accept sns.x.amazonaws.com.evil.example.
        if not self.sns_origin_pattern.fullmatch(origin):
            raise WebhookError(f"SNS message: {what} {url} is not on an Amazon SNS https origin")

    def _public_key(self, cert_url: str) -> RSAPublicKey:
        with self._lock:
            key = self._public_keys.get(cert_url)
            if key is not None:
                self._public_keys.move_to_end(cert_url)
                return key
        # Fetched outside the lock so one slow fetch does not stall verifications that hit the
        # cache; two threads may fetch the same new URL at once, which is harmless.
        pem = self.fetch_certificate(cert_url)
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as err:
            raise WebhookError(f"SNS signing certificate at {cert_url} is not a PEM certificate") from err
        key = certificate.public_key()
        if not isinstance(key, RSAPublicKey):
            raise WebhookError(f"SNS signing certificate at {cert_url} has no RSA key")
        with self._lock:
            self._public_keys[cert_url] = key
            self._public_keys.move_to_end(cert_url)
            while len(self._public_keys) > self.cache_size:
                self._public_keys.popitem(last=False)
        return key


def string_to_sign(signed_values: Mapping[str, str]) -> bytes:
    """The bytes SNS signs: "Name\\nvalue\\n" for each signed field present, in byte order of
    the names.  `signed_values` holds only the fields the message type signs."""
    return "".join(f"{name}\n{signed_values[name]}\n" for name in sorted(signed_values)).encode("utf-8")


def confirm_subscription(message: SnsMessage, fetch: CertificateFetcher | None = None) -> bytes:
    """Confirm an SNS subscription by visiting its SubscribeURL (already checked to be on an
    SNS origin by `SnsVerifier.verify`); returns SNS's answer."""
    if message.type is not SnsMessageType.SUBSCRIPTION_CONFIRMATION or not message.subscribe_url:
        raise WebhookError(f"SNS message {message.message_id} is a {message.type}, not a SubscriptionConfirmation")
    return (fetch or HttpFetcher())(message.subscribe_url)


# ---------------------------------------------------------------------------------------------
# SES events
# ---------------------------------------------------------------------------------------------


class EventKind(StrEnum):
    SEND = "send"
    DELIVERY = "delivery"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    REJECT = "reject"
    DELIVERY_DELAY = "delivery_delay"
    OPEN = "open"
    CLICK = "click"
    RENDERING_FAILURE = "rendering_failure"
    SUBSCRIPTION = "subscription"


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

# "Transient" bounces with these subtypes are about the message, not the mailbox: "You may be
# able to successfully send to this recipient if you change the content / reduce the size /
# remove the attachment" (SES Developer Guide, "Bounce types").  They do not count toward
# suppressing the address.
CONTENT_BOUNCE_SUBTYPES = frozenset({"MessageTooLarge", "ContentRejected", "AttachmentRejected"})


@dataclass(frozen=True)
class SesEvent:
    """One SES event about one sent message, in either SES format."""

    kind: EventKind
    # The id SES returned from SendEmail: how the ledger row is found.
    ses_message_id: str
    # Addresses the event is about: bounced, complained, delivered, delayed recipients; for
    # send, reject, open, click, rendering failure and subscription, the message's destination.
    recipients: tuple[str, ...]
    # When it happened (the per-type timestamp; the send time for send/reject/rendering failure).
    timestamp: datetime
    # Same event, same key, whichever way it arrived (SNS retry, SQS redelivery, raw or
    # enveloped, event publishing or identity notification): see `_dedupe_key`.
    dedupe_key: str
    # The SNS MessageId when the event came in an SNS envelope; None for raw SQS delivery.
    sns_message_id: str | None = None
    # Bounce: "Permanent" | "Transient" | "Undetermined", and SES's subtype ("General",
    # "NoEmail", "MailboxFull", "OnAccountSuppressionList", ...).
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    # True only for a Permanent (hard) bounce; Transient and Undetermined are soft.
    permanent: bool = False
    # Complaint: the ARF Feedback-Type ("abuse", "not-spam", ...) when the ISP sent a report,
    # and SES's subtype (None or "OnAccountSuppressionList").
    complaint_feedback_type: str | None = None
    complaint_subtype: str | None = None
    # Open and click (and a complaint's feedback-report agent).
    user_agent: str | None = None
    ip_address: str | None = None
    link: str | None = None
    # A human-readable reason: bounce/delay diagnostic code, reject reason, rendering error.
    detail: str | None = None
    # Subscription (SES list management): whether the contact left every topic.
    unsubscribe_all: bool | None = None
    # The message's tags (event publishing only): name -> values.
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    # The SES record as received, for storing alongside the event.
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @property
    def soft_bounce(self) -> bool:
        """A Transient or Undetermined bounce that says something about the mailbox."""
        return (
            self.kind is EventKind.BOUNCE
            and not self.permanent
            and self.bounce_subtype not in CONTENT_BOUNCE_SUBTYPES
        )


def parse_ses_event(record: Mapping[str, Any] | str | bytes, *, sns_message_id: str | None = None) -> SesEvent | None:
    """An SES event record (the `Message` of an SNS notification, or a raw SQS body) as an
    `SesEvent`; None for SES's setup notices; `WebhookError` for anything not understood."""
    if isinstance(record, (str, bytes)) and _is_setup_text(record):
        return None
    fields = _as_json_object(record, what="SES event")
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
        values["detail"] = _optional_text(detail, "source")
    if not recipients:
        raise WebhookError(f"SES {type_name} event {ses_message_id}: no recipients")

    # Send, Reject and Rendering Failure carry no time of their own: they happen at send time.
    raw_time = detail.get("timestamp") or mail.get("timestamp")
    if not isinstance(raw_time, str):
        raise WebhookError(f"SES {type_name} event {ses_message_id}: timestamp missing")
    timestamp = _parse_timestamp(raw_time, what=f"SES {type_name} event timestamp")

    return SesEvent(
        kind=kind,
        ses_message_id=ses_message_id,
        recipients=recipients,
        timestamp=timestamp,
        dedupe_key=_dedupe_key(kind, ses_message_id, timestamp, recipients, detail),
        sns_message_id=sns_message_id,
        tags=_tags(mail.get("tags")),
        payload=MappingProxyType(dict(fields)),
        **values,
    )


def event_from_sns(message: SnsMessage) -> SesEvent | None:
    """The SES event carried by a verified SNS Notification (None for SES's setup notices)."""
    if message.type is not SnsMessageType.NOTIFICATION:
        raise WebhookError(f"SNS message {message.message_id} is a {message.type}, which carries no SES event")
    return parse_ses_event(message.message, sns_message_id=message.message_id)


def event_from_sqs_body(body: str | bytes, *, verifier: SnsVerifier | None = None) -> SesEvent | None:
    """The SES event in an SQS message body, whether SNS wrapped it in its JSON envelope or
    delivered it raw ("raw message delivery"); None for SES setup notices and for SNS
    confirmations that landed in the queue.

    A raw body has no signature: it is trusted because only our AWS account can write to the
    queue.  An envelope is verified when a `verifier` is given (build it with max_age=None:
    SQS keeps messages for days); without one, only its form is checked.
    """
    if _is_setup_text(body):
        return None
    fields = _as_json_object(body, what="SQS message body")
    if "eventType" in fields or "notificationType" in fields:
        return parse_ses_event(fields)
    if "Type" not in fields:
        raise WebhookError("SQS message body is neither an SNS envelope nor an SES event")
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


# ---------------------------------------------------------------------------------------------
# Suppression
# ---------------------------------------------------------------------------------------------


class Suppression(StrEnum):
    """Why an address gets no more mail."""

    BOUNCED = "bounced"  # a permanent bounce
    COMPLAINED = "complained"
    SOFT_BOUNCED = "soft_bounced"  # too many soft bounces in the window


@dataclass(frozen=True)
class SuppressionPolicy:
    """When an SES event stops all later mail to the address.

    A permanent bounce or a complaint suppresses at once.  Soft bounces suppress when
    `transient_bounce_limit` of them (this one included) fall within `transient_bounce_window`
    ending at this bounce's time.  The window is measured on event timestamps, not the wall
    clock, so replaying a backlog from SQS decides the same as receiving it live.
    """

    transient_bounce_limit: int = 3
    transient_bounce_window: timedelta = timedelta(days=30)

    @classmethod
    def from_settings(cls, events_settings: EventsSettings) -> SuppressionPolicy:
        return cls(
            transient_bounce_limit=events_settings.transient_bounce_limit,
            transient_bounce_window=timedelta(days=events_settings.transient_bounce_days),
        )

    def soft_bounces_suppress(self, soft_bounce_times: Iterable[datetime], *, now: datetime) -> bool:
        """Whether these soft bounces (including the latest, at `now`) reach the limit."""
        start = now - self.transient_bounce_window
        recent = sum(1 for moment in soft_bounce_times if start < moment <= now)
        return recent >= self.transient_bounce_limit

    def suppression_for(self, event: SesEvent, earlier_soft_bounces: Iterable[datetime] = ()) -> Suppression | None:
        """What `event` does to its recipients, given the times of their earlier soft bounces
        (those for which `SesEvent.soft_bounce` was true)."""
        if event.kind is EventKind.BOUNCE and event.permanent:
            return Suppression.BOUNCED
        if event.kind is EventKind.COMPLAINT:
            # An ARF "not-spam" report says the message was *not* abuse (RFC 5965 / IANA MARF
            # feedback types); it is the one complaint that must not suppress.
            if event.complaint_feedback_type == "not-spam":
                return None
            return Suppression.COMPLAINED
        if event.soft_bounce:
            times = [*earlier_soft_bounces, event.timestamp]
            if self.soft_bounces_suppress(times, now=event.timestamp):
                return Suppression.SOFT_BOUNCED
        return None


# ---------------------------------------------------------------------------------------------
# Small readers shared by the above
# ---------------------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _as_json_object(body: Mapping[str, Any] | str | bytes, *, what: str) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    try:
        value = json.loads(body)
    except (ValueError, TypeError) as err:
        raise WebhookError(f"{what} is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise WebhookError(f"{what} is not a JSON object")
    return value


def _is_setup_text(body: str | bytes) -> bool:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text.lstrip().startswith(_SETUP_MESSAGE_PREFIX)


def _decode_signature(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise WebhookError("SNS message: Signature missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise WebhookError("SNS message: Signature is not base64") from err


def _parse_timestamp(value: str, *, what: str) -> datetime:
    # AWS writes ISO 8601 in UTC with milliseconds: 2017-08-05T00:41:02.669Z.
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise WebhookError(f"{what} {value!r} is not an ISO 8601 time") from err
    if moment.tzinfo is None:
        raise WebhookError(f"{what} {value!r} has no time zone")
    return moment.astimezone(timezone.utc)


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
