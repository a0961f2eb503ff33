"""SNS signature verification, SES event parsing and the suppression policy (newsletter.transports.ses.sns).

Notifications are signed here exactly as SNS signs them (tests/sns_signing.py), and the
certificate is fetched over real HTTP from a server on 127.0.0.1 by the production fetcher;
only the allowed-origin pattern is widened to let that server in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sns_signing import (
    LOCAL_SNS_ORIGIN_PATTERN,
    LocalHttpServer,
    make_signing_identity,
    sign_sns_message,
    sns_string_to_sign,
)

from newsletter.config import EventsSettings
from newsletter.errors import WebhookError
from newsletter.feedback.event import EventKind, FeedbackEvent
from newsletter.feedback.suppression import Suppression, SuppressionPolicy
from newsletter.transports.ses.events import (
    event_from_sns,
    event_from_sqs_body,
    parse_ses_event,
)
from newsletter.transports.ses.sns import (
    SNS_HTTP_MAX_AGE,
    HttpFetcher,
    SnsMessageType,
    SnsVerifier,
    confirm_subscription,
    string_to_sign,
)

FIXTURES = Path(__file__).parent / "fixtures" / "ses"
TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
CERT_PATH = "/SimpleNotificationService-test.pem"
NOW = datetime(2026, 1, 22, 8, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def verifier_for(server: LocalHttpServer, **options: Any) -> SnsVerifier:
    options.setdefault("clock", lambda: NOW)
    return SnsVerifier([TOPIC], sns_origin_pattern=LOCAL_SNS_ORIGIN_PATTERN, **options)


def notification(server: LocalHttpServer, message: str | dict, **changes: Any) -> dict[str, Any]:
    """The SNS guide's HTTP Notification, carrying `message`, sent a minute before NOW."""
    body = fixture("sns_notification.json")
    body.update(
        Message=message if isinstance(message, str) else json.dumps(message),
        Timestamp=iso(NOW - timedelta(minutes=1)),
        SigningCertURL=server.url(CERT_PATH),
    )
    body.pop("Signature")
    body.update(changes)
    return body


def confirmation(server: LocalHttpServer, kind: str = "sns_subscription_confirmation.json") -> dict[str, Any]:
    body = fixture(kind)
    body.update(
        Timestamp=iso(NOW - timedelta(minutes=1)),
        SigningCertURL=server.url(CERT_PATH),
        SubscribeURL=server.url("/confirm?Action=ConfirmSubscription&Token=" + body["Token"]),
    )
    body.pop("Signature")
    return body


# ---- the string to sign, pinned to the SNS guide's own examples ----------------------------


def test_string_to_sign_for_a_notification_is_the_one_in_the_sns_guide():
    values = {
        "Message": "My Test Message",
        "MessageId": "4d4dc071-ddbf-465d-bba8-08f81c89da64",
        "Subject": "My subject",
        "Timestamp": "2019-01-31T04:37:04.321Z",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Type": "Notification",
    }
    expected = (
        b"Message\nMy Test Message\n"
        b"MessageId\n4d4dc071-ddbf-465d-bba8-08f81c89da64\n"
        b"Subject\nMy subject\n"
        b"Timestamp\n2019-01-31T04:37:04.321Z\n"
        b"TopicArn\narn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P\n"
        b"Type\nNotification\n"
    )
    assert string_to_sign(values) == expected
    assert sns_string_to_sign(values) == expected


def test_string_to_sign_for_a_subscription_confirmation_is_the_one_in_the_sns_guide():
    values = {
        "Message": "My Test Message",
        "MessageId": "3d891288-136d-417f-bc05-901c108273ee",
        "SubscribeURL": "https://sns.us-east-2.amazonaws.com/?Action=ConfirmSubscription&Token=233",
        "Timestamp": "2019-01-31T19:25:13.719Z",
        "Token": "233",
        "TopicArn": "arn:aws:sns:us-east-2:123456789012:s4-MySNSTopic-1G1WEFCOXTC0P",
        "Type": "SubscriptionConfirmation",
    }
    expected = "".join(f"{name}\n{value}\n" for name, value in values.items()).encode()
    assert string_to_sign(values) == expected
    assert sns_string_to_sign(values) == expected


