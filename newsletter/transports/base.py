"""Transports: hand one finished RFC 5322 message to a provider for one recipient.

Three kinds, chosen by `[transport] kind`:

- `outbox` (`OutboxTransport`): a local Maildir, the embedded default; needs nothing.
- `smtp` (`SmtpTransport`): any SMTP server, STARTTLS / implicit TLS / plain, optional AUTH.
- `ses` (`SesTransport`): Amazon SES API v2 `SendEmail` with `Content.Raw`.

The contract every transport keeps
----------------------------------
`send(message, sender=..., recipient=..., tags=...)` delivers `message` (the exact bytes,
headers included, CRLF line ends) to the one envelope `recipient` (a bare address, no display
name) from the envelope `sender`, and returns the provider's id for it.  It raises
`TransportError` and nothing else, classified so the campaign knows what to do:

- `permanent=False`: try again later (throttled, connection dropped, 4xx, 5xx from an API).
- `permanent=True`: this recipient will never take this message (5xx reply, rejected address).
- `stops_send=True`: the *sending account*, not this recipient, cannot send now: the daily
  quota is spent (then `permanent=False`: it comes back by itself), or sending is paused, the
  credentials or the sender identity are refused (then `permanent=True`: a person must act).
  Either way the campaign must stop the whole send and leave the remaining rows queued rather
  than fail every subscriber one by one; `str(err)` says which it is.

`quota()` reports what the provider says about its limits (SES only; `None` elsewhere), so the
campaign can pace at `SendQuota.max_send_rate` and refuse to start past the daily quota.

`close()` releases connections; a closed transport must not be used again.

Threads.  Every transport is safe to share between threads: `open_transport` is called once
and the one object is handed to every worker.  That choice puts the concurrency where each
provider needs it: botocore clients are thread-safe once created (boto3 docs, "Multithreading
or multiprocessing with clients") and pool their HTTPS connections, while one boto3 client per
thread would cost ~0.1 s and several MB each; smtplib.SMTP is one stateful session that must
not be interleaved, so `SmtpTransport` keeps one connection per calling thread; the outbox
only creates uniquely named files.  `workers` tells `open_transport` how many threads will
call `send` at once so connection pools are sized to match.

Crash recovery.  A transport that can answer "did this message get through?" after a crash
implements `RecordingTransport.contains(message_id)` (the outbox does: a Maildir delivery is
one atomic link into new/, so presence is exact).  SMTP and SES cannot answer it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable


@dataclass(frozen=True)
class SendQuota:
    """The provider's sending limits, as SES `GetAccount` reports them."""

    max_send_rate: float  # messages per second
    max_24_hour_send: float  # messages per rolling 24 hours; SES reports -1 for unlimited
    sent_last_24_hours: float
    sending_enabled: bool = True
    # False while the account is in the SES sandbox: only verified recipients receive mail.
    production_access: bool = True

    @property
    def remaining_24_hours(self) -> float | None:
        """Messages still allowed in the current 24-hour window; None when unlimited."""
        if self.max_24_hour_send < 0:
            return None
        return max(0.0, self.max_24_hour_send - self.sent_last_24_hours)


class Transport(Protocol):
    """Sends one message to one recipient; see the module docstring for the contract."""

    def send(self, message: bytes, *, sender: str, recipient: str, tags: Mapping[str, str] = {}) -> str: ...

    def quota(self) -> SendQuota | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


# TransportError.code when a paced send was called off before the message left.
STOPPED = "stopped"


@runtime_checkable
class WirePacedTransport(Protocol):
    """A transport that holds each request until the moment it goes on the wire.

    `pace()` is called after the request is fully built (for SES: serialised and signed,
    several milliseconds for a 100 KB message under a shared GIL) and the request leaves
    right after it returns True; False calls the send off (TransportError code STOPPED).
    Pacing there rather than before `send` keeps the provider's view of the rate as even as
    the pacer's: a rate limit is judged by arrival times.
    """

    def send_paced(
        self, message: bytes, *, sender: str, recipient: str, tags: Mapping[str, str], pace: Callable[[], bool]
    ) -> str: ...


@runtime_checkable
class RecordingTransport(Protocol):
    """A transport that keeps what it delivered and can be asked about it after a crash."""

    def contains(self, message_id: str) -> bool: ...
