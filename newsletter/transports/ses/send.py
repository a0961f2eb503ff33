"""Amazon SES through the API v2 `SendEmail` call with `Content.Raw`.

Raw content keeps every header ours (List-Unsubscribe, List-Id, Feedback-ID); the
configuration set and message tags route SES's delivery, bounce and complaint events back to
`newsletter serve`.  Region and credentials come from the standard AWS chain (environment,
~/.aws, a credential process, instance or container role); `endpoint_url` points the
transport at an SES-compatible server instead, as the tests and benchmarks do.

The send path.  A boto3 `send_email` call costs more CPU than the message it carries: against
a local server that answers at once, botocore's JSON and base64 serialisation, its event
hooks and its request handling took about 3 ms per 140 KB message (issue 15; bench/RESULTS.md).
So `send` builds the `SendEmail` request itself -- the raw message base64-encoded once (SIMD,
pybase64) and spliced into the JSON as bytes -- signs it with botocore's own Signature
Version 4 signer (`SigV4Auth`, with the credentials of the standard chain, refreshed as
botocore refreshes them) and sends it over keep-alive connections pooled for the workers
(keepalive.py: why not urllib3, and what it keeps of botocore's TLS, CA bundle and proxy
settings).  boto3 stays for everything else: `GetAccount` here, identities and SQS elsewhere.

Only this module imports boto3, and `open_transport` imports this module only for
`kind = "ses"`: boto3 takes ~0.4 s to import and `newsletter --help` must not pay for it.

Errors.  The SES v2 API model lists for SendEmail: TooManyRequestsException (429),
LimitExceededException, AccountSuspendedException, SendingPausedException, MessageRejected,
MailFromDomainNotVerifiedException, NotFoundException and BadRequestException (400).  What
each answer means for the send is decided in `newsletter.transports.ses.errors`; an error
answer to SendEmail is first read by botocore's own rest-json parser, as boto3 would read it,
and its raw body goes along (for the XML bodies that parser cannot read).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore
import botocore.loaders
import botocore.parsers
import botocore.session
import pybase64
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.httpsession import get_cert_path
from botocore.utils import get_environ_proxies

from newsletter import __version__
from newsletter.errors import TransportError
from newsletter.transports.base import STOPPED, SendQuota
from newsletter.transports.ses.account import send_quota, verified_identities
from newsletter.transports.ses.errors import classify
from newsletter.transports.ses.keepalive import HttpAnswer, KeepAlivePool, NoAnswer, RequestNotSent

# Every botocore Session loads and parses the sesv2 JSON model again (~0.15 s); sharing one
# loader makes each further transport ~0.03 s.  Credentials are not shared: each transport
# resolves them from the environment it starts in.
_MODEL_LOADER = botocore.loaders.create_loader()

# MessageTag names and values may hold only ASCII letters, digits, '_' and '-', at most
# 256 characters (SES API v2 reference, MessageTag).
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
TAG_MAX = 256


# SendEmail is `POST /v2/email/outbound-emails` (SES API v2 reference, SendEmail).
SEND_EMAIL_PATH = "/v2/email/outbound-emails"
# "In most cases, a request must reach AWS within five minutes of the time stamp in the
# request" (IAM user guide, "AWS Signature Version 4 for API requests").  A request the
# pacer held longer than this after signing is signed again before it leaves.
RESIGN_AFTER = 60.0


class SesTransport:
    """Sends through SES API v2 in `region` (or at `endpoint_url`), thread-safe.

    `max_connections` sizes the pool of keep-alive connections SendEmail goes over: the
    number of threads that call `send` at once (a thread beyond it waits for a connection).
    """

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        configuration_set: str | None = None,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.configuration_set = configuration_set
        # The client only asks GetAccount now and then; SendEmail goes through _pool below.
        # The campaign paces, backs off and records every attempt; botocore retrying
        # underneath (3 tries by default in standard mode) would hide throttling from it.
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        try:
            # An own Session: boto3's default session is not safe to create clients from in
            # several threads at once; the client it makes is (boto3 docs, "Multithreading").
            session = botocore.session.Session()
            session.register_component("data_loader", _MODEL_LOADER)
            self._client = boto3.session.Session(botocore_session=session).client(
                "sesv2", region_name=region or None, endpoint_url=endpoint_url or None, config=config
            )
        except (NoRegionError, ValueError) as err:
            raise TransportError(
                f"cannot set up SES in region {region!r}: {err}", permanent=True, stops_send=True
            ) from err
        except BotoCoreError as err:
            # A credential process or role that fails while the client resolves it.
            raise _wrap_botocore(err, recipient=None) from err
        meta = self._client.meta
        # Where boto3 would send: endpoint_url, AWS_ENDPOINT_URL_SESV2, or the region's.
        self._send_url = _joined(meta.endpoint_url, SEND_EMAIL_PATH)
        parts = urlsplit(self._send_url)
        self._send_path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._signing_name = meta.service_model.signing_name  # "ses", not "sesv2"
        self._signing_region = meta.region_name
        # The session's own credentials object, the one the client was given: for temporary
        # credentials (a role, SSO, a credential process) it refreshes itself before expiry.
        # None when the chain found nothing; `send` then says so.
        self._credentials = session.get_credentials()
        # One signer per set of frozen credentials (a refresh makes the next one).
        self._signer: _SendEmailSigner | None = None
        self._parser = botocore.parsers.create_parser(meta.service_model.protocol)
        self._send_output = meta.service_model.operation_model("SendEmail").output_shape
        self._user_agent = f"newsletter/{__version__} Botocore/{botocore.__version__}"
        # What botocore gives its own HTTP session for a client: the CA bundle from
        # AWS_CA_BUNDLE or the config file, else REQUESTS_CA_BUNDLE, else its default
        # (certifi's); the proxy from HTTPS_PROXY / HTTP_PROXY unless NO_PROXY names the host.
        verify = session.get_config_variable("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE") or True
        proxy = get_environ_proxies(self._send_url).get(parts.scheme)
        try:
            self._pool = KeepAlivePool(
                self._send_url,
                size=max_connections,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                ca_bundle=get_cert_path(verify),
                proxy=proxy,
            )
        except (ValueError, OSError) as err:
            self._client.close()
            raise TransportError(
                f"cannot set up SES at {self._send_url}: {err}", permanent=True, stops_send=True
            ) from err
        self._target = self._pool.target_for(self._send_path)

    # ---- the Transport protocol ----

    def send(self, message: bytes, *, sender: str, recipient: str, tags: Mapping[str, str] = {}) -> str:
        """Send `message` to `recipient` alone; the SES MessageId."""
        return self.send_paced(message, sender=sender, recipient=recipient, tags=tags, pace=None)

    def send_paced(
        self,
        message: bytes,
        *,
        sender: str,
        recipient: str,
        tags: Mapping[str, str] = {},
        pace: Callable[[], bool] | None = None,
    ) -> str:
        """`send`, calling `pace()` after the request is signed and just before it leaves
        (see WirePacedTransport)."""
        body = self._send_email_body(message, sender=sender, recipient=recipient, tags=tags)
        try:
            headers = self._signed(body)
            if pace is not None:
                signed_at = time.monotonic()
                if not pace():
                    raise TransportError(
                        "the send was stopped before the message left",
                        permanent=False,
                        recipient=recipient,
                        code=STOPPED,
                    )
                if time.monotonic() - signed_at > RESIGN_AFTER:
                    headers = self._signed(body)
        except BotoCoreError as err:
            raise _wrap_botocore(err, recipient=recipient) from err
        try:
            answer = self._pool.post(self._target, headers, body)
        except RequestNotSent as err:
            raise TransportError(
                f"cannot reach SES: {err}", permanent=False, recipient=recipient, code=err.code
            ) from err
        except NoAnswer as err:
            # The request went out and the answer did not come back: SES may have accepted
            # the message, so it must not be sent again blindly.
            raise TransportError(
                f"no answer from SES, the message may or may not have been accepted: {err}",
                permanent=False,
                recipient=recipient,
                code=err.code,
                uncertain=True,
            ) from err
        if answer.status == 200:
            return _message_id(answer, recipient=recipient)
        refusal = self._client_error(answer)
        raise _classify(refusal, sender=sender, recipient=recipient, body=answer.body) from refusal

    def _send_email_body(self, message: bytes, *, sender: str, recipient: str, tags: Mapping[str, str]) -> bytes:
        """The JSON body of SendEmail, as botocore's rest-json serialiser would write it."""
        fields: dict = {
            "FromEmailAddress": _ascii_address(sender, recipient=recipient, is_sender=True),
            "Destination": {"ToAddresses": [_ascii_address(recipient, recipient=recipient, is_sender=False)]},
        }
        if self.configuration_set:
            fields["ConfigurationSetName"] = self.configuration_set
        if tags:
            fields["EmailTags"] = [{"Name": tag_text(name), "Value": tag_text(value)} for name, value in tags.items()]
        head = json.dumps(fields, separators=(",", ":")).encode("ascii")
        # A blob travels base64-encoded in rest-json (the raw message is `RawMessage.Data`).
        # It is spliced in as bytes: base64's alphabet needs no JSON escape, and json.dumps
        # would otherwise decode, scan and re-encode its ~190 KB.
        return b"".join((head[:-1], b',"Content":{"Raw":{"Data":"', pybase64.b64encode(message), b'"}}}'))

    def _signed(self, body: bytes) -> list[tuple[str, str]]:
        """The header fields of the SendEmail request, signed now (Signature Version 4)."""
        if self._credentials is None:
            raise NoCredentialsError()
        # Frozen: one consistent key, secret and token even if a refresh lands meanwhile
        # (botocore's RequestSigner does the same for every request).
        credentials = self._credentials.get_frozen_credentials()
        signer = self._signer
        if signer is None or signer.credentials != credentials:
            signer = self._signer = _SendEmailSigner(credentials, self._signing_name, self._signing_region)
        request = _SigningRequest(
            method="POST",
            url=self._send_url,
            data=body,
            # Host as the pool will send it: SigV4 signs it.
            headers={"Host": self._pool.host_field, "Content-Type": "application/json", "User-Agent": self._user_agent},
        )
        signer.add_auth(request)
        return [(name, value) for name, value in request.headers.items() if name.lower() != "host"]

    def _client_error(self, answer: HttpAnswer) -> ClientError:
        """An error answer as the ClientError boto3's `send_email` would have raised."""
        parsed = self._parser.parse(
            {
                "status_code": answer.status,
                "headers": answer.headers,
                "body": answer.body,
                "context": {"operation_name": "SendEmail"},
            },
            self._send_output,
        )
        return ClientError(parsed, "SendEmail")

    def quota(self) -> SendQuota | None:
        """The account's limits from `GetAccount`: MaxSendRate, Max24HourSend, SentLast24Hours.

        None from an SES-compatible server that does not implement GetAccount (moto, for one).
        """
        try:
            account = self._client.get_account()
        except ClientError as err:
            # A bare 404 with no SES error code: the route does not exist on this server.
            if err.response.get("Error", {}).get("Code") == "404":
                return None
            raise _classify(err, sender="", recipient=None) from err
        except BotoCoreError as err:
            raise _wrap_botocore(err, recipient=None) from err
        return send_quota(account)

    def verified_identities(self) -> frozenset[str]:
        """The account's verified addresses and domains (ListEmailIdentities), lower-cased:
        in the sandbox, the only recipients that receive mail."""
        # botocore has no paginator for sesv2 ListEmailIdentities: follow NextToken.
        pages: list[dict] = []
        try:
            token = None
            while True:
                page = self._client.list_email_identities(**({"NextToken": token} if token else {}))
                pages.append(page)
                token = page.get("NextToken")
                if not token:
                    break
        except ClientError as err:
            raise _classify(err, sender="", recipient=None) from err
        except BotoCoreError as err:
            raise _wrap_botocore(err, recipient=None) from err
        return verified_identities(pages)

    def close(self) -> None:
        self._pool.close()
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.endpoint_url or self.region
        return f"SesTransport({where!r}, configuration_set={self.configuration_set!r})"