# ---- authentic messages ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_notification_signed_by_sns_verifies(version, sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(
        notification(sns_certificate_server, "Hello world!"), sns_signing_identity.private_key, version
    )

    message = verifier_for(sns_certificate_server).verify(body)

    assert message.type is SnsMessageType.NOTIFICATION
    assert message.message_id == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    assert message.topic_arn == TOPIC
    assert message.subject == "My First Message"
    assert message.message == "Hello world!"
    assert message.timestamp == NOW - timedelta(minutes=1)
    assert message.unsubscribe_url.startswith("https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe")
    assert sns_certificate_server.requests_for(CERT_PATH) == [CERT_PATH]


def test_a_notification_without_subject_verifies_and_the_body_may_be_raw_bytes(
    sns_certificate_server, sns_signing_identity
):
    body = notification(sns_certificate_server, "Hello world!")
    del body["Subject"]
    signed = sign_sns_message(body, sns_signing_identity.private_key, "2")

    message = verifier_for(sns_certificate_server).verify(json.dumps(signed).encode())

    assert message.subject is None


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("kind", ["sns_subscription_confirmation.json", "sns_unsubscribe_confirmation.json"])
def test_confirmations_verify_with_their_own_signed_fields(kind, version, sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(confirmation(sns_certificate_server, kind), sns_signing_identity.private_key, version)

    message = verifier_for(sns_certificate_server).verify(body)

    assert message.type == body["Type"]
    assert message.token == body["Token"]
    assert message.subscribe_url == body["SubscribeURL"]
    assert "\nTo " in message.message  # the JSON "\n" escape is signed as a real newline


def test_confirming_a_subscription_visits_its_subscribe_url(sns_certificate_server, sns_signing_identity):
    sns_certificate_server.serve("/confirm", b"<ConfirmSubscriptionResponse/>")
    body = sign_sns_message(confirmation(sns_certificate_server), sns_signing_identity.private_key, "2")
    message = verifier_for(sns_certificate_server).verify(body)

    answer = confirm_subscription(message)

    assert answer == b"<ConfirmSubscriptionResponse/>"
    assert sns_certificate_server.requests_for("/confirm") == [
        "/confirm?Action=ConfirmSubscription&Token=" + body["Token"]
    ]


def test_confirm_subscription_refuses_a_notification(sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(notification(sns_certificate_server, "x"), sns_signing_identity.private_key)
    message = verifier_for(sns_certificate_server).verify(body)

    with pytest.raises(WebhookError, match="not a SubscriptionConfirmation"):
        confirm_subscription(message)


def test_the_certificate_is_fetched_once_per_url(sns_certificate_server, sns_signing_identity):
    verifier = verifier_for(sns_certificate_server)
    for version in ("1", "2", "1"):
        verifier.verify(
            sign_sns_message(notification(sns_certificate_server, "x"), sns_signing_identity.private_key, version)
        )

    assert len(sns_certificate_server.requests_for(CERT_PATH)) == 1


def test_the_certificate_cache_is_bounded(sns_certificate_server, sns_signing_identity):
    other = "/SimpleNotificationService-other.pem"
    sns_certificate_server.serve(other, sns_signing_identity.certificate_pem)
    verifier = verifier_for(sns_certificate_server, cache_size=1)
    for path in (CERT_PATH, other, CERT_PATH):
        body = notification(sns_certificate_server, "x", SigningCertURL=sns_certificate_server.url(path))
        verifier.verify(sign_sns_message(body, sns_signing_identity.private_key))

    assert len(sns_certificate_server.requests_for(CERT_PATH)) == 2


def test_from_settings_takes_the_topic_allow_list(sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(notification(sns_certificate_server, "x"), sns_signing_identity.private_key)
    allowed = SnsVerifier.from_settings(
        EventsSettings(topic_arns=(TOPIC,)), sns_origin_pattern=LOCAL_SNS_ORIGIN_PATTERN, clock=lambda: NOW
    )
    refused = SnsVerifier.from_settings(EventsSettings(), sns_origin_pattern=LOCAL_SNS_ORIGIN_PATTERN)

    assert allowed.verify(body).topic_arn == TOPIC
    with pytest.raises(WebhookError, match="no topics configured"):
        refused.verify(body)


# ---- forged, tampered and unwelcome messages --------------------------------------------------


def test_a_forged_signature_is_refused(sns_certificate_server):
    forger = make_signing_identity()
    body = sign_sns_message(notification(sns_certificate_server, "Hello world!"), forger.private_key, "2")

    with pytest.raises(WebhookError, match="signature does not verify"):
        verifier_for(sns_certificate_server).verify(body)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Message", "Hello world?"),
        ("Subject", "My Second Message"),
        ("MessageId", "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf325"),
        ("Type", "SubscriptionConfirmation"),
    ],
)
def test_a_message_changed_after_signing_is_refused(name, value, sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(notification(sns_certificate_server, "Hello world!"), sns_signing_identity.private_key)
    body[name] = value
    if name == "Type":  # a confirmation needs its fields to get as far as the signature
        body.update(SubscribeURL=sns_certificate_server.url("/confirm"), Token="t")

    with pytest.raises(WebhookError, match="signature does not verify"):
        verifier_for(sns_certificate_server).verify(body)


def test_dropping_the_signed_subject_is_refused(sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(notification(sns_certificate_server, "Hello world!"), sns_signing_identity.private_key)
    del body["Subject"]

    with pytest.raises(WebhookError, match="signature does not verify"):
        verifier_for(sns_certificate_server).verify(body)


def test_a_topic_outside_the_allow_list_is_refused_before_any_fetch(sns_certificate_server, sns_signing_identity):
    body = notification(sns_certificate_server, "x", TopicArn="arn:aws:sns:us-west-2:999999999999:Other")
    body = sign_sns_message(body, sns_signing_identity.private_key)

    with pytest.raises(WebhookError, match="arn:aws:sns:us-west-2:999999999999:Other not allowed"):
        verifier_for(sns_certificate_server).verify(body)
    assert sns_certificate_server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-west-2.amazonaws.com.example.net/SimpleNotificationService-1.pem",
        "https://example.com/SimpleNotificationService-1.pem",
        "https://sns.us-west-2.amazonaws.com@example.net/SimpleNotificationService-1.pem",
        "https://sns.us-west-2.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://sqs.us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-west-2.amazonaws.com\n/SimpleNotificationService-1.pem",
        "//sns.us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
    ],
)
def test_a_certificate_on_another_host_is_refused(url, sns_signing_identity):
    fetched: list[str] = []
    verifier = SnsVerifier([TOPIC], fetch_certificate=fetched.append, clock=lambda: NOW)
    body = fixture("sns_notification.json")
    body.update(SigningCertURL=url, Timestamp=iso(NOW))
    body = sign_sns_message(body, sns_signing_identity.private_key)

    with pytest.raises(WebhookError, match="SigningCertURL"):
        verifier.verify(body)
    assert fetched == []


def test_a_certificate_over_plain_http_is_refused_by_default(sns_signing_identity):
    fetched: list[str] = []
    verifier = SnsVerifier([TOPIC], fetch_certificate=fetched.append, clock=lambda: NOW)
    body = fixture("sns_notification.json")
    body.update(SigningCertURL="http://sns.us-west-2.amazonaws.com/SimpleNotificationService-1.pem", Timestamp=iso(NOW))
    body = sign_sns_message(body, sns_signing_identity.private_key)

    with pytest.raises(WebhookError, match="not on an Amazon SNS https origin"):
        verifier.verify(body)
    assert fetched == []


def test_the_default_origin_accepts_every_sns_region_including_china():
    verifier = SnsVerifier([TOPIC])
    for url in (
        "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
        "https://SNS.eu-central-1.amazonaws.com/SimpleNotificationService-1.pem",
    ):
        verifier._check_origin(url, what="SigningCertURL")  # raises if refused


def test_a_certificate_url_that_is_not_a_pem_is_refused(sns_certificate_server, sns_signing_identity):
    body = notification(sns_certificate_server, "x", SigningCertURL=sns_certificate_server.url("/cert.txt"))
    body = sign_sns_message(body, sns_signing_identity.private_key)

    with pytest.raises(WebhookError, match="not a .pem certificate"):
        verifier_for(sns_certificate_server).verify(body)


def test_a_subscribe_url_off_the_sns_origin_is_refused(sns_certificate_server, sns_signing_identity):
    body = confirmation(sns_certificate_server)
    body["SubscribeURL"] = "https://example.com/?Action=ConfirmSubscription"
    body = sign_sns_message(body, sns_signing_identity.private_key)

    with pytest.raises(WebhookError, match="SubscribeURL"):
        verifier_for(sns_certificate_server).verify(body)


@pytest.mark.parametrize("version", ["3", "", None, 1])
def test_an_unknown_signature_version_is_refused(version, sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(notification(sns_certificate_server, "x"), sns_signing_identity.private_key)
    body["SignatureVersion"] = version

    with pytest.raises(WebhookError, match="unsupported SignatureVersion"):
        verifier_for(sns_certificate_server).verify(body)


@pytest.mark.parametrize(
    ("kind", "missing", "reason"),
    [
        ("notification", "Message", "field Message missing"),
        ("notification", "MessageId", "field MessageId missing"),
        ("notification", "Timestamp", "field Timestamp missing"),
        ("notification", "TopicArn", "field TopicArn missing"),
        ("notification", "Type", "unknown Type None"),
        ("notification", "Signature", "Signature missing"),
        ("notification", "SignatureVersion", "unsupported SignatureVersion"),
        ("notification", "SigningCertURL", "SigningCertURL missing"),
        ("confirmation", "SubscribeURL", "field SubscribeURL missing"),
        ("confirmation", "Token", "field Token missing"),
    ],
)
def test_a_message_missing_a_field_is_refused(kind, missing, reason, sns_certificate_server, sns_signing_identity):
    body = notification(sns_certificate_server, "x") if kind == "notification" else confirmation(sns_certificate_server)
    body = sign_sns_message(body, sns_signing_identity.private_key)
    del body[missing]

    with pytest.raises(WebhookError, match=reason):
        verifier_for(sns_certificate_server).verify(body)


@pytest.mark.parametrize(
    ("name", "value"),
    [("Type", ["Notification"]), ("SignatureVersion", ["1"]), ("Message", {"a": 1}), ("TopicArn", 7), ("Signature", 7)],
)
def test_a_field_of_the_wrong_json_type_is_refused_not_crashed_on(
    name, value, sns_certificate_server, sns_signing_identity
):
    body = sign_sns_message(notification(sns_certificate_server, "x"), sns_signing_identity.private_key)
    body[name] = value

    with pytest.raises(WebhookError):
        verifier_for(sns_certificate_server).verify(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"Type": "Notice"}), "unknown Type 'Notice'"),
    ],
)
def test_a_body_that_is_not_an_sns_message_is_refused(body, reason):
    with pytest.raises(WebhookError, match=reason):
        SnsVerifier([TOPIC]).verify(body)


