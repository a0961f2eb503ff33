"""Real mail servers on 127.0.0.1 for transport, campaign and benchmark tests.

- `LocalSmtp`: an aiosmtpd server (optionally STARTTLS or implicit TLS, optionally AUTH)
  that records every message and can refuse recipients, drop connections and name queue ids.
- `LocalSes`: moto's SES in server mode behind a small WSGI layer that adds what moto lacks:
  `GET /v2/email/account` (the send quota), throttling (`429 TooManyRequestsException`),
  the daily quota, and any other SES error, all over real HTTP so botocore parses them as it
  would AWS's answers.

Use as a pytest plugin (`pytest_plugins = ["tests.transport_servers"]`) for the fixtures
`local_smtp`, `local_ses` and `tls_certificate`, or import the classes directly.
"""

from __future__ import annotations

import base64
import collections
import datetime
import email.message
import io
import ipaddress
import json
import random
import ssl
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Self

import pytest

LOOPBACK = "127.0.0.1"


# ---------------------------------------------------------------------------------------
# A self-signed certificate for 127.0.0.1 / localhost
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsCertificate:
    certfile: Path
    keyfile: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate and checks the host name, as a
        real client trusting the system CAs would check a real server's."""
        return ssl.create_default_context(cafile=str(self.certfile))


def make_certificate(directory: Path) -> TlsCertificate:
    """A self-signed certificate valid for 127.0.0.1 and localhost (EC P-256: quick to make)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return TlsCertificate(certfile, keyfile)


# ---------------------------------------------------------------------------------------
# SMTP
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpDelivery:
    """One message as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes  # exactly the bytes after DATA, dot-unstuffed, without the final "."
    mail_options: list[str]
    queue_id: str | None
    tls: bool
    login: str | None
    # The name the client gave in EHLO (or HELO).
    helo: str | None = None

    @property
    def message(self) -> email.message.EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.content)


class _SmtpHandler:
    """aiosmtpd handler hooks (https://aiosmtpd.readthedocs.io/en/latest/handlers.html)."""

    def __init__(self, owner: LocalSmtp) -> None:
        self.owner = owner

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.owner._next_reply(self.owner.mail_replies)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.owner.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        owner = self.owner
        for address in envelope.rcpt_tos:
            if address in owner.data_replies:
                return owner.data_replies[address]
        queue_id = uuid.uuid4().hex[:12].upper() if owner.queue_ids else None
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else session.auth_data
        delivery = SmtpDelivery(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            content=bytes(envelope.original_content),
            mail_options=list(envelope.mail_options),
            queue_id=queue_id,
            # aiosmtpd fills session.ssl after STARTTLS; implicit TLS shows on the transport.
            tls=session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None,
            login=login,
            helo=session.host_name,
        )
        with owner._lock:
            owner.received.append(delivery)
            drop = owner._drops_after_data > 0
            if drop:
                owner._drops_after_data -= 1
            hang_up = owner._hang_ups_in_data > 0
            if hang_up:
                owner._hang_ups_in_data -= 1
        if hang_up:
            # Gone before the reply: the client cannot know the message was taken.
            server.transport.close()
            return "250 OK"
        if drop:
            # Runs after the 250 below has been written: asyncio flushes before closing.
            server.loop.call_soon(server.transport.close)
        return f"250 2.0.0 Ok: queued as {queue_id}" if queue_id else "250 Message accepted for delivery"


