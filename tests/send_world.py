"""A newsletter installation in a temporary directory, for the send tests and benchmarks.

`World` is what an editor has on disk: a `newsletter.toml`, a database with subscribers, an
issue file, an outbox.  Tests drive it in-process (`world.plan()`, `world.send()`) or as the
editor does (`world.newsletter("send", ...)` runs the real command in a subprocess), and read
back what happened: ledger rows, outbox files.

The `world` fixture builds on conftest.py's `database_url`, so every test that uses it runs
on SQLite, and on PostgreSQL too when NEWSLETTER_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter.config import Settings, load_settings
from newsletter.sending.campaign import SendSummary, run_send
from newsletter.sending.plan import SendOptions, SendPlan, plan_send
from newsletter.store import Store
from newsletter.store.database import connection_name
from newsletter.store.lists import get_or_create_list
from newsletter.store.schema import (
    ACTIVE,
    deliveries,
    issues,
    memberships,
    subscribers,
    utcnow,
)
from tests.standings import split

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
EXAMPLE_ISSUE = REPO / "issues" / "2026-11-30.md"

# Long and random-looking, and not the example configuration's demo secret (which smtp and
# ses refuse).
SECRET = "send-tests-3f9a8c1d6e2b47f0a5c4d9e8b7a6f5e4d3c2b1a0"
SENDER = "digest@example.com"
BASE_URL = "https://news.example.com"


# ---------------------------------------------------------------------------------------
# The installation
# ---------------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(config: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class Delivery:
    subscriber_id: int
    email: str
    status: str
    failure: str | None
    error: str | None
    attempts: int
    message_id: str | None
    provider_message_id: str | None


class World:
    """newsletter.toml + database + issue file in `root`; see the module docstring."""

    def __init__(self, root: Path, database_url: str, *, issue: Path = EXAMPLE_ISSUE) -> None:
        self.root = root
        self.database_url = database_url
        self.config: dict[str, dict[str, Any]] = {
            "newsletter": {
                "name": "AI行业速递",
                "from": f"AI行业速递 <{SENDER}>",
                "base_url": BASE_URL,
                "language": "zh-CN",
                "database": database_url,
                "secret": SECRET,
                "list": "default",
                "address": "示例传媒 · 北京市海淀区示例路 1 号",
            },
            "transport": {"kind": "outbox"},
            "transport.outbox": {"path": "outbox"},
            "tracking": {"opens": True, "clicks": True},
        }
        self.config_path = root / "newsletter.toml"
        self.issue_file = root / "issues" / issue.name
        self.issue_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(issue, self.issue_file)
        self._write_config()
        self.store = Store.open(database_url)

    def close(self) -> None:
        self.store.close()

    # ---- configuration ----

    def _write_config(self) -> None:
        self.config_path.write_text(toml_text(self.config), encoding="utf-8")

    def configure(self, section: str, **values: Any) -> None:
        """Change `[section]` keys in newsletter.toml (`configure("transport", kind="smtp")`)."""
        self.config.setdefault(section, {}).update(values)
        self._write_config()

    def use_smtp(self, server) -> None:
        self.configure("transport", kind="smtp")
        self.configure("transport.smtp", host=server.host, port=server.port, security="none", timeout=10)

    def use_ses(self, server, **values: Any) -> None:
        self.configure("transport", kind="ses")
        self.configure("transport.ses", region=server.region, endpoint_url=server.endpoint_url, **values)

    @property
    def settings(self) -> Settings:
        # environ={}: NEWSLETTER_* variables of whoever runs the tests must not leak in.
        return load_settings(self.config_path, environ={})

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    # ---- subscribers ----

    def add_subscribers(
        self,
        count: int,
        *,
        list_slug: str = "default",
        status: str = ACTIVE,
        prefix: str = "reader",
        domain: str = "example.org",
        names: Iterable[str] | None = None,
    ) -> list[int]:
        """`count` subscribers `{prefix}{n}@{domain}` in `list_slug`, written directly (the
        importer is another module's subject and slower); returns their ids in order.
        `status` is one word, put on the address or the membership (standings.split)."""
        address_status, list_status = split(status)
        now = utcnow()
        names = list(names) if names is not None else [f"读者 {n}" for n in range(count)]
        with self.store.begin() as conn:
            list_id = get_or_create_list(conn, list_slug)
            first = conn.execute(sa.select(sa.func.coalesce(sa.func.max(subscribers.c.id), 0))).scalar_one() + 1
            rows = []
            for n in range(count):
                address = f"{prefix}{n}@{domain}"
                rows.append(
                    {
                        "id": first + n,
                        "email": address,
                        "email_key": address.lower(),
                        "name": names[n],
                        "status": address_status,
                        "attributes": {},
                        "source": "test",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            conn.execute(subscribers.insert(), rows)
            conn.execute(
                memberships.insert(),
                [
                    {
                        "list_id": list_id,
                        "subscriber_id": row["id"],
                        "created_at": now,
                        "status": list_status,
                        "changed_at": now,
                        "change_source": "test",
                    }
                    for row in rows
                ],
            )
            if self.store.dialect == "postgresql":
                # Explicit ids leave the sequence behind; later inserts (add_subscriber) need it.
                conn.exec_driver_sql("SELECT setval('subscribers_id_seq', (SELECT max(id) FROM subscribers))")
        return [row["id"] for row in rows]

    def emails(self) -> dict[int, str]:
        with self.store.read() as conn:
            return {row[0]: row[1] for row in conn.execute(sa.select(subscribers.c.id, subscribers.c.email))}

    # ---- sending in-process ----

    def plan(self, **options: Any) -> SendPlan:
        return plan_send(self.settings, self.store, self.issue_file, SendOptions(**options))

    def send(self, *, progress=None, transport=None, **options: Any) -> SendSummary:
        return run_send(self.plan(**options), progress=progress, transport=transport)

    def deliveries(self) -> dict[int, Delivery]:
        """The ledger of the (only) issue, by subscriber id."""
        query = (
            sa.select(
                deliveries.c.subscriber_id,
                subscribers.c.email,
                deliveries.c.status,
                deliveries.c.failure,
                deliveries.c.error,
                deliveries.c.attempts,
                deliveries.c.message_id,
                deliveries.c.provider_message_id,
            )
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .order_by(deliveries.c.subscriber_id)
        )
        with self.store.read() as conn:
            return {row[0]: Delivery(*row) for row in conn.execute(query)}

    def statuses(self) -> dict[str, int]:
        counted: dict[str, int] = {}
        for row in self.deliveries().values():
            key = row.status if row.failure is None or row.status != "failed" else f"failed({row.failure})"
            counted[key] = counted.get(key, 0) + 1
        return counted

    def issue_row(self) -> dict:
        with self.store.read() as conn:
            return dict(conn.execute(sa.select(issues)).mappings().one())

    # ---- the command, as the editor runs it ----

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "newsletter", "--config", str(self.config_path), *args]

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.update(extra or {})
        # rich draws no progress bar without a terminal; keep its output plain regardless.
        env["TERM"] = "dumb"
        return env

    def newsletter(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """Run `newsletter ARGS` here without a terminal (stdin is /dev/null)."""
        return subprocess.run(
            self.command(*args),
            cwd=self.root,
            env=self.environment(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """`newsletter ARGS` in this process (click's runner: no terminal, stdin empty), for
        the many CLI tests where a new interpreter per run would only add seconds."""
        from cli_in_process import run_newsletter

        return run_newsletter("--config", str(self.config_path), *args, cwd=self.root, env=env)

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL `process` and wait until the database has nothing more of it to carry out.

        On PostgreSQL a statement or COMMIT the process wrote just before it died is still
        carried out by its server process after the kill, and reading the ledger before then
        can see a row `sending` that becomes `sent` a moment later."""
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        if self.store.dialect != "postgresql":
            return
        query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
        deadline = time.monotonic() + 30
        while True:
            with self.store.read() as conn:
                if not conn.execute(query, {"name": connection_name(process.pid)}).scalar_one():
                    return
            assert time.monotonic() < deadline, "the killed process's connections are still served"
            time.sleep(0.01)

    def start_newsletter(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env=self.environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # ---- the outbox ----

    def outbox_files(self) -> list[Path]:
        found: list[Path] = []
        for part in ("new", "cur"):
            directory = self.outbox / part
            if directory.is_dir():
                found.extend(Path(entry.path) for entry in os.scandir(directory))
        return found

    def outbox_count(self) -> int:
        directory = self.outbox / "new"
        if not directory.is_dir():
            return 0
        with os.scandir(directory) as entries:
            return sum(1 for _ in entries)

    def outbox_headers(self) -> list:
        """The header block of every message in the outbox, parsed."""
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(path.read_bytes(), headersonly=True) for path in self.outbox_files()]


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    created = World(tmp_path, database_url)
    try:
        yield created
    finally:
        created.close()


def parse_message(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def recipients_of(messages: Iterable) -> dict[str, int]:
    """How many messages each To address got."""
    counted: dict[str, int] = {}
    for message in messages:
        for address in message["To"].addresses:
            counted[address.addr_spec] = counted.get(address.addr_spec, 0) + 1
    return counted
