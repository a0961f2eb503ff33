"""Settings: `newsletter.toml` plus a few `NEWSLETTER_*` environment variables.

Loaded once by the CLI and passed down; library code never reads the environment itself.
Every key has an embedded default, so no file at all means a working local setup
(outbox transport, SQLite in the working directory).  Unknown keys and wrong types are
errors that name the key, because a misspelt `[transport] kind` silently falling back to a
default would send real mail somewhere unexpected.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from newsletter.errors import ConfigError

CONFIG_FILE_NAME = "newsletter.toml"

# The secret in the example configuration; good for the local outbox demo only.
DEMO_SECRET = "demo-secret-for-the-local-outbox-only"
# Beyond the outbox the secret signs links that reach strangers: a key shorter than the
# hash output weakens the MAC (RFC 2104, section 3: at least L = 32 bytes for SHA-256).
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class NewsletterSettings:
    name: str = "Newsletter"
    from_: str = "Newsletter <newsletter@example.com>"
    reply_to: str = ""
    base_url: str = "http://127.0.0.1:8000"
    language: str = "zh-CN"
    database: str = "sqlite:///newsletter.db"
    secret: str = ""
    list: str = "default"
    templates: str = ""
    # One sentence in the footer telling readers why they get this mail (CAN-SPAM, Gmail).
    reason: str = ""
    # Postal address in the footer; required by CAN-SPAM for commercial mail.
    address: str = ""
    unsubscribe_mailto: str = ""
    # IANA zone that `send --at` times are read in (e.g. "Asia/Shanghai"); empty: the machine's.
    timezone: str = ""
    # Who `send --test` goes to when no address is given.
    test_recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutboxSettings:
    path: str = "outbox"


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    username: str = ""
    password: str = ""
    security: str = "starttls"
    timeout: float = 30.0
    rate: float = 0.0
    # The name given in EHLO (RFC 5321 section 4.1.1.1: the client's fully qualified
    # domain name); empty means the From domain, since the host's own name often has no dot.
    local_hostname: str = ""
    # Sign each message with DKIM (RFC 6376) when both are set: the selector whose
    # `SELECTOR._domainkey.FROM-DOMAIN` TXT record holds the public key, and the private key.
    dkim_selector: str = ""
    dkim_key_file: str = ""


@dataclass(frozen=True)
class SesSettings:
    region: str = "us-east-1"
    endpoint_url: str = ""
    configuration_set: str = ""
    rate: float = 0.0


@dataclass(frozen=True)
class TransportSettings:
    kind: str = "outbox"
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    ses: SesSettings = field(default_factory=SesSettings)


@dataclass(frozen=True)
class TrackingSettings:
    opens: bool = True
    clicks: bool = True


@dataclass(frozen=True)
class WebSettings:
    admin_password: str = ""
    # Requests per minute one client address may make to /subscribe.
    subscribe_rate_per_minute: int = 10


@dataclass(frozen=True)
class InboxSettings:
    """`[events.inbox]`: the mailbox `newsletter events inbox` reads (feedback/inbox.py)."""

    # imaps://USER@HOST[:PORT]/FOLDER, imap://... (plain, for a server on this machine) or
    # maildir:///PATH; empty: no mailbox is read.
    url: str = ""
    # From NEWSLETTER_INBOX_PASSWORD rather than the file.
    password: str = ""
    # Where applied mail is moved so it is not read again; created when missing.
    applied_folder: str = "newsletter-applied"


@dataclass(frozen=True)
class EventsSettings:
    # SNS topics whose notifications /hooks/ses accepts; empty accepts none.
    topic_arns: tuple[str, ...] = ()
    transient_bounce_limit: int = 3
    transient_bounce_days: int = 30
    inbox: InboxSettings = field(default_factory=InboxSettings)


@dataclass(frozen=True)
class ListSettings:
    """`[lists.SLUG]`: how a list presents itself; None where the table does not say, so
    what `newsletter lists set` stored in the database applies (newsletter.audience.lists)."""

    name: str | None = None
    # One line for the preference page: what the list sends and how often.
    description: str | None = None
    # Whether /subscribe may join it and the preference page offers it to every reader.
    public: bool | None = None


@dataclass(frozen=True)
class SendingSettings:
    # Warm-up of a new sending domain (newsletter/sending/warmup.py): at most
    # warmup_daily_start * warmup_daily_growth ** (day - 1) messages a day.
    warmup: bool = False
    warmup_daily_start: int = 200
    warmup_daily_growth: float = 1.5
    # Day 1 of the warm-up (YYYY-MM-DD); empty: the day the first message went out.
    warmup_start: str = ""
    # Tries of one reader's message, over runs, before a temporary failure becomes permanent
    # (newsletter/sending/retry.py has the schedule).
    max_attempts: int = 8


@dataclass(frozen=True)
class DoctorSettings:
    # Resolvers `newsletter doctor` asks, as "HOST" or "HOST:PORT"; empty: the system's.
    nameservers: tuple[str, ...] = ()
    # Seconds for each DNS, SES or HTTP question.
    timeout: float = 5.0


@dataclass(frozen=True)
class Settings:
    newsletter: NewsletterSettings = field(default_factory=NewsletterSettings)
    transport: TransportSettings = field(default_factory=TransportSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    web: WebSettings = field(default_factory=WebSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    # `[lists.SLUG]` tables, by slug.
    lists: Mapping[str, ListSettings] = field(default_factory=dict)
    sending: SendingSettings = field(default_factory=SendingSettings)
    doctor: DoctorSettings = field(default_factory=DoctorSettings)
    # Where relative paths (outbox, templates, SQLite file) are resolved: the config file's
    # directory, or the working directory when there is no file.
    root: Path = field(default_factory=Path.cwd)
    source: str = "embedded defaults"

    # ---- derived values, so callers never re-derive them differently ----

    def path(self, value: str) -> Path:
        """A configured path, resolved against the configuration's directory."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.root / candidate

    @property
    def database_url(self) -> str:
        url = self.newsletter.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    @property
    def templates_dir(self) -> Path | None:
        return self.path(self.newsletter.templates) if self.newsletter.templates else None

    @property
    def from_address(self) -> str:
        return parseaddr(self.newsletter.from_)[1]

    @property
    def sender_domain(self) -> str:
        return self.from_address.rpartition("@")[2] or "localhost"

    @property
    def base_url(self) -> str:
        return self.newsletter.base_url.rstrip("/")


