"""Bounded requests: what a client can make the server hold or write, over real HTTP.

`newsletter serve` as a process (its own uvicorn settings), and the app under uvicorn
(tests/web_site.py) for what the app itself refuses."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from ports import free_port

from newsletter.store import Store
from newsletter.store.database import create_engine
from newsletter.tokens import Purpose, Tokens
from newsletter.web.app import create_app
from newsletter.web.bounded_http import HEAD_SECONDS
from newsletter.web.context import WebContext
from tests.send_world import EXAMPLE_ISSUE, World
from tests.web_site import BROWSER, Site, form_token, http_client, unsubscribe_url

pytest_plugins = ["tests.web_site", "http_server"]


@pytest.fixture(scope="module")
def serving(tmp_path_factory) -> Iterator[tuple[World, int]]:
    """`newsletter serve` running over a world with a sent issue."""
    root = tmp_path_factory.mktemp("serve")
    world = World(root, f"sqlite:///{root / 'newsletter.db'}")
    port = free_port()
    world.configure("newsletter", base_url=f"http://127.0.0.1:{port}")
    server = world.start_newsletter("serve", "--port", str(port))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.communicate()
                time.sleep(0.05)
        yield world, port
    finally:
        server.terminate()
        server.communicate(timeout=30)
        world.close()


def read_until_closed(connection: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long it took;
    fails if it is still open after `timeout` seconds."""
    started = time.monotonic()
    connection.settimeout(timeout)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except TimeoutError:
        pytest.fail(f"the server held the connection open for {timeout} s")
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def test_a_request_head_over_16_kib_is_refused(serving):
    _, port = serving
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /feed.xml HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 64 * 1024 + b"\r\n\r\n")
        answer, _ = read_until_closed(connection, 10)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    # And the server still answers.
    assert httpx.get(f"http://127.0.0.1:{port}/feed.xml", timeout=10).status_code == 200


def test_a_request_head_that_trickles_in_is_cut_off(serving):
    _, port = serving
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /feed.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # One more header byte every second: each resets no timer of ours.
        started = time.monotonic()
        try:
            while time.monotonic() - started < HEAD_SECONDS + 5:
                connection.sendall(b"X")
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        read_until_closed(connection, 5)
    assert time.monotonic() - started < HEAD_SECONDS + 5


def test_a_keep_alive_connection_must_send_its_next_head_in_time_too(serving):
    _, port = serving
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /feed.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.5)
        connection.sendall(b"GET /feed.xml HTTP/1.1\r\n")
        started = time.monotonic()
        read_until_closed(connection, HEAD_SECONDS + 5)
    assert time.monotonic() - started < HEAD_SECONDS + 5


# ---- the app's own limits -----------------------------------------------------------------

FIELDS = 60


def many_fields() -> dict[str, str]:
    return {f"field{number}": "x" for number in range(FIELDS)}


@pytest.fixture(scope="module")
def sent(site: Site) -> Site:
    site.world.add_subscribers(2, prefix="limits")
    site.send()
    return site


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_form_with_more_than_50_fields_is_a_bad_request(sent: Site, encoding: str):
    url = unsubscribe_url(sent.message_to("limits0@example.org"))
    with sent.client() as browser:
        page = browser.get("/subscribe")
        fields = {"form_token": form_token(page.text), "email": "new@example.org", **many_fields()}
        for target in ("/subscribe", url):
            if encoding == "urlencoded":
                answer = browser.post(target, data=fields)
            else:
                answer = browser.post(target, files={name: (None, value) for name, value in fields.items()})
            assert answer.status_code == 400, (target, answer.status_code)
    assert sent.status("limits0@example.org") == "active"


def test_log_lines_carry_no_token_and_no_line_break_from_the_request(
    tmp_path, serve_asgi, http_client_for_logs, caplog
):
    """The database is unreachable, so the one-click POST fails and is logged."""
    broken = Store(create_engine(f"sqlite:///{tmp_path / 'missing' / 'newsletter.db'}"))
    world = World(tmp_path, f"sqlite:///{tmp_path / 'ok.db'}")
    try:
        app = create_app(WebContext.create(world.settings, broken))
        base_url = serve_asgi(app)
        token = Tokens(world.settings.newsletter.secret).sign(Purpose.UNSUBSCRIBE, 1, 1)
        with caplog.at_level(logging.INFO):
            answer = http_client_for_logs.post(
                f"{base_url}/u/{token}", data={"List-Unsubscribe": "One-Click"}, headers={"User-Agent": BROWSER}
            )
            assert answer.status_code == 500
        lines = [record.getMessage() for record in caplog.records if record.name.startswith("newsletter")]
        assert any("/u/" in line for line in lines), lines
        assert all(token not in line for line in lines), lines
    finally:
        world.close()


@pytest.fixture
def http_client_for_logs() -> Iterator[httpx.Client]:
    with http_client() as client:
        yield client


def test_the_preview_command_refuses_a_request_head_over_16_kib(tmp_path):
    issue = tmp_path / EXAMPLE_ISSUE.name
    issue.write_bytes(EXAMPLE_ISSUE.read_bytes())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "preview", str(issue), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, process.communicate()
                time.sleep(0.05)
        with connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 64 * 1024 + b"\r\n\r\n")
            answer, _ = read_until_closed(connection, 10)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    finally:
        process.terminate()
        process.communicate(timeout=10)
