"""`newsletter events inbox`: what comes back by mail, applied like SES events.

    summary = read_inbox(settings, store, once=True, report=print)

Reads the mailbox of `[events.inbox] url` (feedback/mailboxes.py) and turns each mail into
feedback events: a bounce report (feedback/dsn.py), a feedback-loop complaint
(feedback/arf.py) or a reader's mail to the unsubscribe mailto (feedback/mailto.py).  The
events of one mail are applied in one transaction by feedback/apply.py, exactly as SES
events are (the same suppression), and only after that transaction committed is the mail
moved into the applied folder.  A crash between the two means the mail is read again, and
the events' dedupe keys (made from the mail's Message-ID) turn that into "already seen";
the other order could lose a bounce.

Mail that is none of these, or a report that cannot be read, is left where it is and
counted: it may be a person's message to the bounce address, and deleting it would destroy
what someone needs to see.  Reading the mailbox again changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from newsletter.config import Settings
from newsletter.feedback.apply import Applied, FeedbackResult, apply_feedback_event
from newsletter.feedback.arf import arf_event
from newsletter.feedback.dsn import dsn_events
from newsletter.feedback.event import FeedbackEvent
from newsletter.feedback.mailboxes import Mailbox, MailboxError, open_mailbox
from newsletter.feedback.mailto import mailto_unsubscribe
from newsletter.feedback.report_mail import ReportError
from newsletter.feedback.suppression import SuppressionPolicy
from newsletter.interrupts import stop_on_signals
from newsletter.store import Store
from newsletter.tokens import Tokens

log = logging.getLogger(__name__)

# How often a watching reader looks again (seconds), unless told otherwise.
DEFAULT_INTERVAL = 60

Report = Callable[[str], None]


@dataclass
class InboxSummary:
    read: int = 0
    # Mails that changed something, by the kind of their first recorded event.
    applied: Counter[str] = field(default_factory=Counter)
    already_seen: int = 0
    # Understood, but about no message or subscriber in this database: set aside all the same.
    not_ours: int = 0
    # Mailbox keys of mail left in place because it could not be read.
    left: set[str] = field(default_factory=set)
    suppressed: list[tuple[int, str]] = field(default_factory=list)
    interrupted: bool = False

    def describe(self) -> str:
        applied = ", ".join(f"{count} {kind}" for kind, count in sorted(self.applied.items())) or "nothing"
        line = (
            f"{self.read} read: applied {applied}; {self.already_seen} already seen; "
            f"{self.not_ours} about no message of ours; {len(self.left)} left in the mailbox (not readable as feedback)"
        )
        if self.suppressed:
            line += f"; {len(self.suppressed)} subscriber(s) suppressed or unsubscribed"
        if self.interrupted:
            line += "; stopped by a signal"
        return line


class MailReader:
    """Turns one mail into the feedback events it carries."""

    def __init__(self, settings: Settings) -> None:
        self.mailto = settings.newsletter.unsubscribe_mailto
        # Only a configured mailto needs the secret (to verify the tokens its mail carries).
        self.tokens = Tokens(settings.newsletter.secret) if self.mailto else None

    def events(self, raw: bytes) -> list[FeedbackEvent]:
        """The events in `raw`; ReportError for mail that is not feedback we can read."""
        try:
            message = BytesParser(policy=policy.default).parsebytes(raw)
            assert isinstance(message, EmailMessage)
            found = dsn_events(message, raw)
            if found is not None:
                return found
            complaint = arf_event(message, raw)
            if complaint is not None:
                return [complaint]
            if self.tokens is not None:
                unsubscribe = mailto_unsubscribe(message, raw, mailbox=self.mailto, tokens=self.tokens)
                if unsubscribe is not None:
                    return [unsubscribe]
        except ReportError:
            raise
        except Exception as err:  # anyone can mail us anything
            # The email package raises a wide variety of errors on malformed headers and
            # parts; whatever a stranger's mail does to it, the mail is unreadable, not a crash.
            raise ReportError(f"not parseable as mail ({type(err).__name__}: {err})") from err
        raise ReportError("neither a bounce report, a feedback report nor a mail to the unsubscribe address")


def read_inbox(
    settings: Settings,
    store: Store,
    *,
    once: bool = False,
    interval: float = DEFAULT_INTERVAL,
    report: Report | None = None,
    mailbox_opener: Callable[[], Mailbox] | None = None,
) -> InboxSummary:
    """Read and apply the mailbox until interrupted, looking again every `interval`
    seconds; with `once`, one pass.  A mailbox that cannot be read ends a single pass with
    MailboxError; a watching reader reports it and tries again at the next interval."""
    report = report or (lambda line: None)
    opener = mailbox_opener or (lambda: open_mailbox(settings.events.inbox, source=settings.source))
    reader = MailReader(settings)
    policy_ = SuppressionPolicy.from_settings(settings.events)
    summary = InboxSummary()
    stop = threading.Event()
    with stop_on_signals(stop):
        while not stop.is_set():
            try:
                _one_pass(opener, reader, store, policy_, summary, stop, report)
            except MailboxError as err:
                if once:
                    raise
                report(f"{err}; trying again in {interval:g} s")
                log.warning("inbox: %s", err)
            if once or stop.wait(interval):
                break
    summary.interrupted = stop.is_set()
    return summary


def _one_pass(
    opener: Callable[[], Mailbox],
    reader: MailReader,
    store: Store,
    policy_: SuppressionPolicy,
    summary: InboxSummary,
    stop: threading.Event,
    report: Report,
) -> None:
    mailbox = opener()
    try:
        for key in mailbox.waiting():
            if stop.is_set():
                break
            raw = mailbox.fetch(key)
            if raw is None:
                continue
            summary.read += 1
            try:
                events = reader.events(raw)
            except ReportError as err:
                if key not in summary.left:
                    report(f"{mailbox.where} {key}: left in place: {err}")
                summary.left.add(key)
                continue
            with store.begin() as conn:
                results = [apply_feedback_event(conn, event, policy_) for event in events]
            _count(results, summary)
            for result in results:
                report(f"{mailbox.where} {key}: {result.describe()}")
            mailbox.set_aside(key)
    finally:
        mailbox.close()


def _count(results: list[FeedbackResult], summary: InboxSummary) -> None:
    recorded = [result for result in results if result.applied is Applied.RECORDED]
    if recorded:
        summary.applied[_kind_word(recorded[0])] += 1
    elif any(result.applied is Applied.DUPLICATE for result in results):
        summary.already_seen += 1
    else:
        summary.not_ours += 1
    for result in results:
        summary.suppressed.extend(result.suppressed)


def _kind_word(result: FeedbackResult) -> str:
    kind = result.event.kind.value
    return {"mailto_unsubscribe": "unsubscribe", "delivery_delay": "delay"}.get(kind, kind)
