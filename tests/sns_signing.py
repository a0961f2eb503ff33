"""Sign SNS messages the way Amazon SNS does, and serve the certificate from 127.0.0.1.

For any test that needs authentic-looking SNS traffic (tests/test_ses_events.py, the
/hooks/ses web tests later).  The string to sign is built here independently of
`newsletter.transports.ses.sns`, from the SNS Developer Guide ("Verifying the signatures of Amazon SNS
messages"), so a mistake in the production code cannot be mirrored by the test helper.

Use the fixtures by importing them into a test module:

    from sns_signing import sns_signing_identity, sns_certificate_server  # noqa: F401
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

# What the verifier must be told to accept for certificates served by `LocalHttpServer`;
# production only accepts https on sns.<region>.amazonaws.com.
LOCAL_SNS_ORIGIN_PATTERN = r"http://127\.0\.0\.1:\d+"

# Per message type, the names SNS signs (Subject only when present), in byte order.
_SIGNED_NAMES = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


@dataclass(frozen=True)
class SigningIdentity:
    """An RSA key and a self-signed certificate for it, standing in for SNS's."""

    private_key: rsa.RSAPrivateKey
    certificate_pem: bytes


def make_signing_identity(common_name: str = "sns.amazonaws.com") -> SigningIdentity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return SigningIdentity(key, certificate.public_bytes(serialization.Encoding.PEM))


def sns_string_to_sign(body: Mapping[str, Any]) -> bytes:
    """ "Name\\nvalue\\n" for each signed name present, in the order the SNS guide lists them."""
    names = _SIGNED_NAMES[body["Type"]]
    return "".join(f"{name}\n{body[name]}\n" for name in names if name in body).encode("utf-8")


def sign_sns_message(body: Mapping[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, Any]:
    """A copy of `body` with `SignatureVersion` and `Signature` set as SNS sets them:
    base64 of SHA1withRSA (version 1) or SHA256withRSA (version 2) over the string to sign."""
    signed = dict(body)
    signed["SignatureVersion"] = version
    signature = key.sign(sns_string_to_sign(signed), padding.PKCS1v15(), _HASHES[version]())
    signed["Signature"] = base64.b64encode(signature).decode("ascii")
    return signed


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class LocalHttpServer:
    """A real HTTP server on 127.0.0.1 (a free port) in a thread: serves fixed answers by path
    and records every request path (with its query) it received."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                route = server.routes.get(self.path.split("?", 1)[0], Route(404, b"not found"))
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll interval: shutdown() waits for the next poll, and the default 0.5 s per
        # server would dominate the test run.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    @property
    def origin(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def serve(self, path: str, body: bytes, status: int = 200, **headers: str) -> str:
        self.routes[path] = Route(status, body, dict(headers))
        return self.url(path)

    def requests_for(self, path: str) -> list[str]:
        return [request for request in self.requests if request.split("?", 1)[0] == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture(scope="session")
def sns_signing_identity() -> SigningIdentity:
    return make_signing_identity()


@pytest.fixture
def sns_certificate_server(sns_signing_identity: SigningIdentity):
    """A local server with the signing certificate at /SimpleNotificationService-test.pem."""
    with LocalHttpServer() as server:
        server.serve("/SimpleNotificationService-test.pem", sns_signing_identity.certificate_pem)
        yield server
