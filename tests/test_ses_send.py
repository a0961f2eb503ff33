"""The lean SendEmail path of newsletter/transports/ses/send.py (and keepalive.py) on the wire.

moto (tests/test_transports.py) shows SES accepts what we send, but it checks no signature
and werkzeug closes every connection after one answer.  These tests run against the asyncio
SES stand-in of the benchmarks (bench/instant_ses.py), which keeps connections open and
records each request exactly as it arrived, so they can check the signature, count the
connections, and script answers byte for byte (error bodies, chunked framing, a dropped
connection).  Real things throughout: TCP on 127.0.0.1, TLS with a certificate made here,
a CONNECT proxy, botocore's credential chain running a credential process.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from bench.instant_ses import DROP, LOOPBACK, Answer, InstantSes, WireRequest
from newsletter.errors import TransportError
from newsletter.transports.base import STOPPED
from newsletter.transports.ses import send as ses_send
from newsletter.transports.ses.send import SesTransport

pytest_plugins = ["tests.transport_servers"]

SENDER = "digest@example.com"
READER = "reader@example.org"
KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-of-the-tests"
FIXED_CLOCK = datetime.datetime(2026, 11, 30, 8, 0, 0)


def message(number: int = 0) -> bytes:
    return (
        f"From: Digest <{SENDER}>\r\nTo: {READER}\r\nSubject: =?utf-8?b?5pep5a6J?=\r\n"
        f"Message-ID: <issue-1.{number}@example.com>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + base64.encodebytes("读者你好，这是第一期。\r\n".encode() * 40).replace(b"\n", b"\r\n")


@pytest.fixture(scope="module")
def stand_in() -> Iterator[InstantSes]:
    with InstantSes(record=True) as server:
        yield server


@pytest.fixture
def ses(stand_in: InstantSes, monkeypatch: pytest.MonkeyPatch) -> InstantSes:
    """The stand-in, reset, with static credentials (and a session token) in the environment."""
    stand_in.reset()
    stand_in.prefix = ""
    for name, value in {
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    return stand_in


def transport(server: InstantSes, **options) -> SesTransport:
    return SesTransport(region="us-east-1", endpoint_url=server.endpoint_url, **options)


def sends(server: InstantSes) -> list[WireRequest]:
    return [r for r in server.requests if r.method == "POST"]


def expected_authorization(request: WireRequest, *, scheme: str = "http", key=KEY, secret=SECRET, token=TOKEN) -> str:
    """The Authorization field botocore's signer gives the request as it arrived, signed
    again here (with the clock the request was signed at, X-Amz-Date)."""
    signed = AWSRequest(
        method=request.method,
        url=f"{scheme}://{request.headers['host']}{request.target}",
        data=request.body,
        headers={"Content-Type": request.headers["content-type"], "Host": request.headers["host"]},
    )
    stamp = datetime.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    signer = SigV4Auth(ReadOnlyCredentials(key, secret, token), "ses", "us-east-1")
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *args, **kwargs: stamp
    try:
        signer.add_auth(signed)
    finally:
        botocore.auth.get_current_datetime = original
    return signed.headers["Authorization"]


# ---------------------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------------------


def test_send_email_is_the_request_boto3_would_make_signed_as_botocore_signs(
    ses: InstantSes, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: FIXED_CLOCK)
    tags = {"issue": "2026-11-30", "list": "科技 news"}
    with transport(ses, configuration_set="newsletter-events") as lean:
        message_id = lean.send(message(), sender=SENDER, recipient=READER, tags=tags)
    # The same call through boto3, for comparison.
    client = boto3.session.Session().client("sesv2", region_name="us-east-1", endpoint_url=ses.endpoint_url)
    client.send_email(
        FromEmailAddress=SENDER,
        Destination={"ToAddresses": [READER]},
        Content={"Raw": {"Data": message()}},
        ConfigurationSetName="newsletter-events",
        EmailTags=[{"Name": "issue", "Value": "2026-11-30"}, {"Name": "list", "Value": "_news-246jz16k"}],
    )
    client.close()

    ours, boto3s = sends(ses)
    assert message_id == "0100019a-00000001-instant"
    assert (ours.method, ours.target) == ("POST", "/v2/email/outbound-emails")
    assert ours.json == boto3s.json
    assert base64.b64decode(ours.json["Content"]["Raw"]["Data"]) == message()
    assert ours.headers["host"] == f"{LOOPBACK}:{ses.port}"
    assert ours.headers["content-type"] == "application/json"
    assert int(ours.headers["content-length"]) == len(ours.body)
    assert ours.headers["x-amz-date"] == "20261130T080000Z"
    assert ours.headers["x-amz-security-token"] == TOKEN
    # The same fields signed as boto3 signs them, and the signature botocore computes for them.
    signed_headers = "content-type;host;x-amz-date;x-amz-security-token"
    assert re.fullmatch(
        rf"AWS4-HMAC-SHA256 Credential={KEY}/20261130/us-east-1/ses/aws4_request, "
        rf"SignedHeaders={signed_headers}, Signature=[0-9a-f]{{64}}",
        ours.headers["authorization"],
    )
    assert f"SignedHeaders={signed_headers}," in boto3s.headers["authorization"]
    assert ours.headers["authorization"] == expected_authorization(ours)


def test_one_sender_reuses_one_connection(ses: InstantSes):
    with transport(ses, max_connections=1) as lean:
        for number in range(5):
            lean.send(message(number), sender=SENDER, recipient=READER)
    assert ses.connections == 1
    assert [r.connection for r in sends(ses)] == [1] * 5


def test_threads_share_at_most_max_connections(ses: InstantSes):
    lean = transport(ses, max_connections=3)
    ids: list[str] = []
    start = threading.Barrier(8)

    def worker(number: int) -> None:
        start.wait(timeout=30)
        for index in range(5):
            ids.append(lean.send(message(number * 10 + index), sender=SENDER, recipient=READER))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    lean.close()

    assert len(set(ids)) == 40 and ses.sends == 40
    assert 1 <= ses.connections <= 3


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(ses: InstantSes):
    with transport(ses, max_connections=1) as lean:
        lean.send(message(1), sender=SENDER, recipient=READER)
        assert ses.hang_up_idle() == 1
        lean.send(message(2), sender=SENDER, recipient=READER)
    assert ses.sends == 2 and ses.connections == 2


@pytest.mark.parametrize("endpoint_path", ["/ses-proxy/eu", "/ses-proxy/eu/"])
def test_endpoint_url_with_a_path_keeps_the_path_and_signs_it(ses: InstantSes, endpoint_path: str):
    ses.prefix = "/ses-proxy/eu"
    endpoint = f"http://{LOOPBACK}:{ses.port}{endpoint_path}"
    with SesTransport(region="us-east-1", endpoint_url=endpoint) as lean:
        lean.send(message(), sender=SENDER, recipient=READER)
        quota = lean.quota()  # boto3 joins the path the same way

    send_request, account_request = ses.requests
    assert send_request.target == "/ses-proxy/eu/v2/email/outbound-emails"
    assert send_request.headers["authorization"] == expected_authorization(send_request)
    assert account_request.target == "/ses-proxy/eu/v2/email/account"
    assert quota is not None and quota.max_send_rate == 100_000


# ---------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------

CREDENTIAL_PROCESS = """\
import datetime, json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
number = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(number))
# Expiring in 5 minutes: inside botocore's mandatory refresh window (10 minutes), so every
# request asks for fresh credentials.
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
print(json.dumps({"Version": 1, "AccessKeyId": f"key-{number}", "SecretAccessKey": f"secret-{number}",
                  "SessionToken": f"token-{number}", "Expiration": expires.isoformat()}))