class LocalSmtp:
    """An aiosmtpd server on 127.0.0.1 at a free port.

    `tls`: None (plain), "starttls" (offered; required when `users` is set) or "ssl"
    (implicit TLS).  `users`: login -> password for AUTH PLAIN/LOGIN.  `queue_ids`: answer
    DATA like Postfix ("250 2.0.0 Ok: queued as ID").

    Steering, all thread-safe and settable while running:
    - `rcpt_replies[address] = "550 5.1.1 No such user"`: answer RCPT TO for that address.
    - `data_replies[address] = "554 5.7.1 Rejected"`: answer the end of DATA for that address.
    - `mail_replies.append("421 4.4.2 Timeout")`: answer the next MAIL FROM (FIFO).
    - `drop_after_data(n)`: close the connection right after the next n accepted messages.
    - `hang_up_in_data(n)`: record the next n messages but close before replying.
    Read `received` (list of `SmtpDelivery`) and `connections` (sessions opened).
    """

    def __init__(
        self,
        *,
        tls: str | None = None,
        certificate: TlsCertificate | None = None,
        users: dict[str, str] | None = None,
        queue_ids: bool = False,
        smtputf8: bool = True,
    ) -> None:
        if tls and certificate is None:
            raise ValueError("tls needs a certificate (make_certificate)")
        self.tls = tls
        self.certificate = certificate
        self.users = dict(users or {})
        self.queue_ids = queue_ids
        self.smtputf8 = smtputf8
        self.host = LOOPBACK
        self.port = 0
        self.received: list[SmtpDelivery] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: dict[str, str] = {}
        self.mail_replies: collections.deque[str] = collections.deque()
        self.connections = 0
        self.logins: list[str] = []
        self._drops_after_data = 0
        self._hang_ups_in_data = 0
        self._lock = threading.Lock()
        self._controller = None

    def drop_after_data(self, count: int = 1) -> None:
        with self._lock:
            self._drops_after_data += count

    def hang_up_in_data(self, count: int = 1) -> None:
        with self._lock:
            self._hang_ups_in_data += count

    def client_context(self) -> ssl.SSLContext | None:
        return self.certificate.client_context() if self.certificate else None

    def start(self) -> LocalSmtp:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

        owner = self

        def authenticate(server, session, envelope, mechanism, auth_data):
            if isinstance(auth_data, LoginPassword):
                login, password = auth_data.login.decode(), auth_data.password.decode()
                if owner.users.get(login) == password:
                    with owner._lock:
                        owner.logins.append(login)
                    return AuthResult(success=True, auth_data=login)
            return AuthResult(success=False, handled=False)

        smtp_options: dict[str, Any] = {"enable_SMTPUTF8": self.smtputf8}
        if self.tls == "starttls":
            smtp_options.update(tls_context=self.certificate.server_context(), require_starttls=bool(self.users))
        if self.users:
            smtp_options.update(authenticator=authenticate, auth_required=True, auth_require_tls=self.tls is not None)

        class CountingController(Controller):
            def factory(self):
                # Called once per accepted connection (the asyncio protocol factory).
                with owner._lock:
                    owner.connections += 1
                return SMTP(self.handler, **self.SMTP_kwargs)

            def _trigger_server(self):
                # aiosmtpd connects to `port` once to check the server is up; with port 0
                # it must first learn which port the kernel chose.
                self.port = self.server.sockets[0].getsockname()[1]
                super()._trigger_server()

        ssl_context = self.certificate.server_context() if self.tls == "ssl" else None
        self._controller = CountingController(
            _SmtpHandler(self), hostname=LOOPBACK, port=0, ssl_context=ssl_context, **smtp_options
        )
        self._controller.start()
        self.port = self._controller.port
        with self._lock:
            # The start-up probe above is not a client.
            self.connections = 0
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_reply(self, replies: collections.deque[str]) -> str | None:
        with self._lock:
            return replies.popleft() if replies else None


# ---------------------------------------------------------------------------------------
# SES (moto in server mode, plus what moto lacks)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SesDelivery:
    """One message moto's SES accepted, read back from /moto-api/data.json."""

    message_id: str
    source: str
    destinations: list[str]  # moto appends the To/Cc header addresses to the envelope ones
    raw: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.raw)


@dataclass(frozen=True)
class SesRequest:
    """One SendEmail request as it reached the server, with how it was answered."""

    body: dict  # the JSON request; Content.Raw.Data still base64
    status: int
    error: str | None  # the SES error code answered, or None when moto accepted it
    at: float  # time.monotonic() when it arrived

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.body["Content"]["Raw"]["Data"])


@dataclass
class _Quota:
    max_24_hour_send: float = 50_000.0
    max_send_rate: float = 14.0
    sent_last_24_hours: float = 0.0
    sending_enabled: bool = True
    production_access: bool = True
    enforce_rate: bool = False


