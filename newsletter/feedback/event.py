"""A provider-neutral feedback event: a delivery, bounce, complaint, open, click or
unsubscribe about one message we sent, as every source of feedback reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class EventKind(StrEnum):
    SEND = "send"
    DELIVERY = "delivery"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    REJECT = "reject"
    DELIVERY_DELAY = "delivery_delay"
    OPEN = "open"
    CLICK = "click"
    RENDERING_FAILURE = "rendering_failure"
    SUBSCRIPTION = "subscription"
    # A reader's mail to `[newsletter] unsubscribe_mailto` (the mailto of List-Unsubscribe,
    # RFC 2369), read by `newsletter events inbox`: leaves the list of the issue it names.
    MAILTO_UNSUBSCRIBE = "mailto_unsubscribe"


# "Transient" bounces with these subtypes are about the message, not the mailbox: "You may be
# able to successfully send to this recipient if you change the content / reduce the size /
# remove the attachment" (SES Developer Guide, "Bounce types").  They do not count toward
# suppressing the address.
CONTENT_BOUNCE_SUBTYPES = frozenset({"MessageTooLarge", "ContentRejected", "AttachmentRejected"})


@dataclass(frozen=True)
class FeedbackEvent:
    """One thing that happened to one sent message, whoever reported it.

    SES events (either SES format) are parsed into this by `transports/ses/events.py`; mail
    read from a mailbox (`feedback/dsn.py`, `feedback/arf.py`, `feedback/mailto.py`) makes
    the same object, so applying it (`feedback/apply.py`) does not care where it came from.  The
    vocabulary is SES's, the widest of the providers': its bounce types and subtypes.
    """

    kind: EventKind
    # Who reported it: "ses" for SES events, "inbox" for mail read by `events inbox`;
    # stored with the event.
    source: str
    # The id the provider returned when the message was handed over (SES's MessageId):
    # the first way to find the ledger row.  Empty when the report does not carry one.
    provider_message_id: str
    # Addresses the event is about: bounced, complained, delivered, delayed recipients; for
    # send, reject, open, click, rendering failure and subscription, the message's destination.
    recipients: tuple[str, ...]
    # When it happened (the per-type timestamp; the send time for send/reject/rendering failure).
    timestamp: datetime
    # Same event, same key, whichever way it arrived (SNS retry, SQS redelivery, raw or
    # enveloped, event publishing or identity notification): see `_dedupe_key`.
    dedupe_key: str
    # Our own Message-ID header of the message, when the report quotes it: the second way
    # to find the ledger row (mail/message_id.py reads which row it names).
    message_id: str | None = None
    # The (issue id, subscriber id) a signed token in the report names (the unsubscribe token
    # of a mailto unsubscribe): the third way to find the ledger row.
    signed_row: tuple[int, int] | None = None
    # The id of the envelope the event came in (the SNS MessageId); None for raw SQS delivery.
    envelope_id: str | None = None
    # Bounce: "Permanent" | "Transient" | "Undetermined", and SES's subtype ("General",
    # "NoEmail", "MailboxFull", "OnAccountSuppressionList", ...).
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    # True only for a Permanent (hard) bounce; Transient and Undetermined are soft.
    permanent: bool = False
    # Complaint: the ARF Feedback-Type ("abuse", "not-spam", ...) when the ISP sent a report,
    # and SES's subtype (None or "OnAccountSuppressionList").
    complaint_feedback_type: str | None = None
    complaint_subtype: str | None = None
    # Open and click (and a complaint's feedback-report agent).
    user_agent: str | None = None
    ip_address: str | None = None
    link: str | None = None
    # A human-readable reason: bounce/delay diagnostic code, reject reason, rendering error.
    detail: str | None = None
    # Subscription (SES list management): whether the contact left every topic.
    unsubscribe_all: bool | None = None
    # Subscription: whether the reader opted out (of every topic or of any one of them).
    opted_out: bool = False
    # The message's tags (event publishing only): name -> values.
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    # The report as received (the SES record), for what only its source understands.
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @property
    def soft_bounce(self) -> bool:
        """A Transient or Undetermined bounce that says something about the mailbox."""
        return (
            self.kind is EventKind.BOUNCE and not self.permanent and self.bounce_subtype not in CONTENT_BOUNCE_SUBTYPES
        )