"""


def test_credentials_from_a_credential_process_are_refreshed_before_they_expire(
    ses: InstantSes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    script = tmp_path / "credentials.py"
    script.write_text(CREDENTIAL_PROCESS)
    counter = tmp_path / "runs"
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {script} {counter}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    with transport(ses) as lean:
        for number in range(3):
            lean.send(message(number), sender=SENDER, recipient=READER)

    keys = []
    for request in sends(ses):
        key = re.search(r"Credential=([^/]+)/", request.headers["authorization"]).group(1)
        number = key.removeprefix("key-")
        assert request.headers["x-amz-security-token"] == f"token-{number}"
        assert request.headers["authorization"] == expected_authorization(
            request, key=key, secret=f"secret-{number}", token=f"token-{number}"
        )
        keys.append(key)
    assert len(set(keys)) == 3, "each request signed with credentials fetched anew"
    assert int(counter.read_text()) >= 3


def test_one_transport_sending_past_midnight_signs_with_each_days_key(ses: InstantSes, monkeypatch: pytest.MonkeyPatch):
    # The signing key is derived from the date (SigV4) and kept for the day: a send running
    # past 00:00 UTC must sign with the new day's key, however many it signed before.
    clock = [datetime.datetime(2026, 11, 30, 23, 59, 59)]
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: clock[0])
    with transport(ses) as lean:
        for number, moment in enumerate(
            (
                datetime.datetime(2026, 11, 30, 23, 59, 59),
                datetime.datetime(2026, 12, 1, 0, 0, 0),
                datetime.datetime(2026, 12, 1, 0, 0, 1),
                datetime.datetime(2026, 11, 30, 23, 59, 59),
            )
        ):
            clock[0] = moment
            lean.send(message(number), sender=SENDER, recipient=READER)
    requests = sends(ses)
    assert [r.headers["x-amz-date"][:8] for r in requests] == ["20261130", "20261201", "20261201", "20261130"]
    for request in requests:
        assert request.headers["authorization"] == expected_authorization(request)


# ---------------------------------------------------------------------------------------
# Pacing at the wire
# ---------------------------------------------------------------------------------------


def _next_second_after(start: float) -> None:
    # X-Amz-Date has whole seconds: wait until the clock shows a later one.
    while int(time.time()) == int(start):
        time.sleep(0.02)


def test_paced_send_is_released_after_it_is_signed(ses: InstantSes):
    released: list[float] = []

    def pace() -> bool:
        assert ses.requests == [], "nothing on the wire before the release"
        released.append(time.time())
        _next_second_after(released[0])
        return True

    with transport(ses) as lean:
        lean.send_paced(message(), sender=SENDER, recipient=READER, tags={}, pace=pace)

    (request,) = sends(ses)
    signed_at = datetime.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    signed_at = signed_at.replace(tzinfo=datetime.UTC).timestamp()
    assert signed_at <= int(released[0]), "signed before pace() was called"


def test_a_request_held_long_by_the_pacer_is_signed_again(ses: InstantSes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ses_send, "RESIGN_AFTER", 0.0)
    released: list[float] = []

    def pace() -> bool:
        released.append(time.time())
        _next_second_after(released[0])
        return True

    with transport(ses) as lean:
        lean.send_paced(message(), sender=SENDER, recipient=READER, tags={}, pace=pace)

    (request,) = sends(ses)
    signed_at = datetime.datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    assert signed_at.replace(tzinfo=datetime.UTC).timestamp() > int(released[0])
    assert request.headers["authorization"] == expected_authorization(request)


def test_a_called_off_send_never_reaches_the_server(ses: InstantSes):
    with transport(ses) as lean, pytest.raises(TransportError) as stopped:
        lean.send_paced(message(), sender=SENDER, recipient=READER, tags={}, pace=lambda: False)
    assert stopped.value.code == STOPPED and not stopped.value.permanent
    assert ses.requests == [] and ses.connections == 0


# ---------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------


def json_error(status: int, body: dict, error_type: str | None = None) -> Answer:
    headers = {"x-amzn-RequestId": "3f1c2d8e-0000-4000-8000-000000000000"}
    if error_type:
        headers["x-amzn-ErrorType"] = error_type
    return Answer(status, json.dumps(body).encode(), headers)


@pytest.mark.parametrize(
    ("answer", "code", "permanent", "stops_send", "throttled"),
    [
        # AWS's rest-json shape: the code in x-amzn-ErrorType (after ':' ignored).
        (
            json_error(
                429,
                {"message": "Maximum sending rate exceeded."},
                "TooManyRequestsException:http://internal.amazon.com/coral/com.amazonaws.sesv2/",
            ),
            "TooManyRequestsException",
            False,
            False,
            True,
        ),
        (
            json_error(429, {"message": "Daily message quota exceeded."}, "TooManyRequestsException"),
            None,
            False,
            True,
            False,
        ),
        # The code in the body only, as other servers write it: __type (with a namespace) or code.
        (
            json_error(400, {"__type": "com.amazonaws.sesv2#MessageRejected", "message": "Bad content"}),
            "MessageRejected",
            True,
            False,
            False,
        ),
        (json_error(400, {"code": "LimitExceededException", "message": "Quota"}), None, False, True, False),
        (
            json_error(403, {"Message": "The security token is invalid."}, "UnrecognizedClientException"),
            None,
            True,
            True,
            False,
        ),
        (json_error(400, {"message": "Sending paused"}, "SendingPausedException"), None, True, True, False),
        (
            json_error(400, {"message": f"Email address is not verified: {SENDER}"}, "MessageRejected"),
            None,
            True,
            True,
            False,
        ),
        # The query protocol's XML error, which botocore's sesv2 parser cannot read.
        (
            Answer(
                400,
                b"<ErrorResponse xmlns='http://ses.amazonaws.com/doc/2010-12-01/'><Error><Type>Sender</Type>"
                b"<Code>Throttling</Code><Message>Maximum sending rate exceeded.</Message></Error>"
                b"<RequestId>7e3a</RequestId></ErrorResponse>",
                {"Content-Type": "text/xml"},
            ),
            "Throttling",
            False,
            False,
            True,
        ),
        # A load balancer's or proxy's page instead of SES's JSON: by status alone.
        (
            Answer(503, b"<html><body>Service Unavailable</body></html>", {"Content-Type": "text/html"}),
            "503",
            False,
            False,
            False,
        ),
        (Answer(502, b""), "502", False, False, False),
        # Not understood: temporary (transports/ses/errors.py says why).
        (Answer(404, b"not here", {"Content-Type": "text/plain"}), "404", False, False, False),
    ],
)
def test_error_answers_are_classified_by_status_and_body(
    ses: InstantSes, answer, code, permanent, stops_send, throttled
):
    ses.script(answer)
    with transport(ses) as lean, pytest.raises(TransportError) as caught:
        lean.send(message(), sender=SENDER, recipient=READER)
    error = caught.value
    assert (error.permanent, error.stops_send, error.throttled, error.uncertain) == (
        permanent,
        stops_send,
        throttled,
        False,
    )
    if code is not None:
        assert error.code == code
    assert error.recipient == READER
    # Chained to the ClientError boto3 would have raised (whose code is "400" for XML).
    assert error.__cause__.response["ResponseMetadata"]["HTTPStatusCode"] == answer.status
    assert ses.sends == 0


def test_a_chunked_answer_and_a_closing_answer_are_read_whole(ses: InstantSes):
    body = b'{"MessageId":"chunked-0001"}'
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (10, body[:10])
        + b"%x;ext=1\r\n%s\r\n" % (len(body) - 10, body[10:])
        + b"0\r\nX-Trailer: 1\r\n\r\n"
    )
    closing = b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"MessageId":"closing-0002"}'
    ses.script(Answer(200, raw=chunked), Answer(200, raw=closing, hang_up=True))
    with transport(ses, max_connections=1) as lean:
        ids = [lean.send(message(n), sender=SENDER, recipient=READER) for n in range(3)]
    assert ids == ["chunked-0001", "closing-0002", "0100019a-00000001-instant"]
    assert [r.connection for r in sends(ses)] == [1, 1, 2], "a new connection after Connection: close"


@pytest.mark.parametrize(
    "answer",
    [
        DROP,  # the server read the whole request, then closed without a word
        Answer(200, raw=b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"MessageId":', hang_up=True),
        Answer(200, raw=b"HTTP/1.1 200 OK\r\nContent-Len", hang_up=True),
        Answer(200, b'{"Message": "accepted"}'),  # 200 without a MessageId
    ],
    ids=["dropped", "body-cut-short", "head-cut-short", "no-message-id"],
)
def test_a_request_that_left_without_a_whole_answer_is_uncertain(ses: InstantSes, answer: Answer):
    ses.script(answer)
    with transport(ses) as lean:
        with pytest.raises(TransportError) as caught:
            lean.send(message(), sender=SENDER, recipient=READER)
        # And the transport carries on afterwards.
        lean.send(message(1), sender=SENDER, recipient=READER)
    assert caught.value.uncertain and not caught.value.permanent and not caught.value.stops_send
    assert "may or may not have been accepted" in str(caught.value)
    assert len(sends(ses)) == 2, "not sent again underneath"


def test_a_read_timeout_is_uncertain(ses: InstantSes):
    ses.latency = 2.0
    try:
        with transport(ses, read_timeout=0.3) as lean, pytest.raises(TransportError) as caught:
            lean.send(message(), sender=SENDER, recipient=READER)
    finally:
        ses.latency = 0.0
    assert caught.value.uncertain and caught.value.code == "ReadTimeoutError"


# ---------------------------------------------------------------------------------------
# TLS and proxies
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_stand_in(tls_certificate) -> Iterator[InstantSes]:
    with InstantSes(record=True, ssl_context=tls_certificate.server_context()) as server:
        yield server


def test_https_trusts_the_ca_bundle_named_by_aws_ca_bundle(
    ses: InstantSes, tls_stand_in: InstantSes, tls_certificate, monkeypatch: pytest.MonkeyPatch
):
    tls_stand_in.reset()
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_certificate.certfile))
    with transport(tls_stand_in, max_connections=1) as lean:
        for number in range(2):
            lean.send(message(number), sender=SENDER, recipient=READER)
        assert lean.quota() is not None  # boto3 trusts the same bundle
    requests = sends(tls_stand_in)
    assert tls_stand_in.endpoint_url.startswith("https://localhost:")
    assert requests[0].headers["host"] == f"localhost:{tls_stand_in.port}"
    assert requests[0].headers["authorization"] == expected_authorization(requests[0], scheme="https")
    assert [r.connection for r in requests] == [1, 1]


def test_https_refuses_a_certificate_it_does_not_trust(ses: InstantSes, tls_stand_in: InstantSes):
    tls_stand_in.reset()
    with transport(tls_stand_in) as lean, pytest.raises(TransportError) as caught:
        lean.send(message(), sender=SENDER, recipient=READER)
    assert caught.value.code == "SSLError" and not caught.value.uncertain
    assert "certificate verify failed" in str(caught.value)
    assert sends(tls_stand_in) == []


class ConnectProxy:
    """A forward proxy on 127.0.0.1: CONNECT tunnels (RFC 9110 section 9.3.6) and
    absolute-form requests for http (RFC 9112 section 3.2.2), Basic credentials required."""

    def __init__(self, authorization: str) -> None:
        self.authorization = authorization
        self.seen: list[str] = []  # the first line of each request it was asked to forward
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65_536)
            if not chunk:
                client.close()
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        first, *fields = head.decode("latin-1").split("\r\n")
        self.seen.append(first)
        given = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
        if given.get("proxy-authorization") != self.authorization:
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        method, target, version = first.split(" ")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            forward = rest
        else:
            where = target.split("/")[2]
            host, _, port = where.partition(":")
            upstream = socket.create_connection((host, int(port or 80)))
            path = "/" + target.split("/", 3)[3]
            kept = [f for f in fields if not f.lower().startswith("proxy-")]
            forward = "\r\n".join([f"{method} {path} {version}", *kept]).encode("latin-1") + b"\r\n\r\n" + rest
        upstream.sendall(forward)
        _relay(client, upstream)


def _relay(one: socket.socket, other: socket.socket) -> None:
    sockets = [one, other]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65_536)
                if not data:
                    return
                (other if sock is one else one).sendall(data)
    finally:
        one.close()
        other.close()


def test_https_goes_through_a_connect_tunnel_of_the_https_proxy(
    ses: InstantSes, tls_stand_in: InstantSes, tls_certificate, monkeypatch: pytest.MonkeyPatch
):
    tls_stand_in.reset()
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tls_certificate.certfile))
    expected = "Basic " + base64.b64encode(b"newsletter:s3cret p@ss").decode()
    with ConnectProxy(expected) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://newsletter:s3cret%20p%40ss@{LOOPBACK}:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "example.invalid")
        with transport(tls_stand_in, max_connections=1) as lean:
            for number in range(2):
                lean.send(message(number), sender=SENDER, recipient=READER)
    assert proxy.seen == [f"CONNECT localhost:{tls_stand_in.port} HTTP/1.1"], "one tunnel, kept alive"
    assert [r.connection for r in sends(tls_stand_in)] == [1, 1]
    assert "proxy-authorization" not in sends(tls_stand_in)[0].headers


def test_http_goes_to_the_http_proxy_in_absolute_form(ses: InstantSes, monkeypatch: pytest.MonkeyPatch):
    expected = "Basic " + base64.b64encode(b"newsletter:pw").decode()
    with ConnectProxy(expected) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://newsletter:pw@{LOOPBACK}:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "example.invalid")
        # boto3 would send GetAccount through the proxy too; only SendEmail is asked here.
        with transport(ses) as lean:
            lean.send(message(), sender=SENDER, recipient=READER)
    assert proxy.seen == [f"POST http://{LOOPBACK}:{ses.port}/v2/email/outbound-emails HTTP/1.1"]
    (request,) = sends(ses)
    assert request.headers["authorization"] == expected_authorization(request)


def test_no_proxy_sends_past_the_proxy(ses: InstantSes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://{LOOPBACK}:9")  # the discard port: nothing listens
    monkeypatch.setenv("NO_PROXY", LOOPBACK)
    with transport(ses) as lean:
        lean.send(message(), sender=SENDER, recipient=READER)
    assert ses.sends == 1


def test_an_https_proxy_url_is_refused_when_the_transport_is_made(ses: InstantSes, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example.net:3128")
    with pytest.raises(TransportError, match="only http:// proxies") as caught:
        transport(ses)
    assert caught.value.stops_send and caught.value.permanent
