"""`newsletter serve` under a real uvicorn on 127.0.0.1, over a `World` (send_world.py), for
the web tests.

    def test_x(site: Site):
        site.world.add_subscribers(3)
        site.send()                       # the issue goes out through the outbox
        message = site.message_to("reader0@example.org")
        site.post(unsubscribe_url(message), ...)

The server's port is known only once it listens, but the links in the emails and the app's
own URLs must point at it: so the app is built, served, and then its context is given the
served base URL (the app reads its context on every request), and the editor's
newsletter.toml is rewritten with the same base URL before anything is sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from newsletter.sending.campaign import run_send
from newsletter.sending.plan import SendOptions, plan_send
from newsletter.sending.probe import send_test
from newsletter.store.schema import events, subscribers
from newsletter.web.app import create_app
from newsletter.web.context import WebContext

pytest.register_assert_rewrite("tests.send_world")
from databases import empty_database
from http_server import run_asgi_in_thread

from tests.send_world import EXAMPLE_ISSUE, World, parse_message
from tests.standings import standing

# What a person's browser sends; httpx's own user agent counts as a machine (it is one).
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
TEST_ADDRESS = "editor@example.com"


class RequestsInFlight:
    """The app, counting its HTTP calls still running.  Starlette runs a response's background
    tasks (the confirmation email) before the call returns, so once none is running every
    email a request was going to send is in the outbox: what a test that expects *no* email
    waits for, instead of sleeping."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.running = 0
        self._changed = threading.Condition()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self._changed:
            self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            with self._changed:
                self.running -= 1
                self._changed.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> None:
        with self._changed:
            idle = self._changed.wait_for(lambda: self.running == 0, timeout)
        assert idle, f"{self.running} requests (or their background tasks) still running after {timeout} s"