def tag_text(text: str) -> str:
    """`text` reduced to what SES accepts in a message tag.

    Non-ASCII text is Punycode-encoded (RFC 3492) first, so that two list names in Chinese
    stay two different tags instead of both becoming underscores.
    """
    if not text.isascii():
        text = text.encode("punycode").decode("ascii")
    return _TAG_UNSAFE.sub("_", text)[:TAG_MAX] or "_"


def _ascii_address(address: str, *, recipient: str, is_sender: bool) -> str:
    """`address` as SES accepts it: SES does not support SMTPUTF8 (RFC 6531), so the local
    part must be 7-bit ASCII and the domain Punycode (SES API reference, SendRawEmail Source)."""
    local, at, domain = address.rpartition("@")
    if address.isascii():
        return address
    whose = "sender" if is_sender else "recipient"
    if not at or not local.isascii():
        raise TransportError(
            f"SES cannot send to or from a non-ASCII local part ({whose} {address!r}): it has no SMTPUTF8",
            permanent=True,
            recipient=recipient,
            code="SMTPUTF8",
            stops_send=is_sender,
        )
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as err:
        raise TransportError(
            f"the {whose} domain of {address!r} cannot be written in Punycode: {err}",
            permanent=True,
            recipient=recipient,
            code="IDNA",
            stops_send=is_sender,
        ) from err