def test_a_signature_that_is_not_base64_is_refused(sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(notification(sns_certificate_server, "x"), sns_signing_identity.private_key)
    body["Signature"] = "not base64!"

    with pytest.raises(WebhookError, match="not base64"):
        verifier_for(sns_certificate_server).verify(body)


def test_a_stale_notification_is_refused_over_http_but_accepted_from_a_queue(
    sns_certificate_server, sns_signing_identity
):
    sent = NOW - SNS_HTTP_MAX_AGE - timedelta(seconds=1)
    body = notification(sns_certificate_server, "x", Timestamp=iso(sent))
    body = sign_sns_message(body, sns_signing_identity.private_key)

    with pytest.raises(WebhookError, match="stale"):
        verifier_for(sns_certificate_server).verify(body)
    assert verifier_for(sns_certificate_server, max_age=None).verify(body).timestamp == sent


def test_a_notification_within_the_retry_window_is_accepted(sns_certificate_server, sns_signing_identity):
    body = notification(sns_certificate_server, "x", Timestamp=iso(NOW - timedelta(minutes=59)))
    body = sign_sns_message(body, sns_signing_identity.private_key)

    assert verifier_for(sns_certificate_server).verify(body).message_id


def test_a_certificate_that_is_not_pem_is_refused(sns_certificate_server, sns_signing_identity):
    sns_certificate_server.serve("/garbage.pem", b"-----BEGIN NOTHING-----")
    body = notification(sns_certificate_server, "x", SigningCertURL=sns_certificate_server.url("/garbage.pem"))
    body = sign_sns_message(body, sns_signing_identity.private_key)

    with pytest.raises(WebhookError, match="not a PEM certificate"):
        verifier_for(sns_certificate_server).verify(body)


def test_a_missing_certificate_is_refused(sns_certificate_server, sns_signing_identity):
    body = notification(sns_certificate_server, "x", SigningCertURL=sns_certificate_server.url("/gone.pem"))
    body = sign_sns_message(body, sns_signing_identity.private_key)

    with pytest.raises(WebhookError, match="HTTP 404"):
        verifier_for(sns_certificate_server).verify(body)


def test_the_fetcher_follows_no_redirect():
    with LocalHttpServer() as server:
        server.serve("/moved.pem", b"", status=302, Location="http://127.0.0.2/elsewhere.pem")

        with pytest.raises(WebhookError, match="HTTP 302 redirect to http://127.0.0.2/elsewhere.pem refused"):
            HttpFetcher(timeout=2)(server.url("/moved.pem"))


@pytest.mark.parametrize("url", ["file:///etc/hostname", "data:text/plain,x", "ftp://127.0.0.1/x.pem"])
def test_the_fetcher_only_fetches_http(url):
    with pytest.raises(WebhookError, match="only http"):
        HttpFetcher()(url)


def test_the_fetcher_refuses_an_oversized_body():
    with LocalHttpServer() as server:
        server.serve("/big.pem", b"x" * 2000)

        with pytest.raises(WebhookError, match="larger than 1000 bytes"):
            HttpFetcher(max_bytes=1000)(server.url("/big.pem"))


# ---- SES event records ------------------------------------------------------------------------

DOC_MESSAGE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "event_bounce.json",
            {
                "kind": EventKind.BOUNCE,
                "recipients": ("recipient@example.com",),
                "timestamp": at("2017-08-05T00:41:02.669Z"),
                "bounce_type": "Permanent",
                "bounce_subtype": "General",
                "permanent": True,
                "detail": "smtp; 550 5.1.1 user unknown",
            },
        ),
        (
            "event_complaint.json",
            {
                "kind": EventKind.COMPLAINT,
                "recipients": ("recipient@example.com",),
                "timestamp": at("2017-08-05T00:41:02.669Z"),
                "complaint_feedback_type": "abuse",
                "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/60.0.3112.90 Safari/537.36",
            },
        ),
        (
            "event_delivery.json",
            {
                "kind": EventKind.DELIVERY,
                "recipients": ("recipient@example.com",),
                "timestamp": at("2016-10-19T23:21:04.133Z"),
                "detail": "250 2.6.0 Message received",
            },
        ),
        (
            "event_send.json",
            {
                "kind": EventKind.SEND,
                "recipients": ("recipient@example.com",),
                "timestamp": at("2016-10-14T05:02:16.645Z"),
            },
        ),
        (
            "event_reject.json",
            {
                "kind": EventKind.REJECT,
                "recipients": ("sender@example.com",),
                "timestamp": at("2016-10-14T17:38:15.211Z"),
                "detail": "Bad content",
            },
        ),
        (
            "event_open.json",
            {
                "kind": EventKind.OPEN,
                "recipients": ("recipient@example.com",),
                "timestamp": at("2017-08-09T22:00:19.652Z"),
                "ip_address": "192.0.2.1",
                "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 10_3_3 like Mac OS X) AppleWebKit/603.3.8 "
                "(KHTML, like Gecko) Mobile/14G60",
            },
        ),
        (
            "event_click.json",
            {
                "kind": EventKind.CLICK,
                "recipients": ("recipient@example.com",),
                "timestamp": at("2017-08-09T23:51:25.570Z"),
                "ip_address": "192.0.2.1",
                "link": "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html",
            },
        ),
        (
            "event_rendering_failure.json",
            {
                "kind": EventKind.RENDERING_FAILURE,
                "recipients": ("recipient@example.com",),
                "timestamp": at("2018-01-22T18:43:06.197Z"),
                "detail": "Attribute 'attributeName' is not present in the rendering data.",
            },
        ),
        (
            "event_delivery_delay.json",
            {
                "kind": EventKind.DELIVERY_DELAY,
                "recipients": ("recipient@example.com",),
                "timestamp": at("2020-06-16T00:25:40.095Z"),
                "detail": "smtp; 421 4.4.1 Unable to connect to remote host",
            },
        ),
        (
            "event_subscription.json",
            {
                "kind": EventKind.SUBSCRIPTION,
                "provider_message_id": "EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000",
                "recipients": ("recipient@example.com",),
                "timestamp": at("2022-01-12T01:00:17.910Z"),
                "unsubscribe_all": True,
                "detail": "UnsubscribeHeader",
            },
        ),
        (
            "notification_bounce.json",
            {
                "kind": EventKind.BOUNCE,
                "provider_message_id": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
                "recipients": ("jane@example.com",),
                "timestamp": at("2016-01-27T14:59:38.237Z"),
                "bounce_type": "Permanent",
                "bounce_subtype": "General",
                "permanent": True,
                "detail": "smtp; 550 5.1.1 <jane@example.com>... User",
            },
        ),
        (
            "notification_complaint.json",
            {
                "kind": EventKind.COMPLAINT,
                "provider_message_id": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
                "recipients": ("richard@example.com",),
                "complaint_feedback_type": "abuse",
                "user_agent": "AnyCompany Feedback Loop (V0.01)",
            },
        ),
        (
            "notification_delivery.json",
            {
                "kind": EventKind.DELIVERY,
                "provider_message_id": "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
                "recipients": ("jane@example.com",),
                "timestamp": at("2016-01-27T14:59:38.237Z"),
            },
        ),
    ],
)
def test_each_documented_ses_record_is_parsed(name, expected):
    event = parse_ses_event(fixture(name))

    expected.setdefault("provider_message_id", DOC_MESSAGE_ID)
    actual = {key: getattr(event, key) for key in expected}
    assert actual == expected
    assert event.timestamp.tzinfo is not None
    assert event.payload == fixture(name)


