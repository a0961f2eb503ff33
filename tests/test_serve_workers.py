"""`newsletter serve --workers N` (issue 14, item 3): several uvicorn worker processes of
the app on PostgreSQL, each buffering its own hits, all of them written when it stops;
on SQLite more than one worker is refused in one line."""

from __future__ import annotations

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from newsletter.store.schema import CLICK, OPEN, events

pytest.register_assert_rewrite("tests.send_world")
from ports import free_port

from tests.send_world import World, parse_message
from tests.web_site import pixel_url, tracked_links

pytest_plugins = ["tests.send_world"]


def local(url: str, port: int) -> str:
    """A link of the email (https://news.example.com/...) asked of the server under test."""
    parts = urlsplit(url)
    return f"http://127.0.0.1:{port}{parts.path}"


def start_serving(world: World, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = world.start_newsletter("serve", "--port", str(port), *args)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/feed.xml", timeout=2).status_code == 200:
                return process, port
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not start")


@pytest.mark.only_on("sqlite")
def test_more_than_one_worker_on_sqlite_is_refused_in_one_line(world: World):
    refused = world.newsletter("serve", "--port", str(free_port()), "--workers", "2", timeout=60)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers 2 needs PostgreSQL" in lines[0], refused.stderr


# Several workers need PostgreSQL (refused on SQLite: the test above).
@pytest.mark.only_on("postgresql")
def test_three_workers_record_every_hit_answered_once_even_when_stopped_mid_burst(world: World):
    world.add_subscribers(150)
    world.send()
    messages = [parse_message(path.read_bytes()) for path in world.outbox_files()]
    process, port = start_serving(world, "--workers", "3")
    urls = [local(pixel_url(m), port) for m in messages] + [local(tracked_links(m)[0], port) for m in messages]

    def hit(url: str) -> bool:
        # One connection per client, several clients at once: uvicorn's workers share the
        # listening socket, so the requests spread over them.
        with httpx.Client(timeout=30) as client:
            answer = client.get(url, follow_redirects=False)
        return answer.status_code in (200, 302, 303, 307)

    with ThreadPoolExecutor(max_workers=12) as pool:
        answered = sum(pool.map(hit, urls))
    # At once: the workers still hold hits in their buffers (written every 0.25 s).
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err

    assert answered == len(urls) == 300
    with world.store.read() as conn:
        kinds = dict(conn.execute(sa.select(events.c.kind, sa.func.count()).group_by(events.c.kind)).all())
    assert kinds.get(OPEN, 0) == 150 and kinds.get(CLICK, 0) == 150, kinds
