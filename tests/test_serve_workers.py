"""`newsletter serve --workers N` (issue 14, item 3): several uvicorn worker processes of
the app on PostgreSQL, each buffering its own hits, all of them written when it stops;
on SQLite more than one worker is refused in one line.

What reaches the app more than once (a mail client loading the pixel again, a reader
pressing unsubscribe twice, SNS delivering an event again) may reach two workers, and is
recorded once all the same: every request below goes on a connection of its own, and the
repeats of one are sent at the same moment, so the workers (which share the listening
socket and take connections as they come) answer them in parallel.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from ses_records import TOPIC, ses_record, sns_notification
from sns_proxy import SnsHostProxy
from sns_signing import make_signing_identity

from newsletter.feedback.hits import REPLAY_SECONDS
from newsletter.store.schema import (
    ACTIVE,
    BOUNCE,
    BOUNCED,
    BY_ONE_CLICK,
    BY_PAGE,
    CLICK,
    COMPLAINED,
    COMPLAINT,
    DELIVERY,
    OPEN,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    events,
    memberships,
    subscribers,
)

pytest.register_assert_rewrite("tests.send_world")
from ports import free_port

from tests.send_world import World, parse_message
from tests.web_site import BROWSER, form_token, pixel_url, tracked_links, unsubscribe_url

pytest_plugins = ["tests.send_world"]


def local(url: str, port: int) -> str:
    """A link of the email (https://news.example.com/...) asked of the server under test."""
    parts = urlsplit(url)
    return f"http://127.0.0.1:{port}{parts.path}"


def start_serving(world: World, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = world.start_newsletter("serve", "--port", str(port), *args, env=env)
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


def stop_serving(process: subprocess.Popen) -> None:
    """SIGINT, as Ctrl-C: every worker writes what it holds and the command exits 0."""
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err


def sent_messages(world: World) -> dict[int, EmailMessage]:
    """The outbox's messages by subscriber id."""
    ids = {email: subscriber_id for subscriber_id, email in world.emails().items()}
    found = {}
    for path in world.outbox_files():
        message = parse_message(path.read_bytes())
        found[ids[message["To"].addresses[0].addr_spec]] = message
    return found


def all_at_once(requests: Sequence[Callable[[httpx.Client], httpx.Response]], copies: int) -> list[list[Any]]:
    """Each request made `copies` times at the same moment, each copy on a connection of its
    own; returns, per request, each copy's (time sent, time answered, response)."""
    answers: list[list[Any]] = [[] for _ in requests]
    lock = threading.Lock()

    def run(index: int, start: threading.Barrier) -> None:
        with httpx.Client(timeout=30) as client:
            start.wait(timeout=60)
            sent = time.time()
            response = requests[index](client)
            answered = time.time()
        with lock:
            answers[index].append((sent, answered, response))

    # The copies of one request are queued next to each other, and the pool's threads a
    # multiple of `copies`, so all copies of a request are running when their barrier waits.
    with ThreadPoolExecutor(max_workers=4 * copies) as pool:
        tasks = []
        for index in range(len(requests)):
            start = threading.Barrier(copies)
            tasks += [pool.submit(run, index, start) for _ in range(copies)]
        for task in tasks:
            task.result()
    return answers


PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"


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


@pytest.mark.only_on("postgresql")
def test_three_workers_store_a_replayed_pixel_or_click_once_per_window_and_every_distinct_hit(world: World):
    world.add_subscribers(40)
    world.send()
    messages = sent_messages(world)
    process, port = start_serving(world, "--workers", "3")
    # Four distinct hits per reader: the pixel in two mail clients (user agents), two links.
    hits: list[tuple[tuple, str, str]] = []
    for subscriber_id, message in messages.items():
        pixel = local(pixel_url(message), port)
        first, second = (local(url, port) for url in tracked_links(message)[:2])
        hits += [
            ((OPEN, subscriber_id, None, BROWSER), pixel, BROWSER),
            ((OPEN, subscriber_id, None, PHONE), pixel, PHONE),
            ((CLICK, subscriber_id, 0, BROWSER), first, BROWSER),
            ((CLICK, subscriber_id, 1, BROWSER), second, BROWSER),
        ]

    def asking(url: str, agent: str) -> Callable[[httpx.Client], httpx.Response]:
        return lambda client: client.get(url, headers={"User-Agent": agent})

    answers = all_at_once([asking(url, agent) for _, url, agent in hits], copies=3)
    stop_serving(process)

    # The pixel answers 200, a tracked link redirects.
    answered = {OPEN: 200, CLICK: 302}
    assert [[response.status_code for _, _, response in copies] for copies in answers] == [
        [answered[key[0]]] * 3 for key, _, _ in hits
    ]
    # The windows (buckets of REPLAY_SECONDS, newsletter.feedback.hits.replay_key) each hit
    # may have been stamped in: the server's clock read between sending and answering.
    windows = {
        key: {int(moment // REPLAY_SECONDS) for sent, answered, _ in copies for moment in (sent, answered)}
        for (key, _, _), copies in zip(hits, answers, strict=True)
    }
    with world.store.read() as conn:
        stored = Counter(
            tuple(row)
            for row in conn.execute(
                sa.select(events.c.kind, events.c.subscriber_id, events.c.link_idx, events.c.user_agent)
            )
        )
    # Every distinct hit is stored, and a replayed one once: twice only if its copies fell
    # either side of a window's edge.
    assert set(stored) == set(windows)
    assert {key: count for key, count in stored.items() if count > len(windows[key])} == {}

    # The stats count the same people as ever: all 40 opened and clicked each link.
    report = world.newsletter("stats", world.issue_row()["slug"], "--json")
    assert report.returncode == 0, report.stderr
    stats = json.loads(report.stdout)
    assert stats["opens"]["people"] + stats["opens"]["machines"] == 40
    assert stats["clicks"]["people"] + stats["clicks"]["machines"] == 40
    clicks = {link["index"]: link["clicks"] for link in stats["links"]}
    for index in (0, 1):
        assert clicks[index] == sum(n for (kind, _, link, _), n in stored.items() if (kind, link) == (CLICK, index))


@pytest.mark.only_on("postgresql")
def test_three_workers_record_each_unsubscribe_once_and_leave_every_reader_as_they_asked(world: World):
    world.add_subscribers(45)
    world.send()
    messages = sent_messages(world)
    ids = sorted(messages)
    one_click, by_page, staying = ids[:15], ids[15:30], ids[30:]
    process, port = start_serving(world, "--workers", "3")

    def pressing_one_click(subscriber_id: int) -> Callable[[httpx.Client], httpx.Response]:
        url = local(unsubscribe_url(messages[subscriber_id]), port)
        # RFC 8058 section 3.2: what the mail client posts.
        return lambda client: client.post(url, data={"List-Unsubscribe": "One-Click"})

    def pressing_the_page_button(subscriber_id: int) -> Callable[[httpx.Client], httpx.Response]:
        url = local(unsubscribe_url(messages[subscriber_id]), port)
        with httpx.Client(timeout=30) as browser:
            page = browser.get(url)
        assert page.status_code == 200
        token = form_token(page.text)
        # The page's cookie is Secure (base_url is https), which httpx would not send over
        # plain http to 127.0.0.1; a browser on the https site would, so it is sent here.
        ((name, cookie),) = ((name, value) for name, value in page.cookies.items() if name.endswith("nl_form"))
        assert cookie == token
        headers = {"Cookie": f"{name}={cookie}"}
        return lambda client: client.post(url, data={"action": "unsubscribe", "form_token": token}, headers=headers)

    # Each reader presses twice (or their mail client retries), both presses at once.
    answers = all_at_once(
        [pressing_one_click(n) for n in one_click] + [pressing_the_page_button(n) for n in by_page], copies=2
    )
    stop_serving(process)

    assert {response.status_code for copies in answers for _, _, response in copies} == {200}
    with world.store.read() as conn:
        recorded = conn.execute(
            sa.select(events.c.subscriber_id, events.c.detail).where(events.c.kind == UNSUBSCRIBE)
        ).all()
        standing = {
            row.subscriber_id: (row.status, row.change_source)
            for row in conn.execute(
                sa.select(memberships.c.subscriber_id, memberships.c.status, memberships.c.change_source)
            )
        }
    assert Counter(subscriber_id for subscriber_id, _ in recorded) == Counter(one_click + by_page)
    assert {subscriber_id: detail["method"] for subscriber_id, detail in recorded} == {
        **dict.fromkeys(one_click, BY_ONE_CLICK),
        **dict.fromkeys(by_page, BY_PAGE),
    }
    assert standing == {
        **{n: (UNSUBSCRIBED, BY_ONE_CLICK) for n in one_click},
        **{n: (UNSUBSCRIBED, BY_PAGE) for n in by_page},
        **{n: (ACTIVE, "test") for n in staying},
    }


@pytest.mark.only_on("postgresql")
def test_three_workers_apply_an_ses_event_delivered_twice_once(world: World, tmp_path):
    world.add_subscribers(40)
    world.send()
    ids = sorted(world.deliveries())
    bounced, complained, soft, delivered = ids[:10], ids[10:20], ids[20:30], ids[30:]
    identity = make_signing_identity()
    world.configure("events", topic_arns=[TOPIC])
    with SnsHostProxy(tmp_path, identity.certificate_pem) as proxy:
        process, port = start_serving(world, "--workers", "3", env=proxy.environment())
        rows = world.deliveries()

        def record(kind: str, subscriber_id: int, **changes: Any) -> dict:
            row = rows[subscriber_id]
            return ses_record(kind, message_id=row.provider_message_id, recipient=row.email, **changes)

        start = datetime.now(UTC) - timedelta(days=2)
        records = (
            [record("Bounce", n) for n in bounced]
            + [record("Complaint", n) for n in complained]
            # Two soft bounces a day apart: an address is suppressed at the third within 30
            # days, so a soft bounce counted twice would suppress these readers.
            + [
                record("Bounce", n, at=start + timedelta(days=day), bounceType="Transient", bounceSubType="MailboxFull")
                for n in soft
                for day in (0, 1)
            ]
            + [record("Delivery", n) for n in delivered]
        )
        url = f"http://127.0.0.1:{port}/hooks/ses"
        headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}

        def posting(body: dict) -> Callable[[httpx.Client], httpx.Response]:
            content = json.dumps(body)
            return lambda client: client.post(url, content=content, headers=headers)

        # Each notification delivered twice at once (SNS retries when an answer is slow).
        bodies = [sns_notification(item, cert_url=proxy.cert_url, key=identity.private_key) for item in records]
        answers = all_at_once([posting(body) for body in bodies], copies=2)
        stop_serving(process)
        # The signing certificate came through the proxy (each worker fetches its own).
        assert proxy.fetches(), proxy.requests

    assert [[response.status_code for _, _, response in copies] for copies in answers] == [[200, 200]] * len(bodies)
    with world.store.read() as conn:
        stored = Counter(tuple(row) for row in conn.execute(sa.select(events.c.kind, events.c.subscriber_id)))
        status = dict(conn.execute(sa.select(subscribers.c.id, subscribers.c.status)).all())
    assert stored == Counter(
        [(BOUNCE, n) for n in bounced]
        + [(COMPLAINT, n) for n in complained]
        + [(BOUNCE, n) for n in soft for _ in (0, 1)]
        + [(DELIVERY, n) for n in delivered]
    )
    assert status == {
        **dict.fromkeys(bounced, BOUNCED),
        **dict.fromkeys(complained, COMPLAINED),
        **dict.fromkeys(soft + delivered, ACTIVE),
    }