def test_the_kinds_are_lowercase_names():
    assert [kind.value for kind in EventKind] == [
        "send",
        "delivery",
        "bounce",
        "complaint",
        "reject",
        "delivery_delay",
        "open",
        "click",
        "rendering_failure",
        "subscription",
        "mailto_unsubscribe",
    ]


def test_event_publishing_tags_are_kept():
    event = parse_ses_event(fixture("event_delivery.json"))

    assert event.tags["ses:configuration-set"] == ("ConfigSet",)
    assert event.tags["myCustomTag1"] == ("myCustomTagValue1",)
    assert parse_ses_event(fixture("notification_delivery.json")).tags == {}


@pytest.mark.parametrize(
    ("bounce_type", "subtype", "permanent", "soft"),
    [
        ("Permanent", "General", True, False),
        ("Permanent", "OnAccountSuppressionList", True, False),
        ("Transient", "General", False, True),
        ("Transient", "MailboxFull", False, True),
        ("Undetermined", "Undetermined", False, True),
        ("Transient", "MessageTooLarge", False, False),
        ("Transient", "ContentRejected", False, False),
        ("Transient", "AttachmentRejected", False, False),
    ],
)
def test_bounce_types_from_the_ses_guide_are_hard_or_soft(bounce_type, subtype, permanent, soft):
    record = fixture("event_bounce.json")
    record["bounce"].update(bounceType=bounce_type, bounceSubType=subtype)

    event = parse_ses_event(record)

    assert (event.bounce_type, event.bounce_subtype) == (bounce_type, subtype)
    assert event.permanent is permanent
    assert event.soft_bounce is soft


