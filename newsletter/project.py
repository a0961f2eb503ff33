"""A new newsletter project and a new issue: `newsletter init` and `newsletter new`.

    created = init_project(Path("digest"))        # newsletter.toml, issues/, subscribers/, .gitignore
    path = new_issue(settings, date(2026, 12, 2))  # issues/2026-12-02.md from the skeleton

Both write only files that do not exist yet: an editor's configuration (and its secret,
which signs every link already sent) or a half-written issue is never overwritten.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from newsletter.config import CONFIG_FILE_NAME, Settings
from newsletter.errors import InputError
from newsletter.i18n import format_date

# 48 random bytes, 64 URL-safe characters: well past the 32 bytes an HMAC-SHA256 key
# needs (RFC 2104, section 3: the key should be at least the hash's output length).
SECRET_BYTES = 48
ISSUES_DIR = "issues"
SUBSCRIBERS_DIR = "subscribers"
EXAMPLE_CSV = "example.csv"


@dataclass(frozen=True)
class InitResult:
    directory: Path
    files: tuple[Path, ...]

    def next_steps(self) -> list[str]:
        where = "" if self.directory.resolve() == Path.cwd().resolve() else f"cd {self.directory} && "
        return [
            f"{where}newsletter new                      # write issues/<today>.md from the skeleton",
            "newsletter subscribers import subscribers/example.csv",
            "newsletter send issues/<date>.md --test you@example.com",
        ]


def init_project(directory: Path, *, name: str = "Newsletter", language: str = "zh-CN") -> InitResult:
    """Write a working project into `directory` (created if missing): the outbox transport,
    SQLite, a fresh secret.  Refuses, writing nothing, if any of its files exists."""
    files = {
        directory / CONFIG_FILE_NAME: config_text(name=name, language=language, secret=new_secret()),
        directory / SUBSCRIBERS_DIR / EXAMPLE_CSV: EXAMPLE_SUBSCRIBERS,
        directory / ".gitignore": GITIGNORE,
    }
    existing = [path for path in files if path.exists()]
    if existing:
        raise InputError(
            f"{existing[0]} already exists; newsletter init never overwrites (use an empty directory, "
            "or edit the existing configuration)"
        )
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file, not a directory")
    try:
        (directory / ISSUES_DIR).mkdir(parents=True, exist_ok=True)
        (directory / SUBSCRIBERS_DIR).mkdir(exist_ok=True)
        for path, text in files.items():
            # "x": fail rather than overwrite a file that appeared since the check above.
            with path.open("x", encoding="utf-8") as handle:
                handle.write(text)
    except OSError as err:
        raise InputError(f"cannot write {err.filename or directory}: {err.strerror}") from err
    return InitResult(directory, (directory / CONFIG_FILE_NAME, directory / ISSUES_DIR, *list(files)[1:]))


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def new_issue(settings: Settings, day: date, *, title: str | None = None) -> Path:
    """Write issues/<day>.md (under the configuration's directory) from the skeleton."""
    path = settings.path(ISSUES_DIR) / f"{day.isoformat()}.md"
    language = settings.newsletter.language
    english = language.lower().startswith("en")
    heading = title or f"{settings.newsletter.name} - {format_date(day, language)}"
    if "\n" in heading or not heading.strip():
        raise InputError("the title must be one non-empty line")
    text = (ENGLISH_SKELETON if english else CHINESE_SKELETON).format(title=heading.strip(), date=day.isoformat())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise InputError(f"{path} already exists; edit it, or give another day with --date") from None
    except OSError as err:
        raise InputError(f"cannot write {path}: {err.strerror}") from err
    return path


def config_text(*, name: str, language: str, secret: str) -> str:
    import json

    # JSON strings are valid TOML basic strings (the same escapes).
    return CONFIG_TEMPLATE.format(
        name=json.dumps(name, ensure_ascii=False), language=json.dumps(language), secret=secret
    )


CONFIG_TEMPLATE = """\
# newsletter configuration, written by `newsletter init`.  Every key is optional; the
# README's "Configuration" section explains each.  Values can also come from the
# environment: NEWSLETTER_SECRET, NEWSLETTER_DATABASE_URL, NEWSLETTER_BASE_URL,
# NEWSLETTER_ADMIN_PASSWORD, NEWSLETTER_SMTP_PASSWORD.

[newsletter]
name = {name}
from = "Newsletter <newsletter@example.com>"   # the sender readers see; a domain you can send from
reply_to = ""
base_url = "http://127.0.0.1:8000"              # where `newsletter serve` is reachable (https:// in production)
language = {language}
timezone = ""                                   # `send --at` times are read in this IANA zone, e.g. "Asia/Shanghai"; empty: this machine's
database = "sqlite:///newsletter.db"            # or postgresql://user@host/db (pip install 'newsletter[postgres]')
# Signs every unsubscribe and tracking link: made fresh by `newsletter init`.  Keep it
# secret and keep it: changing it breaks the links in every mail already sent.
secret = "{secret}"
list = "default"                                # the list `send` and `subscribers import` use
test_recipients = []                            # `send --test` with no address goes to these
reason = ""                                     # footer: why the reader gets this mail
address = ""                                    # footer: your postal address (CAN-SPAM)

[transport]
kind = "outbox"                                 # outbox (files in a Maildir, nothing leaves) | smtp | ses

[transport.outbox]
path = "outbox"

# [transport.smtp]
# host = "smtp.example.com"
# port = 587
# username = ""
# security = "starttls"                         # starttls | ssl | none; the password: NEWSLETTER_SMTP_PASSWORD

# [transport.ses]
# region = "us-east-1"                          # credentials: the standard AWS chain
# configuration_set = ""

[tracking]
opens = true
clicks = true

[web]
admin_password = ""                             # for /stats; better NEWSLETTER_ADMIN_PASSWORD
"""

EXAMPLE_SUBSCRIBERS = """\
email,name,lists
reader.one@example.com,第一位读者,default
reader.two@example.org,Second Reader,default
"""

GITIGNORE = """\
# What newsletter writes here besides your issues and configuration.
newsletter.db
newsletter.db-*
outbox/
build/
"""

CHINESE_SKELETON = """\
---
preheader: 一句话说明这一期讲什么：收件箱在主题后面显示它
---
# {title}

## 第一条新闻的标题

> **分类：** 市场动态
> **来源：** [示例新闻](https://news.example.com/{date}/story) 、 [另一家媒体](https://media.example.org/{date}/report)

**核心洞察：** 用一段话写出这条新闻真正重要的地方。
**内容简介：**

- 要点：摘要的第一点，可以有**加粗**、*斜体*和[链接](https://news.example.com/{date}/more)。
- 背景：摘要的第二点。

---

## 其他相关资讯

- [一条相关的新闻](https://news.example.net/{date}/related)
"""

ENGLISH_SKELETON = """\
---
preheader: one line on what this issue is about; inboxes show it after the subject
---
# {title}

## The first story's title

> **Category:** Markets
> **Sources:** [Example News](https://news.example.com/{date}/story) | [Another Outlet](https://media.example.org/{date}/report)

**Key insight:** one paragraph on what really matters in this story.
**Summary:**

- Point: the summary's first point, with **bold**, *italic* and [links](https://news.example.com/{date}/more).
- Background: the second point.

---

## Related

- [A related story](https://news.example.net/{date}/related)
"""