def _classify(err: ClientError, *, sender: str, recipient: str | None, body: bytes | None = None) -> TransportError:
    """`err` as botocore read the answer; `body`, the answer's raw bytes when we have them."""
    error = err.response.get("Error", {})
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    failure = classify(status, body, error.get("Code"), error.get("Message") or str(err), sender=sender)
    return failure.transport_error(recipient)


def _wrap_botocore(err: BotoCoreError, *, recipient: str | None) -> TransportError:
    name = type(err).__name__
    if isinstance(err, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return TransportError(
            f"no usable AWS credentials for SES ({err}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run with an instance role",
            permanent=True,
            recipient=recipient,
            code=name,
            stops_send=True,
        )
    if isinstance(err, BotoConnectionError):
        # No connection was made, so nothing was sent: safe to retry.
        return TransportError(f"cannot reach SES: {err}", permanent=False, recipient=recipient, code=name)
    if isinstance(err, HTTPClientError):
        # ReadTimeoutError, ConnectionClosedError: the request went out and the answer did
        # not come back; SES may have accepted the message.
        return TransportError(
            f"no answer from SES, the message may or may not have been accepted: {err}",
            permanent=False,
            recipient=recipient,
            code=name,
            uncertain=True,
        )
    # ParamValidationError and the like: a request botocore will not even send.
    return TransportError(f"SES request not sent: {err}", permanent=True, recipient=recipient, code=name)


def _joined(endpoint_url: str, path: str) -> str:
    """`path` under `endpoint_url`, keeping the endpoint's own path (an SES-compatible server
    or a proxy may live at https://host/ses), as botocore joins them."""
    parts = urlsplit(endpoint_url)
    return urlunsplit(parts._replace(path=parts.path.removesuffix("/") + path))


class _SendEmailSigner(SigV4Auth):
    """botocore's Signature Version 4 signer, keeping what is the same for every SendEmail
    request of one day: the signing key, derived from the secret, the date, the region and
    the service by four HMACs ("derive a signing key", IAM user guide, "Create a signed AWS
    API request"), and the canonical path and query of the one URL it signs for.  The header
    fields it signs are read once per request (botocore's `add_auth` selects them twice)."""

    def __init__(self, credentials: object, service_name: str, region_name: str) -> None:
        super().__init__(credentials, service_name, region_name)
        self._signing_keys: dict[str, bytes] = {}
        self._paths: dict[str, str] = {}
        self._queries: dict[str, str] = {}

    def add_auth(self, request: AWSRequest) -> None:
        request.context.pop(_SIGNED_FIELDS, None)
        super().add_auth(request)

    def headers_to_sign(self, request: AWSRequest) -> object:
        fields = request.context.get(_SIGNED_FIELDS)
        if fields is None:
            fields = request.context[_SIGNED_FIELDS] = super().headers_to_sign(request)
        return fields

    def _normalize_url_path(self, path: str) -> str:
        normalized = self._paths.get(path)
        if normalized is None:
            normalized = self._paths[path] = super()._normalize_url_path(path)
        return normalized

    def canonical_query_string(self, request: AWSRequest) -> str:
        if request.params:
            return super().canonical_query_string(request)
        query = self._queries.get(request.url)
        if query is None:
            query = self._queries[request.url] = super().canonical_query_string(request)
        return query

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        date = request.context["timestamp"][0:8]
        key = self._signing_keys.get(date)
        if key is None:
            k_date = self._sign(f"AWS4{self.credentials.secret_key}".encode(), date)
            k_region = self._sign(k_date, self._region_name)
            k_service = self._sign(k_region, self._service_name)
            key = self._sign(k_service, "aws4_request")
            self._signing_keys = {date: key}  # replaced whole: other threads read it meanwhile
        return self._sign(key, string_to_sign, hex=True)


# Where `_SendEmailSigner` keeps the header fields it signs while it signs one request.
_SIGNED_FIELDS = "newsletter_signed_fields"


class _SigningRequest(AWSRequest):
    """The request SigV4Auth signs.  AWSRequest's `body` prepares a copy of the whole request
    each time it is read (the signer reads it for the payload hash); this body is final."""

    @property
    def body(self) -> bytes:
        return self.data


def _message_id(answer: HttpAnswer, *, recipient: str) -> str:
    try:
        message_id = json.loads(answer.body)["MessageId"]
    except (ValueError, KeyError, TypeError) as err:
        raise TransportError(
            f"SES answered 200 without a MessageId ({answer.body[:200]!r}); "
            "the message may or may not have been accepted",
            permanent=False,
            recipient=recipient,
            code="NoMessageId",
            uncertain=True,
        ) from err
    if not isinstance(message_id, str) or not message_id:
        raise TransportError(
            f"SES answered 200 with MessageId {message_id!r}; the message may or may not have been accepted",
            permanent=False,
            recipient=recipient,
            code="NoMessageId",
            uncertain=True,
        )
    return message_id
