"""A folder on an IMAP server (RFC 3501) as a `Mailbox` for `newsletter events inbox`.

`imaps://USER@HOST[:PORT]/FOLDER` speaks TLS from the start (port 993, RFC 8314 prefers it)
and checks the server's certificate against the system's trust store (or $SSL_CERT_FILE);
`imap://` is plain text, so it is accepted only for a server on this machine, where the
password does not cross a network.  The password comes from NEWSLETTER_INBOX_PASSWORD.

Mail is fetched with BODY.PEEK[], which leaves the \\Seen flag alone (RFC 3501 section
6.4.5), so mail left in the inbox looks unread to the person who reads it next.  Applied
mail is moved into the applied folder with MOVE (RFC 6851) where the server has it, else
copied, flagged \\Deleted and expunged (by UID where UIDPLUS allows, RFC 4315).
"""

from __future__ import annotations

import imaplib
import ipaddress
import re
import ssl
from urllib.parse import unquote, urlsplit

from newsletter.config import InboxSettings
from newsletter.errors import ConfigError
from newsletter.feedback.mailboxes import URL_KEY, MailboxError

TIMEOUT_SECONDS = 60
_FETCHED_UID = re.compile(rb"\bUID (\d+)")


class ImapMailbox:
    def __init__(self, connection: imaplib.IMAP4, where: str, folder: str, applied_folder: str) -> None:
        self.connection = connection
        self.where = where
        self.folder = folder
        self.applied_folder = applied_folder
        self._folder_exists = False
        _, data = self._call("CAPABILITY", connection.capability)
        self.capabilities = set(data[0].decode("ascii", "replace").upper().split()) if data and data[0] else set()

    @classmethod
    def open(cls, inbox: InboxSettings, *, source: str | None = None) -> ImapMailbox:
        parts = urlsplit(inbox.url)
        secure = parts.scheme == "imaps"
        host = parts.hostname
        user = unquote(parts.username or "")
        if not host or not user:
            raise ConfigError("needs a user and a host, like imaps://bounces@mail.example.com/INBOX", key=URL_KEY)
        try:
            port = parts.port or (993 if secure else 143)
        except ValueError:
            raise ConfigError(f"{inbox.url!r} has no valid port", key=URL_KEY, source=source) from None
        if not secure and not _loopback(host):
            raise ConfigError(
                f"imap:// sends the password in clear; use imaps://{user}@{host}/... for a server on another machine",
                key=URL_KEY,
                source=source,
            )
        if not inbox.password:
            raise ConfigError("no password for the mailbox: set NEWSLETTER_INBOX_PASSWORD", key="events.inbox.password")
        folder = unquote(parts.path.lstrip("/")) or "INBOX"
        where = f"{parts.scheme}://{user}@{host}:{port}/{folder}"
        try:
            if secure:
                connection: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=ssl.create_default_context(), timeout=TIMEOUT_SECONDS
                )
            else:
                connection = imaplib.IMAP4(host, port, timeout=TIMEOUT_SECONDS)
        except (OSError, imaplib.IMAP4.error) as err:
            raise MailboxError(f"{where}: cannot connect: {err}") from err
        try:
            connection.login(user, inbox.password)
        except imaplib.IMAP4.error as err:
            _logout(connection)
            raise MailboxError(f"{where}: login refused: {_text(err)}") from err
        except OSError as err:
            raise MailboxError(f"{where}: connection lost while logging in: {err}") from err
        mailbox = cls(connection, where, folder, inbox.applied_folder)
        typ, data = mailbox._call("SELECT", connection.select, _quoted(folder))
        if typ != "OK":
            mailbox.close()
            raise MailboxError(f"{where}: cannot open the folder: {_text(data)}")
        return mailbox

    def waiting(self) -> list[str]:
        # UNDELETED: a message flagged \Deleted is on its way out (set aside here by COPY
        # before an EXPUNGE that did not happen, or deleted by a person's mail client).
        typ, data = self._call("UID SEARCH", self.connection.uid, "SEARCH", "UNDELETED")
        if typ != "OK":
            raise MailboxError(f"{self.where}: cannot list the mail: {_text(data)}")
        return [uid.decode("ascii") for uid in (data[0] or b"").split()] if data else []

    def fetch(self, key: str) -> bytes | None:
        typ, data = self._call("UID FETCH", self.connection.uid, "FETCH", key, "(BODY.PEEK[])")
        if typ != "OK":
            raise MailboxError(f"{self.where}: cannot fetch message {key}: {_text(data)}")
        for item in data or []:
            # A literal comes back as (b'1 (UID 7 BODY[] {123}', b'...the message...').
            if isinstance(item, tuple) and len(item) == 2 and _FETCHED_UID.search(item[0]):
                return item[1]
        return None  # expunged meanwhile

    def set_aside(self, key: str) -> None:
        self._create_applied_folder()
        target = _quoted(self.applied_folder)
        if "MOVE" in self.capabilities:
            typ, data = self._call("UID MOVE", self.connection.uid, "MOVE", key, target)
            if typ != "OK":
                raise MailboxError(f"{self.where}: cannot move message {key} to {self.applied_folder}: {_text(data)}")
            return
        typ, data = self._call("UID COPY", self.connection.uid, "COPY", key, target)
        if typ != "OK":
            raise MailboxError(f"{self.where}: cannot copy message {key} to {self.applied_folder}: {_text(data)}")
        self._call("UID STORE", self.connection.uid, "STORE", key, "+FLAGS.SILENT", r"(\Deleted)")
        if "UIDPLUS" in self.capabilities:
            self._call("UID EXPUNGE", self.connection.uid, "EXPUNGE", key)
        else:
            self._call("EXPUNGE", self.connection.expunge)

    def close(self) -> None:
        _logout(self.connection)

    def _create_applied_folder(self) -> None:
        if self._folder_exists:
            return
        typ, data = self._call("LIST", self.connection.list, '""', _quoted(self.applied_folder))
        if typ == "OK" and not any(item for item in data or [] if item):
            typ, data = self._call("CREATE", self.connection.create, _quoted(self.applied_folder))
            # Another reader may have created it a moment ago ([ALREADYEXISTS], RFC 5530).
            if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(d for d in data or [] if isinstance(d, bytes)):
                raise MailboxError(f"{self.where}: cannot create the folder {self.applied_folder}: {_text(data)}")
        self._folder_exists = True

    def _call(self, what: str, method, *args):
        try:
            return method(*args)
        except imaplib.IMAP4.abort as err:
            raise MailboxError(f"{self.where}: the server closed the connection during {what}: {_text(err)}") from err
        except imaplib.IMAP4.error as err:
            raise MailboxError(f"{self.where}: {what} refused: {_text(err)}") from err
        except OSError as err:
            raise MailboxError(f"{self.where}: connection lost during {what}: {err}") from err


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _quoted(name: str) -> str:
    # An IMAP quoted string (RFC 3501 section 4.3); imaplib sends arguments as they are.
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value) -> str:
    if isinstance(value, BaseException):
        value = value.args[0] if value.args else str(value)
    if isinstance(value, list):
        value = b" ".join(item for item in value if isinstance(item, bytes))
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)


def _logout(connection: imaplib.IMAP4) -> None:
    try:
        connection.logout()
    except (imaplib.IMAP4.error, OSError):
        pass