@dataclass
class _Fault:
    code: str
    message: str
    status: int
    # Answer with exactly this body instead of the rest-json error (e.g. the query
    # protocol's XML `<ErrorResponse>`, which botocore's sesv2 parser cannot read).
    body: bytes | None = None
    content_type: str = "text/xml"


class LocalSes:
    """moto's SES v2 on 127.0.0.1, with a quota, throttling and errors on demand.

    moto keeps its state per process, shared by every instance: `received()` therefore
    lists only the messages this instance accepted.

    - `endpoint_url`, `region`, `environ` (AWS_* variables for dummy credentials that keep
      boto3 away from ~/.aws and the instance metadata service).
    - `verify(identity)`: make an address or domain a verified sender (moto refuses others).
    - `received()`: list of `SesDelivery`; `requests`: every SendEmail as `SesRequest`.
    - `set_quota(max_24_hour_send=, max_send_rate=, sent_last_24_hours=, sending_enabled=,
      production_access=, enforce_rate=)`: what GetAccount answers.  Every accepted send counts
      towards SentLast24Hours; past Max24HourSend sends are refused with the daily-quota error;
      with `enforce_rate`, sends beyond MaxSendRate in any one-second window get a 429.
    - `throttle_next(n)`: the next n sends get `429 TooManyRequestsException`.
    - `throttle_share(p, seed=)`: each send is throttled with probability p (seeded).
    - `fail_next(n, code, message, status)`: any other SES error for the next n sends.
    - `fail_next_raw(n, status, body, content_type=)`: answer the next n sends with exactly
      this body (an XML `<ErrorResponse>`, an HTML error page...).
    - `fail_share(p, code, message, status, seed=)`: each send fails so with probability p.
    - `serve_account = False`: leave GET /v2/email/account to moto, which answers 404, like an
      SES-compatible server without GetAccount.
    - `hold_answers_after(n)`: sends after the first n are accepted (moto keeps them) but
      their answers are held back until `release()` (which ends the holding): messages SES took whose answer a
      sender killed meanwhile never read.  `held` counts them.
    - `stall_every(n, seconds)`: before taking in every n-th SendEmail the server stops for
      `seconds`, and the requests arriving meanwhile wait with it: the server process
      losing the CPU, after which the delayed requests arrive together.
    - `keep_messages = False`: answer SendEmail without handing it to moto (for pace tests,
      where moto's per-message work would bunch the arrival times); `requests` only.
    - `reset()`: back to a fresh state (received and requests forgotten).
    """

    DAILY_QUOTA_ERROR = ("TooManyRequestsException", "Daily message quota exceeded.", 429)
    RATE_ERROR = ("TooManyRequestsException", "Maximum sending rate exceeded.", 429)

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.requests: list[SesRequest] = []
        self._message_ids: list[str] = []
        self._quota = _Quota()
        self._faults: collections.deque[_Fault] = collections.deque()
        self._throttle_share = 0.0
        self._random = random.Random(0)
        self._fail_share: tuple[float, _Fault, random.Random] | None = None
        self._accepted_times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None
        self.endpoint_url = ""
        # False leaves GET /v2/email/account to moto, which has no such route (404).
        self.serve_account = True
        self._hold_after: int | None = None
        self._released = threading.Event()
        self.held = 0
        # False: SendEmail is answered without moto, which then keeps nothing (`received()`
        # is empty; `requests` still has every request, timestamped).  For pace tests.
        self.keep_messages = True
        self._stall: tuple[int, float] | None = None
        self._stall_gate = threading.Lock()
        self._sends_seen = 0

    # ---- life cycle ----

    def start(self) -> LocalSes:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log(self, type: str, message: str, *args: Any) -> None:
                pass

        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(LOOPBACK, 0, self._app, threaded=True, request_handler=QuietHandler)
        self.endpoint_url = f"http://{LOOPBACK}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-ses", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.requests = []
            self._message_ids = []
            self._quota = _Quota()
            self._faults.clear()
            self._throttle_share = 0.0
            self._random = random.Random(0)
            self._fail_share = None
            self._accepted_times.clear()
            self.serve_account = True
            self._hold_after = None
            self._released.set()
            self._released = threading.Event()
            self.held = 0
            self.keep_messages = True
            self._stall = None
            self._sends_seen = 0

    # ---- set-up ----

    @property
    def environ(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        """A boto3 sesv2 client for this server, for set-up and assertions."""
        import boto3

        return boto3.session.Session().client(
            "sesv2",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def verify(self, *identities: str) -> None:
        client = self.client()
        for identity in identities:
            try:
                client.create_email_identity(EmailIdentity=identity)
            except client.exceptions.AlreadyExistsException:
                pass
        client.close()

    def set_quota(self, **values: Any) -> None:
        with self._lock:
            for name, value in values.items():
                if not hasattr(self._quota, name):
                    raise TypeError(f"unknown quota field {name!r}")
                setattr(self._quota, name, value)

    def throttle_next(self, count: int = 1) -> None:
        self.fail_next(count, *self.RATE_ERROR)

    def throttle_share(self, share: float, *, seed: int = 0) -> None:
        with self._lock:
            self._throttle_share = share
            self._random = random.Random(seed)

    def fail_next(self, count: int, code: str, message: str, status: int = 400) -> None:
        with self._lock:
            self._faults.extend(_Fault(code, message, status) for _ in range(count))

    def fail_next_raw(self, count: int, status: int, body: bytes, content_type: str = "text/xml") -> None:
        with self._lock:
            self._faults.extend(_Fault("raw", "", status, body, content_type) for _ in range(count))

    def stall_every(self, every: int, seconds: float) -> None:
        with self._lock:
            self._stall = (every, seconds)

    def hold_answers_after(self, count: int) -> None:
        with self._lock:
            self._hold_after = count

    def release(self) -> None:
        """Answer the held sends, and hold no more."""
        with self._lock:
            self._hold_after = None
        self._released.set()

    def fail_share(self, share: float, code: str, message: str, status: int, *, seed: int = 1) -> None:
        with self._lock:
            self._fail_share = (share, _Fault(code, message, status), random.Random(seed))

    # ---- reading back ----

    def received(self) -> list[SesDelivery]:
        with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=10) as response:
            data = json.load(response)
        with self._lock:
            ours = set(self._message_ids)
        return [
            SesDelivery(
                message_id=item["id"],
                source=item["source"],
                destinations=list(item["destinations"]),
                raw=item["raw_data"].encode("utf-8", "surrogateescape"),
            )
            for item in data.get("ses", {}).get("RawMessage", [])
            if item["id"] in ours
        ]

    @property
    def accepted_count(self) -> int:
        with self._lock:
            return len(self._message_ids)

    @property
    def sent_last_24_hours(self) -> float:
        with self._lock:
            return self._quota.sent_last_24_hours

    # ---- the WSGI layer in front of moto ----

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        if method == "GET" and path == "/v2/email/account" and self.serve_account:
            return self._get_account(start_response)
        if method == "POST" and path == "/v2/email/outbound-emails":
            return self._send_email(environ, start_response)
        return self._moto(environ, start_response)

    def _get_account(self, start_response: Callable) -> Iterable[bytes]:
        with self._lock:
            quota = self._quota
            body = {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": quota.production_access,
                "SendQuota": {
                    "Max24HourSend": quota.max_24_hour_send,
                    "MaxSendRate": quota.max_send_rate,
                    "SentLast24Hours": quota.sent_last_24_hours,
                },
                "SendingEnabled": quota.sending_enabled,
            }
        return _json_response(start_response, 200, body)

    def _send_email(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw_body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw_body)
        body = json.loads(raw_body or b"{}")
        self._take_in()
        now = time.monotonic()
        fault = self._fault_for(now)
        if fault is not None:
            with self._lock:
                self.requests.append(SesRequest(body, fault.status, fault.code, now))
            return _error_response(start_response, fault)

        if not self.keep_messages:
            # Answered here, as SES would, without moto's ~15 ms of parsing and storing
            # each message in this process: at 100/s that would hold the GIL long enough to
            # bunch the arrival times it is there to measure.
            message_id = f"{uuid.uuid4()}-000000"
            with self._lock:
                self._message_ids.append(message_id)
                self.requests.append(SesRequest(body, 200, None, now))
            return _json_response(start_response, 200, {"MessageId": message_id})

        captured: dict[str, Any] = {}

        def capture(status: str, headers: list, exc_info: Any = None):
            captured["status"] = int(status.split()[0])
            return start_response(status, headers, exc_info)

        chunks = b"".join(self._moto(environ, capture))
        status = captured.get("status", 500)
        with self._lock:
            error = None
            if status == 200:
                self._message_ids.append(json.loads(chunks)["MessageId"])
            else:
                error = _moto_error_code(chunks)
                # Give back what _fault_for counted in advance.
                self._quota.sent_last_24_hours -= 1
                if now in self._accepted_times:
                    self._accepted_times.remove(now)
            self.requests.append(SesRequest(body, status, error, now))
            hold = status == 200 and self._hold_after is not None and len(self._message_ids) > self._hold_after
            if hold:
                self.held += 1
            released = self._released
        if hold:
            released.wait(timeout=120)
        return [chunks]

    def _take_in(self) -> None:
        """Where a stall (`stall_every`) holds this request and the ones behind it."""
        with self._lock:
            self._sends_seen += 1
            stall = self._stall
            seconds = stall[1] if stall is not None and self._sends_seen % stall[0] == 0 else 0.0
        with self._stall_gate:
            if seconds:
                time.sleep(seconds)

    def _fault_for(self, now: float) -> _Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            quota = self._quota
            if not quota.sending_enabled:
                return _Fault("SendingPausedException", "Sending is paused for this account.", 400)
            if 0 <= quota.max_24_hour_send <= quota.sent_last_24_hours:
                return _Fault(*self.DAILY_QUOTA_ERROR)
            if self._throttle_share and self._random.random() < self._throttle_share:
                return _Fault(*self.RATE_ERROR)
            if self._fail_share is not None:
                share, failure, chooser = self._fail_share
                if chooser.random() < share:
                    return failure
            if quota.enforce_rate:
                window = self._accepted_times
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) >= quota.max_send_rate:
                    return _Fault(*self.RATE_ERROR)
            # Counted now, not when moto has answered: requests arriving meanwhile on other
            # threads must see this one, or a concurrent sender gets past the daily quota.
            quota.sent_last_24_hours += 1
            self._accepted_times.append(now)
        return None