def test_the_rendering_failure_spelled_without_a_space_is_understood():
    record = fixture("event_rendering_failure.json")
    record["eventType"] = "RenderingFailure"

    assert parse_ses_event(record).kind is EventKind.RENDERING_FAILURE


@pytest.mark.parametrize(
    "record",
    [
        (
            '{"notificationType":"AmazonSnsSubscriptionSucceeded","message":"You have successfully subscribed your '
            "Amazon SNS topic 'arn:aws:sns:us-west-2:123456789012:MyTopic' to receive 'Bounce' notifications from "
            "Amazon SES for identity 'example.com'.\"}"
        ),
        "Successfully validated SNS topic for Amazon SES event publishing.",
    ],
)
def test_ses_setup_notices_are_not_events(record):
    assert parse_ses_event(record) is None
    assert event_from_sqs_body(record) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.update(eventType="Teleport"), "unknown eventType/notificationType 'Teleport'"),
        (lambda r: r.pop("eventType"), "unknown eventType/notificationType None"),
        (lambda r: r.update(eventType=["Bounce"]), "unknown eventType/notificationType"),
        (lambda r: r.update(mail=["x"]), "mail missing"),
        (lambda r: r.update(bounce="Permanent"), "bounce missing"),
        (lambda r: r.pop("mail"), "mail missing"),
        (lambda r: r["mail"].pop("messageId"), "messageId missing"),
        (lambda r: r.pop("bounce"), "bounce missing"),
        (lambda r: r["bounce"].update(bouncedRecipients=[]), "no recipients"),
        (lambda r: r["bounce"].update(timestamp="yesterday"), "not an ISO 8601 time"),
    ],
)
def test_a_record_that_is_not_understood_is_refused(change, reason):
    record = fixture("event_bounce.json")
    change(record)

    with pytest.raises(WebhookError, match=reason):
        parse_ses_event(record)