# TOML names that are Python keywords get a trailing underscore in the dataclass.
_FIELD_FOR_KEY = {"from": "from_"}
_KEY_FOR_FIELD = {value: key for key, value in _FIELD_FOR_KEY.items()}

# Secrets belong in the environment rather than in a file that may be committed.
ENVIRONMENT = {
    "NEWSLETTER_DATABASE_URL": ("newsletter", "database"),
    "NEWSLETTER_SECRET": ("newsletter", "secret"),
    "NEWSLETTER_BASE_URL": ("newsletter", "base_url"),
    "NEWSLETTER_ADMIN_PASSWORD": ("web", "admin_password"),
    "NEWSLETTER_SMTP_PASSWORD": ("transport", "smtp", "password"),
    "NEWSLETTER_INBOX_PASSWORD": ("events", "inbox", "password"),
}

VALID_CHOICES = {
    "transport.kind": ("outbox", "smtp", "ses"),
    "transport.smtp.security": ("starttls", "ssl", "none"),
}


def load_settings(
    config_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Read the configuration: `config_path`, else `$NEWSLETTER_CONFIG`, else
    `./newsletter.toml` if it exists, else the embedded defaults; then the environment."""
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    explicit = config_path or environ.get("NEWSLETTER_CONFIG")
    path = Path(explicit) if explicit else cwd / CONFIG_FILE_NAME
    data: dict[str, Any] = {}
    source = "embedded defaults"
    root = cwd
    if explicit or path.exists():
        data = _read_toml(path)
        source = str(path)
        root = path.resolve().parent
    for variable, keys in ENVIRONMENT.items():
        if environ.get(variable):
            section = data
            for key in keys[:-1]:
                section = section.setdefault(key, {})
                if not isinstance(section, dict):
                    raise ConfigError("must be a table", key=".".join(keys[:-1]), source=source)
            section[keys[-1]] = environ[variable]
    list_tables = data.pop("lists", {})
    values = _build(Settings, data, prefix="", source=source, skip=frozenset({"root", "source", "lists"}))
    values["lists"] = _build_lists(list_tables, source=source)
    settings = Settings(**values, root=root, source=source)
    _validate(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("configuration file not found", source=str(path)) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}", source=str(path)) from err
    except UnicodeDecodeError as err:
        raise ConfigError("not UTF-8 text", source=str(path)) from err
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively; no setting of ours
        # nests more than two levels.
        raise ConfigError("not a configuration: arrays or tables nested too deeply", source=str(path)) from None


def _build(
    cls: type[Any], data: Any, *, prefix: str, source: str, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError("must be a table", key=prefix.rstrip(".") or None, source=source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = _FIELD_FOR_KEY.get(key, key)
        dotted = prefix + key
        if name not in fields:
            known = ", ".join(sorted(_KEY_FOR_FIELD.get(n, n) for n in fields))
            raise ConfigError(f"unknown key (known here: {known})", key=dotted, source=source)
        kind = hints[name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            values[name] = kind(**_build(kind, raw, prefix=dotted + ".", source=source))
        else:
            values[name] = _coerce(kind, raw, key=dotted, source=source)
    return values


# The same rule as store.lists.check_list_slug (which this module cannot import cheaply).
_LIST_SLUG = re.compile(r"[A-Za-z0-9_-]{1,100}")


def _build_lists(data: Any, *, source: str) -> dict[str, ListSettings]:
    """`[lists.SLUG]` tables: each key must be a list slug, each value a table of
    ListSettings' keys."""
    if not isinstance(data, dict):
        raise ConfigError("must be a table of [lists.SLUG] tables", key="lists", source=source)
    found: dict[str, ListSettings] = {}
    for slug, table in data.items():
        if not _LIST_SLUG.fullmatch(slug):
            raise ConfigError("is not a list slug (letters, digits, '-' and '_')", key=f"lists.{slug}", source=source)
        if not isinstance(table, dict):
            raise ConfigError("must be a table", key=f"lists.{slug}", source=source)
        values: dict[str, Any] = {}
        for key, raw in table.items():
            dotted = f"lists.{slug}.{key}"
            if key not in ("name", "description", "public"):
                raise ConfigError("unknown key (known here: description, name, public)", key=dotted, source=source)
            values[key] = _coerce(bool if key == "public" else str, raw, key=dotted, source=source)
        found[slug] = ListSettings(**values)
    return found


def _coerce(kind: Any, raw: Any, *, key: str, source: str) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0", "yes", "no"):
            return raw.lower() in ("true", "1", "yes")
        raise ConfigError(f"must be true or false, not {raw!r}", key=key, source=source)
    if kind is int or kind is float:
        if isinstance(raw, bool):
            raise ConfigError(f"must be a number, not {raw!r}", key=key, source=source)
        if isinstance(raw, (int, float)) and (kind is float or isinstance(raw, int)):
            return kind(raw)
        if isinstance(raw, str):
            try:
                return kind(raw)
            except ValueError:
                pass
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(f"must be {noun}, not {raw!r}", key=key, source=source)
    if kind is str:
        if isinstance(raw, str):
            return raw
        raise ConfigError(f"must be a string, not {raw!r}", key=key, source=source)
    if typing.get_origin(kind) is tuple:
        items = [item.strip() for item in raw.split(",") if item.strip()] if isinstance(raw, str) else raw
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return tuple(items)
        raise ConfigError(f"must be a list of strings, not {raw!r}", key=key, source=source)
    raise AssertionError(f"unsupported setting type {kind!r}")  # pragma: no cover - programming error


# Strings that never reach a header or a protocol line: the footer's postal address and
# reason, and a list's description on the preference page, may span lines.
_MULTI_LINE_KEYS = frozenset({"newsletter.address", "newsletter.reason"})


def _refuse_line_breaks(section: Any, prefix: str, source: str) -> None:
    """CR or LF in a configured string would end a header field (or an SMTP command line)
    where the string is written: RFC 5322 section 2.2, RFC 5321 section 2.3.8."""
    for item in dataclasses.fields(section):
        value = getattr(section, item.name)
        dotted = prefix + _KEY_FOR_FIELD.get(item.name, item.name)
        if dataclasses.is_dataclass(value):
            _refuse_line_breaks(value, dotted + ".", source)
            continue
        values = value if isinstance(value, tuple) else (value,)
        if dotted not in _MULTI_LINE_KEYS and any(isinstance(v, str) and ("\r" in v or "\n" in v) for v in values):
            raise ConfigError("holds a line break (CR or LF); it must be one line", key=dotted, source=source)


def _validate(settings: Settings) -> None:
    for name in ("newsletter", "transport", "tracking", "web", "events", "sending", "doctor"):
        _refuse_line_breaks(getattr(settings, name), name + ".", settings.source)
    for slug, table in settings.lists.items():
        if table.name is not None and ("\r" in table.name or "\n" in table.name):
            raise ConfigError(
                "holds a line break (CR or LF); it must be one line", key=f"lists.{slug}.name", source=settings.source
            )
    for dotted, choices in VALID_CHOICES.items():
        value: Any = settings
        for part in dotted.split("."):
            value = getattr(value, part)
        if value not in choices:
            raise ConfigError(f"must be one of {', '.join(choices)}, not {value!r}", key=dotted, source=settings.source)
    if "@" not in settings.from_address:
        raise ConfigError(
            f"needs an address, like 'Name <news@example.com>', not {settings.newsletter.from_!r}",
            key="newsletter.from",
            source=settings.source,
        )
    if not settings.newsletter.base_url.startswith(("http://", "https://")):
        raise ConfigError(
            "must start with https:// (or http:// for local testing)", key="newsletter.base_url", source=settings.source
        )
    if settings.sending.warmup_daily_start < 1 or settings.sending.warmup_daily_growth < 1:
        raise ConfigError(
            "warm-up must start at 1 message a day or more and grow by a factor of 1 or more",
            key="sending.warmup_daily_start"
            if settings.sending.warmup_daily_start < 1
            else "sending.warmup_daily_growth",
            source=settings.source,
        )
    if settings.sending.max_attempts < 1:
        raise ConfigError("must be 1 or more", key="sending.max_attempts", source=settings.source)
    if settings.newsletter.timezone:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(settings.newsletter.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{settings.newsletter.timezone!r} is not a time zone; use an IANA name like 'Asia/Shanghai'",
                key="newsletter.timezone",
                source=settings.source,
            ) from None
    if not settings.newsletter.list or not settings.newsletter.list.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(
            "must be a list slug: letters, digits, '-' and '_'", key="newsletter.list", source=settings.source
        )


def replace(settings: Settings, **sections: Any) -> Settings:
    """A copy of `settings` with some fields of some sections changed, for tests and CLI flags:
    `replace(settings, newsletter={"secret": "x"})`."""
    changed = {}
    for section, values in sections.items():
        current = getattr(settings, section)
        # `lists` is a mapping itself, replaced whole; the other sections are dataclasses.
        changed[section] = dataclasses.replace(current, **values) if section != "lists" else values
    return dataclasses.replace(settings, **changed)