def _json_response(start_response: Callable, status: int, body: dict, headers: list | None = None) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'Error')}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ]
        + (headers or []),
    )
    return [payload]


def _error_response(start_response: Callable, fault: _Fault) -> list[bytes]:
    if fault.body is not None:
        start_response(
            f"{fault.status} {_REASONS.get(fault.status, 'Error')}",
            [("Content-Type", fault.content_type), ("Content-Length", str(len(fault.body)))],
        )
        return [fault.body]
    # The rest-json error shape AWS sends and botocore's RestJSONParser reads: the code in
    # the x-amzn-ErrorType header (anything after ':' is ignored), the text in "message".
    return _json_response(
        start_response,
        fault.status,
        {"message": fault.message},
        [("x-amzn-ErrorType", f"{fault.code}:http://internal.amazon.com/coral/com.amazonaws.sesv2/")],
    )


def _moto_error_code(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return "unparsed"
    return parsed.get("__type") or parsed.get("code") or parsed.get("Code") or "unknown"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# ---------------------------------------------------------------------------------------
# pytest fixtures
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> TlsCertificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def local_smtp() -> Iterable[LocalSmtp]:
    """A plain SMTP server recording what it receives; for TLS or AUTH build a LocalSmtp."""
    with LocalSmtp() as server:
        yield server


@pytest.fixture(scope="session")
def _ses_server() -> Iterable[LocalSes]:
    # One moto per test process: its first request imports the SES backend (~1 s).
    with LocalSes() as server:
        yield server


@pytest.fixture
def local_ses(_ses_server: LocalSes, monkeypatch: pytest.MonkeyPatch) -> LocalSes:
    """The SES server, reset, with dummy AWS credentials in the environment."""
    _ses_server.reset()
    for name, value in _ses_server.environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return _ses_server
