"""Amazon SES through the API v2 `SendEmail` call with `Content.Raw`.

Raw content keeps every header ours (List-Unsubscribe, List-Id, Feedback-ID); the
configuration set and message tags route SES's delivery, bounce and complaint events back to
`newsletter serve`.  Region and credentials come from the standard AWS chain (environment,
~/.aws, instance or container role); `endpoint_url` points the client at an SES-compatible
server instead, as the tests do.

Only this module imports boto3, and `open_transport` imports this module only for
`kind = "ses"`: boto3 takes ~0.4 s to import and `newsletter --help` must not pay for it.

Errors.  The SES v2 API model lists for SendEmail: TooManyRequestsException (429),
LimitExceededException, AccountSuspendedException, SendingPausedException, MessageRejected,
MailFromDomainNotVerifiedException, NotFoundException and BadRequestException (400).  What
each answer means for the send is decided in `newsletter.transports.ses.errors`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Self

import boto3
import botocore.loaders
import botocore.session
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

from newsletter.errors import TransportError
from newsletter.transports.base import STOPPED, SendQuota
from newsletter.transports.ses.errors import classify

# Every botocore Session loads and parses the sesv2 JSON model again (~0.15 s); sharing one
# loader makes each further transport ~0.03 s.  Credentials are not shared: each transport
# resolves them from the environment it starts in.
_MODEL_LOADER = botocore.loaders.create_loader()

# MessageTag names and values may hold only ASCII letters, digits, '_' and '-', at most
# 256 characters (SES API v2 reference, MessageTag).
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
TAG_MAX = 256


class SesTransport:
    """Sends through SES API v2 in `region` (or at `endpoint_url`), thread-safe.

    `max_connections` sizes the HTTPS connection pool: at least the number of threads that
    call `send` at once, or urllib3 opens and discards extra connections and warns.
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
        config = Config(
            # The campaign paces, backs off and records every attempt; botocore retrying
            # underneath (3 tries by default in standard mode) would hide throttling from the
            # pacer and could send a message twice after a read timeout.
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(10, max_connections),
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
        self._pace = threading.local()
        self._client.meta.events.register("before-send.sesv2.SendEmail", self._before_send)

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
        request: dict = {
            "FromEmailAddress": _ascii_address(sender, recipient=recipient, is_sender=True),
            "Destination": {"ToAddresses": [_ascii_address(recipient, recipient=recipient, is_sender=False)]},
            "Content": {"Raw": {"Data": message}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        if tags:
            request["EmailTags"] = [{"Name": tag_text(name), "Value": tag_text(value)} for name, value in tags.items()]
        self._pace.current = pace
        try:
            response = self._client.send_email(**request)
        except _SendCalledOff:
            raise TransportError(
                "the send was stopped before the message left", permanent=False, recipient=recipient, code=STOPPED
            ) from None
        except ClientError as err:
            raise _classify(err, sender=sender, recipient=recipient) from err
        except BotoCoreError as err:
            raise _wrap_botocore(err, recipient=recipient) from err
        finally:
            self._pace.current = None
        return response["MessageId"]

    def _before_send(self, **_: object) -> None:
        # botocore emits before-send once the request is serialised and signed; returning
        # None lets it go on.  The pace function is per thread: workers share the client.
        pace = getattr(self._pace, "current", None)
        if pace is not None and not pace():
            raise _SendCalledOff

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
        quota = account.get("SendQuota", {})
        return SendQuota(
            max_send_rate=float(quota.get("MaxSendRate", 0.0)),
            max_24_hour_send=float(quota.get("Max24HourSend", 0.0)),
            sent_last_24_hours=float(quota.get("SentLast24Hours", 0.0)),
            sending_enabled=bool(account.get("SendingEnabled", True)),
            production_access=bool(account.get("ProductionAccessEnabled", True)),
        )

    def close(self) -> None:
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


def _classify(err: ClientError, *, sender: str, recipient: str | None) -> TransportError:
    error = err.response.get("Error", {})
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    failure = classify(status, None, error.get("Code"), error.get("Message") or str(err), sender=sender)
    return failure.transport_error(recipient)


class _SendCalledOff(Exception):
    """Raised from the before-send hook when the pace function says stop."""


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
