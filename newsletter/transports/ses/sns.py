"""Amazon SNS messages over HTTP(S): signature verification, and confirming a subscription; pure.

`SnsVerifier` checks that an SNS message really comes from Amazon SNS, from a topic we
subscribed to, and returns it as an `SnsMessage`.  The only network access is fetching the
signing certificate, through an injected callable (`HttpFetcher` by default), and cached.
Every refusal is a `WebhookError` whose message says why, which the web layer answers with 403.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
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

# Where SNS signing certificates and SubscribeURLs live: https on sns.<region>.amazonaws.com,
# or sns.cn-<...>.amazonaws.com.cn in the China regions (AWS General Reference, "Amazon SNS
# endpoints"), no port, no credentials.  A region is two letters, one or more words and a
# number (us-east-1, us-gov-west-1, cn-north-1): anything else, such as sns.s3.amazonaws.com,
# is an S3 bucket's virtual host, which anyone can create and serve a certificate from.
# Matched against the URL's "scheme://host[:port]", so one pattern decides both the scheme
# and the host; only a test passes a wider one (e.g. r"http://127\.0\.0\.1:\d+").
SNS_ORIGIN_PATTERN = (
    r"https://sns\.(?:(?!cn-)[a-z]{2}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com|cn(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com\.cn)"
)

# SNS's total retry time for an HTTP/S endpoint "cannot be greater than 3,600 seconds. This is a
# hard limit" (AWS SNS Developer Guide, "Amazon SNS message delivery retries"), and a retry keeps
# the original Timestamp and MessageId.  So an authentic notification reaching the webhook more
# than an hour after its Timestamp is a replay, not a retry.  The extra 15 minutes absorb clock
# skew and throttled deliveries: rejecting a genuine bounce costs more than accepting a replay,
# which the dedupe key makes harmless anyway.  Messages read from SQS may legitimately be days
# old (SQS keeps them up to 14 days), so the SQS path builds its verifier with max_age=None.
SNS_HTTP_MAX_AGE = timedelta(hours=1, minutes=15)
# A message dated later than this after our clock is not a retry of anything SNS sent; the
# margin is clock skew only.
SNS_MAX_FUTURE = timedelta(minutes=5)
# How long a certificate URL that could not be fetched (or was no certificate) stays refused
# without asking again, and how many URLs not yet seen may be fetched in a minute: messages
# naming a configured topic but carrying no valid signature must not turn this server into a
# fetcher on every request.  SNS changes its certificate rarely (a new URL each time).
FAILED_CERTIFICATE_SECONDS = 300.0
NEW_CERTIFICATES_PER_MINUTE = 10
# The SNS envelope is a flat object and SES events nest a few levels (mail.headers, the
# bounced recipients); Python's json recurses once per level and ends in RecursionError
# somewhere near a thousand.
MAX_JSON_DEPTH = 32


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
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    SnsMessageType.UNSUBSCRIBE_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
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
    def redirect_request(self, req, fp, code, msg, headers, newurl):
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
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic_arns = frozenset(topic_arns)
        self.fetch_certificate = fetch_certificate or HttpFetcher()
        self.sns_origin_pattern = re.compile(sns_origin_pattern)
        self.max_age = max_age
        self.clock = clock or _utc_now
        self.cache_size = cache_size
        self.monotonic = monotonic
        self._public_keys: OrderedDict[str, RSAPublicKey] = OrderedDict()
        # URL -> (monotonic time of the failure, what failed), at most `cache_size`.
        self._failures: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._recent_fetches: list[float] = []
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, events_settings: EventsSettings, **options: Any) -> SnsVerifier:
        """A verifier for `settings.events`; `options` as for the constructor."""
        return cls(events_settings.topic_arns, **options)

    def verify(self, body: Mapping[str, Any] | str | bytes) -> SnsMessage:
        """The checked message, or `WebhookError` saying which check failed."""
        fields = json_object(body, what="SNS message")
        raw_type = fields.get("Type")
        try:
            message_type = SnsMessageType(str(raw_type))
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

        timestamp = parse_timestamp(signed["Timestamp"], what="SNS Timestamp")
        now = self.clock()
        if self.max_age is not None:
            age = now - timestamp
            if age > self.max_age:
                raise WebhookError(
                    f"SNS message {signed['MessageId']} is stale: Timestamp {signed['Timestamp']} "
                    f"is older than {self.max_age}"
                )
        if timestamp - now > SNS_MAX_FUTURE:
            raise WebhookError(
                f"SNS message {signed['MessageId']}: Timestamp {signed['Timestamp']} is more than "
                f"{SNS_MAX_FUTURE} in the future"
            )

        public_key = self._public_key(cert_url)
        try:
            public_key.verify(signature, string_to_sign(signed), padding.PKCS1v15(), _SIGNATURE_HASHES[version]())
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
            cached = self._public_keys.get(cert_url)
            if cached is not None:
                self._public_keys.move_to_end(cert_url)
                return cached
            self._refuse_fetch(cert_url)
        # Fetched outside the lock so one slow fetch does not stall verifications that hit the
        # cache; two threads may fetch the same new URL at once, which is harmless.
        try:
            key = self._fetch_key(cert_url)
        except WebhookError as err:
            with self._lock:
                self._failures[cert_url] = (self.monotonic(), str(err))
                while len(self._failures) > self.cache_size:
                    self._failures.popitem(last=False)
            raise
        with self._lock:
            self._public_keys[cert_url] = key
            self._public_keys.move_to_end(cert_url)
            while len(self._public_keys) > self.cache_size:
                self._public_keys.popitem(last=False)
        return key

    def _refuse_fetch(self, cert_url: str) -> None:
        """WebhookError when `cert_url` failed recently, or too many new URLs were fetched in
        the last minute; else the fetch is counted.  Called under the lock."""
        now = self.monotonic()
        failed = self._failures.get(cert_url)
        if failed is not None:
            if now - failed[0] < FAILED_CERTIFICATE_SECONDS:
                raise WebhookError(f"{failed[1]} (not fetched again for {FAILED_CERTIFICATE_SECONDS:.0f} s)")
            del self._failures[cert_url]
        self._recent_fetches = [moment for moment in self._recent_fetches if now - moment < 60.0]
        if len(self._recent_fetches) >= NEW_CERTIFICATES_PER_MINUTE:
            raise WebhookError(
                f"SNS signing certificate {cert_url} not fetched: {NEW_CERTIFICATES_PER_MINUTE} new certificate "
                "URLs fetched in the last minute already"
            )
        self._recent_fetches.append(now)

    def _fetch_key(self, cert_url: str) -> RSAPublicKey:
        pem = self.fetch_certificate(cert_url)
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as err:
            raise WebhookError(f"SNS signing certificate at {cert_url} is not a PEM certificate") from err
        key = certificate.public_key()
        if not isinstance(key, RSAPublicKey):
            raise WebhookError(f"SNS signing certificate at {cert_url} has no RSA key")
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MalformedMessage(WebhookError):
    """A body that is not a JSON object at all (or nests too deeply to read): a bad request,
    where a WebhookError of its own is a message that does not verify."""


# A JSON string (its escapes included), and everything but brackets: what is left after both
# are removed is the bracket structure, whose depth `json_object` checks before parsing.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def json_object(body: Mapping[str, Any] | str | bytes, *, what: str) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if json_depth(text) > MAX_JSON_DEPTH:
        raise MalformedMessage(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(body)
    except (ValueError, TypeError) as err:
        raise MalformedMessage(f"{what} is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise MalformedMessage(f"{what} is not a JSON object")
    return value


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, without parsing it (so without
    recursion); strings are skipped, malformed text gets some number."""
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    depth = deepest = 0
    for bracket in brackets:
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _decode_signature(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise WebhookError("SNS message: Signature missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise WebhookError("SNS message: Signature is not base64") from err


def parse_timestamp(value: str, *, what: str) -> datetime:
    # AWS writes ISO 8601 in UTC with milliseconds: 2017-08-05T00:41:02.669Z.
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise WebhookError(f"{what} {value!r} is not an ISO 8601 time") from err
    if moment.tzinfo is None:
        raise WebhookError(f"{what} {value!r} has no time zone")
    return moment.astimezone(UTC)
