"""Which feedback stops all later mail to an address: hard bounces, complaints, and soft
bounces past a limit within a window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from newsletter.config import EventsSettings
from newsletter.feedback.event import EventKind, FeedbackEvent


class Suppression(StrEnum):
    """Why an address gets no more mail."""

    BOUNCED = "bounced"  # a permanent bounce
    COMPLAINED = "complained"
    SOFT_BOUNCED = "soft_bounced"  # too many soft bounces in the window


@dataclass(frozen=True)
class SuppressionPolicy:
    """When a feedback event stops all later mail to the address.

    A permanent bounce or a complaint suppresses at once.  Soft bounces suppress when
    `transient_bounce_limit` of them (this one included) fall within `transient_bounce_window`
    ending at this bounce's time.  The window is measured on event timestamps, not the wall
    clock, so replaying a backlog from SQS decides the same as receiving it live.
    """

    transient_bounce_limit: int = 3
    transient_bounce_window: timedelta = timedelta(days=30)

    @classmethod
    def from_settings(cls, events_settings: EventsSettings) -> SuppressionPolicy:
        return cls(
            transient_bounce_limit=events_settings.transient_bounce_limit,
            transient_bounce_window=timedelta(days=events_settings.transient_bounce_days),
        )

    def soft_bounces_suppress(self, soft_bounce_times: Iterable[datetime], *, now: datetime) -> bool:
        """Whether these soft bounces (including the latest, at `now`) reach the limit."""
        start = now - self.transient_bounce_window
        recent = sum(1 for moment in soft_bounce_times if start < moment <= now)
        return recent >= self.transient_bounce_limit

    def suppression_for(
        self, event: FeedbackEvent, earlier_soft_bounces: Iterable[datetime] = ()
    ) -> Suppression | None:
        """What `event` does to its recipients, given the times of their earlier soft bounces
        (those for which `FeedbackEvent.soft_bounce` was true)."""
        if event.kind is EventKind.BOUNCE and event.permanent:
            return Suppression.BOUNCED
        if event.kind is EventKind.COMPLAINT:
            # An ARF "not-spam" report says the message was *not* abuse (RFC 5965 / IANA MARF
            # feedback types); it is the one complaint that must not suppress.
            if event.complaint_feedback_type == "not-spam":
                return None
            return Suppression.COMPLAINED
        if event.soft_bounce:
            times = [*earlier_soft_bounces, event.timestamp]
            if self.soft_bounces_suppress(times, now=event.timestamp):
                return Suppression.SOFT_BOUNCED
        return None
