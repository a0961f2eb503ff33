"""Every failure a user can cause or meet, as one exception family.

The CLI catches `NewsletterError` and prints `str(err)` as one line with a non-zero exit;
anything else is a bug and keeps its traceback.  So each subclass formats its own context
(file and line, key, row, recipient) into the message it carries.
"""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Base for errors that are the user's to fix; shown as one line, never a traceback."""

    exit_code = 1


class IssueError(NewsletterError):
    """A problem in an issue file, located as `FILE:LINE: message` like a compiler error."""

    def __init__(self, message: str, *, path: str | Path, line: int | None = None) -> None:
        self.message = message
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class RenderError(NewsletterError):
    """Templates that fail to load, render or compile to HTML."""


class ConfigError(NewsletterError):
    """A configuration file or environment variable that is missing, malformed or wrong."""

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        self.key = key
        self.source = source
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class StoreError(NewsletterError):
    """The database cannot be opened, migrated or written as asked."""


class InputError(NewsletterError):
    """Bad user-supplied data other than an issue file: a CSV, an address, an argument."""


class TransportError(NewsletterError):
    """Sending one message failed.

    `permanent`: whether trying again can help (a throttled or dropped connection is
    temporary; a rejected address is permanent).  `stops_send`: the sending *account*, not
    this recipient, cannot send now (daily quota spent, sending paused, credentials refused),
    so the whole send stops and stays resumable.  `uncertain`: the request went out but no
    answer came back, so the provider may have accepted the message: retrying could send a
    second copy, and the ledger treats it like a crash in flight.  `throttled`: the provider
    asked us to slow down (temporary), so the pacer lowers the rate.  `hard_bounce` (with
    `permanent`): the receiver says this address does not exist or cannot receive mail, so it
    is suppressed like a hard bounce reported later; a permanent failure without it is about
    this message (a policy rejection), and the address stays.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        recipient: str | None = None,
        code: str | None = None,
        stops_send: bool = False,
        uncertain: bool = False,
        throttled: bool = False,
        hard_bounce: bool = False,
    ) -> None:
        self.permanent = permanent
        self.recipient = recipient
        self.code = code
        self.stops_send = stops_send
        self.uncertain = uncertain
        self.throttled = throttled
        self.hard_bounce = hard_bounce
        super().__init__(message)


class TokenError(NewsletterError):
    """A tracking or unsubscribe token that is malformed or whose signature does not verify."""


class WebhookError(NewsletterError):
    """An incoming SNS notification that is not authentic or not understood."""