def test_a_record_that_is_not_json_is_refused():
    with pytest.raises(WebhookError, match="SES event is not JSON"):
        parse_ses_event("Hello world!")


# ---- the same event, however it arrives, counts once --------------------------------------------


def test_the_same_notification_twice_yields_the_same_dedupe_key(sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(
        notification(sns_certificate_server, fixture("event_bounce.json")), sns_signing_identity.private_key, "2"
    )
    verifier = verifier_for(sns_certificate_server)

    first = event_from_sns(verifier.verify(body))
    retried = event_from_sns(verifier.verify(json.loads(json.dumps(body))))

    assert first.dedupe_key == retried.dedupe_key
    assert first == retried
    assert first.envelope_id == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"


def test_an_event_read_raw_or_enveloped_from_sqs_has_the_webhooks_dedupe_key(
    sns_certificate_server, sns_signing_identity
):
    record = fixture("event_click.json")
    envelope = sign_sns_message(notification(sns_certificate_server, record), sns_signing_identity.private_key)
    from_webhook = event_from_sns(verifier_for(sns_certificate_server).verify(envelope))

    raw = event_from_sqs_body(json.dumps(record, indent=2))
    enveloped = event_from_sqs_body(json.dumps(envelope))
    verified = event_from_sqs_body(json.dumps(envelope), verifier=verifier_for(sns_certificate_server, max_age=None))

    assert raw.dedupe_key == enveloped.dedupe_key == verified.dedupe_key == from_webhook.dedupe_key
    assert raw.envelope_id is None
    assert enveloped.envelope_id == verified.envelope_id == envelope["MessageId"]


def test_distinct_events_have_distinct_dedupe_keys():
    keys = {
        parse_ses_event(fixture(name)).dedupe_key
        for name in sorted(p.name for p in FIXTURES.glob("*_*.json"))
        if not name.startswith("sns_")
    }
    other_link = fixture("event_click.json")
    other_link["click"]["link"] = "https://example.com/another"
    another_bounce = fixture("event_bounce.json")
    another_bounce["bounce"]["feedbackId"] = "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000001"

    assert len(keys) == 13
    assert parse_ses_event(other_link).dedupe_key not in keys
    assert parse_ses_event(another_bounce).dedupe_key not in keys


def test_a_tampered_envelope_in_sqs_is_refused_when_a_verifier_is_given(sns_certificate_server, sns_signing_identity):
    envelope = sign_sns_message(
        notification(sns_certificate_server, fixture("event_open.json")), sns_signing_identity.private_key
    )
    envelope["Message"] = json.dumps(fixture("event_complaint.json"))

    with pytest.raises(WebhookError, match="signature does not verify"):
        event_from_sqs_body(json.dumps(envelope), verifier=verifier_for(sns_certificate_server, max_age=None))


def test_a_confirmation_that_lands_in_the_queue_is_not_an_event(sns_certificate_server, sns_signing_identity):
    body = json.dumps(sign_sns_message(confirmation(sns_certificate_server), sns_signing_identity.private_key))

    assert event_from_sqs_body(body) is None
    assert event_from_sqs_body(body, verifier=verifier_for(sns_certificate_server, max_age=None)) is None


def test_an_sqs_body_that_is_neither_envelope_nor_event_is_refused():
    with pytest.raises(WebhookError, match="neither an SNS envelope nor an SES event"):
        event_from_sqs_body('{"hello": "world"}')


def test_event_from_sns_refuses_a_confirmation(sns_certificate_server, sns_signing_identity):
    message = verifier_for(sns_certificate_server).verify(
        sign_sns_message(confirmation(sns_certificate_server), sns_signing_identity.private_key)
    )

    with pytest.raises(WebhookError, match="carries no SES event"):
        event_from_sns(message)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("event_*.json")))