@dataclasses.dataclass
class Site:
    world: World
    context: WebContext
    app: Starlette
    url: str
    in_flight: RequestsInFlight
    _parsed: dict = dataclasses.field(default_factory=dict)

    # ---- HTTP ----

    def client(self, **options) -> httpx.Client:
        """A client for this server, as a browser of a person (cookies kept, no redirects
        followed, so a test sees each answer)."""
        options.setdefault("headers", {"User-Agent": BROWSER})
        return http_client(base_url=self.url, **options)

    def flush(self) -> None:
        """Write the buffered opens and clicks now."""
        self.app.state.recorder.flush()

    def wait_idle(self) -> None:
        """Until every request answered so far has finished, its background tasks and the
        work it queued for later (the subscribe form's, newsletter.web.deferred) included."""
        self.in_flight.wait_idle()
        assert self.app.state.deferred.wait_idle(), "the subscribe form's queued work still running after 10 s"

    # ---- sending ----

    def send(self, **options) -> None:
        summary = self.world.send(**options)
        assert summary.failed_permanent == summary.failed_temporary == 0, summary

    def send_edition(self, slug: str, list_slug: str, *, language: str | None = None) -> list[EmailMessage]:
        """Send the example issue as issue `slug` to list `list_slug` (its front matter says
        so, and `language` when given); returns the messages that send added to the outbox."""
        text = EXAMPLE_ISSUE.read_text(encoding="utf-8")
        front = f"list: {list_slug}\n" + (f"language: {language}\n" if language else "")
        path = self.world.root / "issues" / f"{slug}.md"
        path.write_text(re.sub(r"^---\n", "---\n" + front, text, count=1), encoding="utf-8")
        before = set(self.world.outbox_files())
        summary = run_send(plan_send(self.world.settings, self.world.store, path, SendOptions()))
        assert summary.failed_permanent == summary.failed_temporary == 0, summary
        return [parse_message(new.read_bytes()) for new in self.world.outbox_files() if new not in before]

    def send_test(self, address: str = TEST_ADDRESS) -> EmailMessage:
        before = set(self.world.outbox_files())
        results = send_test(self.world.plan(), [address])
        assert results[0].error is None, results
        (new,) = set(self.world.outbox_files()) - before
        return parse_message(new.read_bytes())

    def messages(self) -> list[EmailMessage]:
        # Parsing a 90 KB message takes milliseconds; a module's tests ask again and again.
        parsed = self._parsed
        for path in self.world.outbox_files():
            if path not in parsed:
                parsed[path] = parse_message(path.read_bytes())
        return list(parsed.values())

    def message_to(self, address: str) -> EmailMessage:
        found = [m for m in self.messages() if m["To"].addresses[0].addr_spec == address]
        assert len(found) == 1, f"{len(found)} messages to {address}"
        return found[0]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The outbox once it holds `count` messages (mail sent from background tasks)."""
        deadline = time.monotonic() + timeout
        while self.world.outbox_count() < count:
            assert time.monotonic() < deadline, f"{self.world.outbox_count()} messages in the outbox, expected {count}"
            time.sleep(0.02)
        return self.messages()

    # ---- the database ----

    def subscriber(self, email: str) -> dict:
        with self.world.store.read() as conn:
            row = conn.execute(sa.select(subscribers).where(subscribers.c.email == email)).mappings().one()
        return dict(row)

    def status(self, email: str, list_slug: str = "default") -> str | None:
        """The address's suppression, else the standing on `list_slug` (tests/standings.py)."""
        subscriber_id = self.subscriber(email)["id"]
        with self.world.store.read() as conn:
            return standing(conn, subscriber_id, list_slug)

    def events(self, kind: str | None = None, email: str | None = None) -> list[dict]:
        query = sa.select(events).order_by(events.c.id)
        if kind is not None:
            query = query.where(events.c.kind == kind)
        if email is not None:
            query = query.where(events.c.subscriber_id == self.subscriber(email)["id"])
        with self.world.store.read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def wait_for_events(self, kind: str, count: int, email: str | None = None, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(found := self.events(kind, email)) < count:
            assert time.monotonic() < deadline, f"{len(found)} {kind} events, expected {count}"
            time.sleep(0.02)
        return found


@contextlib.contextmanager
def served(world: World, *, before_start: Callable[[Starlette], None] | None = None, tls: Any = None) -> Iterator[Site]:
    """`world`'s app under uvicorn until the block ends (see the module docstring)."""
    context = WebContext.create(world.settings, world.store)
    app = create_app(context)
    if before_start is not None:
        before_start(app)
    in_flight = RequestsInFlight(app)
    with run_asgi_in_thread(in_flight, tls=tls) as url:
        world.configure("newsletter", base_url=url)
        at_url = WebContext.create(world.settings, world.store)
        for field in dataclasses.fields(WebContext):
            setattr(context, field.name, getattr(at_url, field.name))
        yield Site(world, context, app, url, in_flight)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """conftest.py's `database_url`, once per test module: starting a server and sending an
    issue for every test would cost most of the suite's time, so a module's tests share one
    database and server, and each test uses subscribers of its own."""
    with empty_database(request.param, tmp_path_factory.mktemp("db"), prefix="test_web") as url:
        yield url


@pytest.fixture(scope="module")
def site(site_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    world = World(tmp_path_factory.mktemp("world"), site_database_url)
    try:
        with served(world) as running:
            yield running
    finally:
        world.close()


def http_client(**options) -> httpx.Client:
    # Plain http on loopback: verify=False only skips loading the CA bundle, which costs
    # 0.15 s per client and would be most of these tests' time.
    return httpx.Client(verify=False, follow_redirects=False, timeout=10, **options)


# ---- reading messages ---------------------------------------------------------------------


def unsubscribe_url(message: EmailMessage) -> str:
    """The https (here http) URL of List-Unsubscribe, as a mail client picks it (RFC 8058
    section 3.1: the POST goes to the HTTP(S) URI of the header)."""
    header = str(message["List-Unsubscribe"])
    urls = re.findall(r"<([^>]+)>", header)
    return next(url for url in urls if url.startswith(("https://", "http://")))


def html_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def text_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def tracked_links(message: EmailMessage) -> list[str]:
    """The click URLs of the HTML part, in order, each once."""
    found = re.findall(r'href="([^"]*/c/[A-Za-z0-9_-]{44})"', html_part(message))
    return list(dict.fromkeys(found))


def pixel_url(message: EmailMessage) -> str:
    (url,) = re.findall(r'<img src="([^"]*/o/[A-Za-z0-9_-]{44}\.gif)"', html_part(message))
    return url


def form_token(page: str) -> str:
    return re.search(r'name="form_token" value="([^"]+)"', page).group(1)
