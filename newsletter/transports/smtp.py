"""SMTP: any mail server, over STARTTLS, implicit TLS or plain TCP, with optional AUTH.

One connection per sending thread, kept open across messages (smtplib.SMTP is a single
stateful session and must not be shared between threads).  A server may close an idle
connection at any time (RFC 5321 section 4.5.3.2 lets it time out after 5 minutes; many
say "421" first); when that is found at MAIL FROM or RCPT TO, before any of the message
went out, the transport reconnects once and tries again.  A drop during or after DATA is
not retried here: the server may already have queued the message, and only the campaign
may decide to risk a second copy.

Reply codes (RFC 5321 section 4.2): 4xx are temporary, 5xx permanent, and the enhanced
status code (RFC 3463) tells a dead address from a refused message (`smtp_replies.py`).  A
refusal at MAIL FROM concerns the sender, so every message would meet it: a 5xx there, a failed login or an
untrusted certificate stops the send (`stops_send=True`, see `newsletter.transports.base`),
and so does a server that cannot be reached or refuses the session: the rows stay queued
for the next run rather than each failing in turn.
Amazon SES's SMTP interface reports its daily quota as "454 Throttling failure: Daily message
quota exceeded" (SES developer guide, "Errors related to the sending quotas"), which stops
the send too.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Self

from newsletter.errors import TransportError
from newsletter.mail.message_id import read_message_id
from newsletter.transports.base import SendQuota
from newsletter.transports.smtp_replies import classify_reply

# How the common servers name the queue entry in their final 250 reply to DATA, most
# specific first: Postfix "250 2.0.0 Ok: queued as 4ZxQ2k1Jq0z9", Exim "250 OK
# id=1uQ2XY-000ABC-12", Amazon SES "250 Ok 0100018c1e3b0f6e-...-000000".
_QUEUE_IDS = tuple(
    re.compile(pattern + r"([A-Za-z0-9][A-Za-z0-9._-]*)", re.IGNORECASE)
    for pattern in (r"\bqueued as ", r"\bid=", r"(?:^|\s)Ok ")
)
_BARE_LF = re.compile(rb"(?<!\r)\n")


class _Dropped(Exception):
    """The server closed the connection before any of the message was sent."""

    def __init__(self, reason: str, code: str = "disconnected") -> None:
        super().__init__(reason)
        self.code = code


class SmtpTransport:
    """Sends through the SMTP server at `host`:`port`; `security` is starttls, ssl or none."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        sign: Callable[[bytes], bytes] | None = None,
    ) -> None:
        if security not in ("starttls", "ssl", "none"):
            raise ValueError(f"security must be starttls, ssl or none, not {security!r}")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        # The system's trusted CAs and hostname checking, as ssl.create_default_context()
        # documents; tests pass a context that trusts their own certificate.
        self.tls_context = tls_context or ssl.create_default_context()
        # EHLO's name (RFC 5321 section 4.1.1.1).  smtplib's default is the host's FQDN, or
        # "[127.0.0.1]" when that has no dot, which receivers read as a misconfigured host.
        self.local_hostname = local_hostname
        # Adds a DKIM-Signature (newsletter.mail.dkim_signer) to each message, once, before
        # its first try: the signature covers the exact bytes that go out.
        self.sign = sign
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[smtplib.SMTP] = set()
        self._closed = False

    # ---- the Transport protocol ----

    def send(self, message: bytes, *, sender: str, recipient: str, tags: Mapping[str, str] = {}) -> str:
        """Deliver `message` to `recipient`; the server's queue id, else the Message-ID.

        `tags` have no SMTP equivalent and are ignored.
        """
        if message.count(b"\n") != message.count(b"\r\n"):
            # SMTP requires CRLF (RFC 5321 section 2.3.8); servers now reject bare LF
            # because it enables SMTP smuggling, and smtplib sends bytes unchanged.
            message = _BARE_LF.sub(b"\r\n", message)
        if self.sign is not None:
            message = self.sign(message)
        for attempt in (1, 2):
            connection, fresh = self._connection(recipient)
            try:
                reply = self._transaction(connection, message, sender, recipient)
            except _Dropped as dropped:
                self._discard(connection)
                if fresh or attempt == 2:
                    raise TransportError(
                        f"SMTP server {self.host}:{self.port} closed the connection: {dropped}",
                        permanent=False,
                        recipient=recipient,
                        code=dropped.code,
                    ) from (dropped.__cause__ or dropped)
                continue
            except (smtplib.SMTPException, OSError) as err:
                self._discard(connection)
                raise TransportError(
                    f"SMTP session with {self.host}:{self.port} failed: {err}", permanent=False, recipient=recipient
                ) from err
            return _queue_id(reply) or read_message_id(message) or f"<{uuid.uuid4().hex}@{self.host}>"
        raise AssertionError("unreachable")  # pragma: no cover

    def quota(self) -> SendQuota | None:
        """SMTP has no standard way to ask a server for its limits."""
        return None

    def close(self) -> None:
        """QUIT every open connection, from whichever thread opened it."""
        with self._lock:
            connections, self._connections = self._connections, set()
            self._closed = True
        for connection in connections:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SmtpTransport({self.host!r}, {self.port}, security={self.security!r})"

    # ---- one SMTP transaction ----

    def _transaction(self, connection: smtplib.SMTP, message: bytes, sender: str, recipient: str) -> str:
        options = self._mail_options(connection, message, sender, recipient)
        try:
            code, reply = connection.mail(sender, options)
        except smtplib.SMTPServerDisconnected as err:
            raise _Dropped(str(err) or "disconnected") from err
        if code != 250:
            self._refused(connection, code, reply, recipient, stage="MAIL FROM")
        try:
            code, reply = connection.rcpt(recipient)
        except smtplib.SMTPServerDisconnected as err:
            raise _Dropped(str(err) or "disconnected") from err
        if code not in (250, 251):
            self._refused(connection, code, reply, recipient, stage="RCPT TO")
        try:
            code, reply = connection.data(message)
        except smtplib.SMTPDataError as err:
            # smtplib raises this when DATA itself is not answered 354: nothing was sent yet.
            self._refused(connection, err.smtp_code, err.smtp_error, recipient, stage="DATA")
        except (smtplib.SMTPServerDisconnected, OSError) as err:
            self._discard(connection)
            raise TransportError(
                f"SMTP server {self.host}:{self.port} dropped the connection during DATA; "
                f"the message may or may not have been accepted: {err}",
                permanent=False,
                recipient=recipient,
                code="disconnected",
                uncertain=True,
            ) from err
        if code != 250:
            self._refused(connection, code, reply, recipient, stage="end of DATA")
        return _text(reply)

    def _mail_options(self, connection: smtplib.SMTP, message: bytes, sender: str, recipient: str) -> list[str]:
        options = []
        if not (sender.isascii() and recipient.isascii()):
            # Non-ASCII addresses need the SMTPUTF8 extension (RFC 6531).
            if not connection.has_extn("smtputf8"):
                raise TransportError(
                    f"{self.host} does not offer SMTPUTF8, needed for the non-ASCII address "
                    f"{recipient if not recipient.isascii() else sender}",
                    permanent=True,
                    recipient=recipient,
                    code="SMTPUTF8",
                    stops_send=not sender.isascii(),
                )
            options.append("SMTPUTF8")
        if not message.isascii() and connection.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        return options

    def _refused(self, connection: smtplib.SMTP, code: int, reply: bytes | str, recipient: str, *, stage: str) -> None:
        text = _text(reply)
        if code == 421:
            # 421: the server is closing the channel (RFC 5321 section 3.8), typically an
            # idle or overloaded connection, not a verdict on this message.
            if stage in ("MAIL FROM", "RCPT TO", "DATA"):
                raise _Dropped(f"{code} {text}", code=str(code))
            self._discard(connection)
        else:
            self._reset(connection)
        verdict = classify_reply(code, text, stage=stage)
        raise TransportError(
            f"SMTP {stage} refused by {self.host}: {code} {text}",
            permanent=verdict.permanent,
            recipient=recipient,
            code=str(code),
            stops_send=verdict.stops_send,
            throttled=verdict.throttled,
            hard_bounce=verdict.hard_bounce,
        )

    def _reset(self, connection: smtplib.SMTP) -> None:
        # RSET ends the failed transaction so the connection can carry the next message.
        try:
            connection.rset()
        except (smtplib.SMTPException, OSError):
            self._discard(connection)

    # ---- connections, one per thread ----

    def _connection(self, recipient: str) -> tuple[smtplib.SMTP, bool]:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, False
        if self._closed:
            raise RuntimeError("SmtpTransport used after close()")
        connection = self._connect(recipient)
        self._local.connection = connection
        with self._lock:
            self._connections.add(connection)
        return connection, True

    def _discard(self, connection: smtplib.SMTP) -> None:
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            self._connections.discard(connection)
        connection.close()

    def _connect(self, recipient: str) -> smtplib.SMTP:
        where = f"{self.host}:{self.port}"
        connection: smtplib.SMTP | None = None
        try:
            if self.security == "ssl":
                connection = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self.tls_context,
                )
            else:
                connection = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            connection.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                if not connection.has_extn("starttls"):
                    raise TransportError(
                        f"SMTP server {where} does not offer STARTTLS; set [transport.smtp] "
                        f'security = "ssl" or, on a trusted network only, "none"',
                        permanent=True,
                        recipient=recipient,
                        stops_send=True,
                    )
                connection.starttls(context=self.tls_context)
                # RFC 3207 section 4.2: forget what the server said before TLS and ask again.
                connection.ehlo()
            if self.username:
                connection.login(self.username, self.password)
            return connection
        except TransportError:
            _close_quietly(connection)
            raise
        except smtplib.SMTPAuthenticationError as err:
            _close_quietly(connection)
            raise TransportError(
                f"SMTP server {where} refused the login for {self.username!r}: {err.smtp_code} {_text(err.smtp_error)}",
                permanent=True,
                recipient=recipient,
                code=str(err.smtp_code),
                stops_send=True,
            ) from err
        except smtplib.SMTPNotSupportedError as err:
            _close_quietly(connection)
            raise TransportError(
                f"SMTP server {where} does not support AUTH, but a username is configured: {err}",
                permanent=True,
                recipient=recipient,
                stops_send=True,
            ) from err
        except ssl.SSLCertVerificationError as err:
            _close_quietly(connection)
            raise TransportError(
                f"SMTP server {where} presented a certificate that is not trusted: {err.verify_message}",
                permanent=True,
                recipient=recipient,
                code="certificate",
                stops_send=True,
            ) from err
        except smtplib.SMTPResponseException as err:
            # A greeting of 421 or 554 (RFC 5321 section 3.1): the server takes no mail from
            # us now, whoever it is for.
            _close_quietly(connection)
            raise TransportError(
                f"SMTP server {where} refused the session: {err.smtp_code} {_text(err.smtp_error)}",
                permanent=False,
                recipient=recipient,
                code=str(err.smtp_code),
                stops_send=True,
            ) from err
        except (smtplib.SMTPException, OSError) as err:
            # Refused, reset, timed out, name not resolved: the server may be back later.  No
            # message can go until it is, so the send stops with the rest queued (and resumes
            # when run again) instead of failing every reader in turn.
            _close_quietly(connection)
            raise TransportError(
                f"cannot connect to SMTP server {where}: {err}",
                permanent=False,
                recipient=recipient,
                code="connect",
                stops_send=True,
            ) from err


def _queue_id(reply: str) -> str | None:
    for pattern in _QUEUE_IDS:
        found = pattern.search(reply)
        if found:
            return found.group(1)
    return None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def _close_quietly(connection: smtplib.SMTP | None) -> None:
    if connection is not None:
        connection.close()