def test_every_event_type_arrives_through_a_signed_notification(name, sns_certificate_server, sns_signing_identity):
    body = sign_sns_message(notification(sns_certificate_server, fixture(name)), sns_signing_identity.private_key, "2")

    event = event_from_sns(verifier_for(sns_certificate_server).verify(body))

    assert isinstance(event, FeedbackEvent)
    assert event == parse_ses_event(fixture(name), sns_message_id=body["MessageId"])


# ---- suppression ----------------------------------------------------------------------------


def bounce(bounce_type: str, moment: datetime, subtype: str = "General") -> FeedbackEvent:
    record = fixture("event_bounce.json")
    record["bounce"].update(bounceType=bounce_type, bounceSubType=subtype, timestamp=iso(moment))
    return parse_ses_event(record)


def test_a_permanent_bounce_suppresses_at_once():
    assert SuppressionPolicy().suppression_for(bounce("Permanent", NOW)) is Suppression.BOUNCED


def test_a_complaint_suppresses_at_once_but_a_not_spam_report_does_not():
    complaint = parse_ses_event(fixture("event_complaint.json"))
    record = fixture("event_complaint.json")
    record["complaint"]["complaintFeedbackType"] = "not-spam"

    assert SuppressionPolicy().suppression_for(complaint) is Suppression.COMPLAINED
    assert SuppressionPolicy().suppression_for(parse_ses_event(record)) is None


