"""SES error answers read by newsletter/transports/ses/errors.py: directly, and over real HTTP
from the SES test server (moto behind LocalSes) so botocore parses them as it would AWS's."""

from __future__ import annotations

import pytest

from newsletter.errors import TransportError
from newsletter.transports.ses.errors import classify

pytest.register_assert_rewrite("tests.transport_servers")
from tests.transport_servers import LocalSes

pytest_plugins = ["tests.transport_servers"]

SENDER = "digest@example.com"
SANDBOX_REFUSAL = (
    "Email address is not verified. The following identities failed the check in region US-EAST-1: reader@example.org"
)


def xml_error(code: str, message: str) -> bytes:
    # The query protocol's error shape (SES API v1 reference, "Common errors").
    return (
        '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>4f1c-example</RequestId>"
        "</ErrorResponse>"
    ).encode()


@pytest.mark.parametrize(
    ("status", "code", "text", "temporary", "throttled", "stops", "bounce"),
    [
        (429, "TooManyRequestsException", "Maximum sending rate exceeded.", True, True, False, False),
        (400, "Throttling", "Maximum sending rate exceeded.", True, True, False, False),
        (400, "ThrottlingException", "Daily message quota exceeded.", True, False, True, False),
        (400, "LimitExceededException", "Sending quota exceeded", True, False, True, False),
        (503, "ServiceUnavailable", "Service is unavailable", True, False, False, False),
        (500, "SomethingNew", "", True, False, False, False),
        (400, "SendingPausedException", "Sending is paused for this account.", False, False, True, False),
        (400, "MessageRejected", f"Email address is not verified: {SENDER}", False, False, True, False),
        # The sandbox refusing an unverified *recipient*: a failure of this message, not a bounce.
        (
            400,
            "MessageRejected",
            SANDBOX_REFUSAL,
            False,
            False,
            False,
            False,
        ),
        (400, "MessageRejected", "Message contains a virus.", False, False, False, False),
        (400, "BadRequestException", "Missing final '@domain'", False, False, False, True),
        (400, "InvalidParameterValue", "Illegal address", False, False, False, True),
        (400, "MessageRejected", "Address blacklisted.", False, False, False, True),
        (400, "BadRequestException", "Tags must not be empty", False, False, False, False),
        # A 4xx nobody documented: not proof the message can never go.
        (400, "WhoKnowsException", "something odd", True, False, False, False),
        (418, "", "", True, False, False, False),
    ],
)
def test_classify_reads_each_kind_of_answer(status, code, text, temporary, throttled, stops, bounce):
    failure = classify(status, None, code, text, sender=SENDER)
    assert (failure.temporary, failure.throttled, failure.stops_send, failure.hard_bounce) == (
        temporary,
        throttled,
        stops,
        bounce,
    )


def test_classify_reads_the_code_from_an_xml_body_when_the_parsed_code_is_only_the_status():
    # What botocore's sesv2 parser hands over for an XML error: the status as the code and the
    # whole body as the message.
    body = xml_error("Throttling", "Maximum sending rate exceeded.")
    failure = classify(400, None, "400", body.decode(), sender=SENDER)
    assert (failure.code, failure.text) == ("Throttling", "Maximum sending rate exceeded.")
    assert failure.temporary and failure.throttled and not failure.stops_send


def test_classify_reads_a_raw_json_body_and_an_error_type_header_value():
    failure = classify(
        400, b'{"__type": "com.amazon#MessageRejected", "message": "Message contains a virus."}', None, None
    )
    assert (failure.code, failure.temporary, failure.hard_bounce) == ("MessageRejected", False, False)
    header = classify(429, b"{}", "TooManyRequestsException:http://internal.amazon.com/coral/", "slow down")
    assert header.code == "TooManyRequestsException" and header.throttled


def test_an_unreadable_400_body_is_temporary():
    failure = classify(400, b"<html><body>Bad gateway somewhere</body></html>", None, None)
    assert failure.temporary and failure.code == "400"


def test_the_failure_becomes_a_transport_error_with_its_flags():
    error = classify(400, None, "BadRequestException", "Missing final '@domain'").transport_error("x@example.org")
    assert isinstance(error, TransportError)
    assert error.permanent and error.hard_bounce and not error.stops_send and error.recipient == "x@example.org"
    assert str(error) == "SES BadRequestException: Missing final '@domain'"


# ---- over HTTP, through SesTransport and botocore ---------------------------------------


def send_one(server: LocalSes) -> TransportError:
    from newsletter.transports.ses.send import SesTransport

    server.verify(SENDER)
    message = b"From: digest@example.com\r\nTo: reader@example.org\r\nSubject: x\r\n\r\nbody\r\n"
    with (
        SesTransport(region=server.region, endpoint_url=server.endpoint_url) as transport,
        pytest.raises(TransportError) as caught,
    ):
        transport.send(message, sender=SENDER, recipient="reader@example.org")
    return caught.value


def test_an_xml_throttling_answer_over_http_is_temporary_and_throttled(local_ses: LocalSes):
    local_ses.fail_next_raw(1, 400, xml_error("Throttling", "Maximum sending rate exceeded."))
    error = send_one(local_ses)
    assert not error.permanent and error.throttled and error.code == "Throttling"
    assert str(error) == "SES Throttling: Maximum sending rate exceeded."
    assert error.__cause__.response["Error"]["Code"] == "400"  # what botocore read by itself


def test_an_xml_message_rejected_over_http_is_permanent_and_names_the_reason(local_ses: LocalSes):
    local_ses.fail_next_raw(1, 400, xml_error("MessageRejected", "Message contains a virus."))
    error = send_one(local_ses)
    assert error.permanent and not error.hard_bounce and not error.stops_send
    assert error.code == "MessageRejected"


def test_an_xml_answer_with_an_unknown_code_over_http_is_temporary(local_ses: LocalSes):
    local_ses.fail_next_raw(1, 400, xml_error("SomethingWeWereNeverTold", "odd"))
    error = send_one(local_ses)
    assert not error.permanent and not error.throttled


def test_a_bad_address_over_http_is_a_hard_bounce(local_ses: LocalSes):
    local_ses.fail_next(1, "BadRequestException", "Missing final '@domain'", 400)
    error = send_one(local_ses)
    assert error.permanent and error.hard_bounce
