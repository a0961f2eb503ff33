"""The mailboxes `newsletter events inbox` reads: a Maildir on this machine, or a folder on an
IMAP server (RFC 3501).

    mailbox = open_mailbox(settings.events.inbox)
    try:
        for key in mailbox.waiting():
            raw = mailbox.fetch(key)       # None: gone meanwhile (another reader took it)
            ...
            mailbox.set_aside(key)         # into the applied folder: not read again
    finally:
        mailbox.close()

Mail is never deleted: what was applied is moved into `[events.inbox] applied_folder`
(created when missing), so the inbox holds only what is still to read or what could not be
read, and a person can look at either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from newsletter.config import InboxSettings
from newsletter.errors import ConfigError, NewsletterError

URL_KEY = "events.inbox.url"


class MailboxError(NewsletterError):
    """The mailbox cannot be opened, read or written: no such Maildir, login refused,
    server unreachable."""


class Mailbox(Protocol):
    # How the mailbox is named in messages (the URL without a password).
    where: str

    def waiting(self) -> list[str]: ...

    def fetch(self, key: str) -> bytes | None: ...

    def set_aside(self, key: str) -> None: ...

    def close(self) -> None: ...


def open_mailbox(inbox: InboxSettings, *, source: str | None = None) -> Mailbox:
    """The mailbox `inbox.url` names, opened; ConfigError for a URL we do not read."""
    if not inbox.url:
        raise ConfigError("no mailbox to read: set it, e.g. imaps://bounces@mail.example.com/INBOX", key=URL_KEY)
    parts = urlsplit(inbox.url)
    if parts.scheme == "maildir":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"a Maildir is on this machine: maildir:///PATH, not {inbox.url!r}", key=URL_KEY)
        if not parts.path:
            raise ConfigError("maildir:/// needs the Maildir's path", key=URL_KEY, source=source)
        return MaildirMailbox(Path(unquote(parts.path)), inbox.applied_folder)
    if parts.scheme in ("imap", "imaps"):
        from newsletter.feedback.imap_mailbox import ImapMailbox

        return ImapMailbox.open(inbox, source=source)
    raise ConfigError(f"must start with imaps://, imap:// or maildir://, not {inbox.url!r}", key=URL_KEY, source=source)


class MaildirMailbox:
    """A Maildir (cr.yp.to/proto/maildir.html): mail in `new/` and `cur/`; applied mail goes
    to the Maildir++ subfolder `.FOLDER` that Dovecot and Courier show as a folder."""

    def __init__(self, path: Path, applied_folder: str) -> None:
        self.path = path
        self.where = f"maildir://{path}"
        if not all((path / sub).is_dir() for sub in ("new", "cur", "tmp")):
            raise MailboxError(f"{self.where}: not a Maildir (it needs new/, cur/ and tmp/)")
        if not applied_folder or "/" in applied_folder or applied_folder.startswith("."):
            raise ConfigError(
                f"{applied_folder!r} cannot be a Maildir++ folder name", key="events.inbox.applied_folder"
            )
        self.applied = path / f".{applied_folder}"

    def waiting(self) -> list[str]:
        found: list[str] = []
        for sub in ("new", "cur"):
            try:
                with os.scandir(self.path / sub) as entries:
                    # Names starting with a dot are not messages (the Maildir specification).
                    found.extend(f"{sub}/{entry.name}" for entry in entries if not entry.name.startswith("."))
            except OSError as err:
                raise MailboxError(f"{self.where}: cannot list {sub}/: {err.strerror}") from err
        return sorted(found)

    def fetch(self, key: str) -> bytes | None:
        try:
            return (self.path / key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise MailboxError(f"{self.where}: cannot read {key}: {err.strerror}") from err

    def set_aside(self, key: str) -> None:
        name = key.split("/", 1)[1]
        # In cur/ a message is "UNIQUE:2,FLAGS"; it is kept as read (S) there.
        unique, _, info = name.partition(":2,")
        flags = "".join(sorted(set(info) | {"S"}))
        try:
            for sub in ("tmp", "new", "cur"):
                (self.applied / sub).mkdir(parents=True, exist_ok=True)
            # Dovecot marks a Maildir++ subfolder with this empty file.
            (self.applied / "maildirfolder").touch(exist_ok=True)
            # A rename within one file system is atomic: the mail is in one place or the other.
            os.rename(self.path / key, self.applied / "cur" / f"{unique}:2,{flags}")
        except FileNotFoundError:
            return  # another reader moved it first
        except OSError as err:
            raise MailboxError(f"{self.where}: cannot move {key} into {self.applied.name}: {err.strerror}") from err

    def close(self) -> None:
        return None