def test_the_third_soft_bounce_within_thirty_days_suppresses():
    policy = SuppressionPolicy()
    earlier = [NOW - timedelta(days=29), NOW - timedelta(days=3)]

    assert policy.suppression_for(bounce("Transient", NOW), earlier[:1]) is None
    assert policy.suppression_for(bounce("Transient", NOW), earlier) is Suppression.SOFT_BOUNCED
    assert policy.suppression_for(bounce("Undetermined", NOW, "Undetermined"), earlier) is Suppression.SOFT_BOUNCED


def test_soft_bounces_spread_over_more_than_thirty_days_do_not_suppress():
    earlier = [NOW - timedelta(days=30), NOW - timedelta(days=3)]

    assert SuppressionPolicy().suppression_for(bounce("Transient", NOW), earlier) is None


def test_content_bounces_never_suppress_the_address():
    earlier = [NOW - timedelta(days=2), NOW - timedelta(days=1)]

    assert SuppressionPolicy().suppression_for(bounce("Transient", NOW, "ContentRejected"), earlier) is None


def test_opens_clicks_and_deliveries_never_suppress():
    policy = SuppressionPolicy()
    for name in ("event_open.json", "event_click.json", "event_delivery.json", "event_send.json"):
        assert policy.suppression_for(parse_ses_event(fixture(name)), [NOW] * 5) is None


def test_the_limits_come_from_settings():
    policy = SuppressionPolicy.from_settings(EventsSettings(transient_bounce_limit=2, transient_bounce_days=7))
    earlier_in_week = [NOW - timedelta(days=6)]
    earlier_last_month = [NOW - timedelta(days=8)]

    assert policy.suppression_for(bounce("Transient", NOW), earlier_in_week) is Suppression.SOFT_BOUNCED
    assert policy.suppression_for(bounce("Transient", NOW), earlier_last_month) is None


def test_soft_bounces_after_the_current_one_do_not_count():
    # Replaying a backlog: the history may already hold bounces later than this one.
    later = [NOW + timedelta(days=1), NOW + timedelta(days=2)]

    assert SuppressionPolicy().soft_bounces_suppress([*later, NOW], now=NOW) is False
