"""The open pixel and tracked links of sent messages, followed over real HTTP; what the
database records, and how people are told from machines."""

from __future__ import annotations

import signal
import struct
import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from ports import free_port

from newsletter.config import DEMO_SECRET, load_settings, replace
from newsletter.errors import ConfigError
from newsletter.feedback import hits
from newsletter.feedback.hits import Hit, HitRecorder
from newsletter.feedback.machines import (
    APPLE_PRIVACY_PROXY_AGENT,
    CLICK_SECONDS_AFTER_SENDING,
    judge,
)
from newsletter.store import Store
from newsletter.store.ledger import issue_links
from newsletter.store.schema import CLICK, OPEN, deliveries, events, links, utcnow
from newsletter.tokens import Purpose
from newsletter.web.refusals import refuse_unsafe_settings
from newsletter.web.tracking import REPLAY_SECONDS

pytest.register_assert_rewrite("tests.web_site")
from tests.send_world import World, parse_message
from tests.web_site import (
    BROWSER,
    Site,
    html_part,
    http_client,
    pixel_url,
    served,
    tracked_links,
)

pytest_plugins = ["tests.web_site"]


@pytest.fixture(scope="module")
def sent(site: Site) -> Site:
    site.world.add_subscribers(20)
    site.send()
    return site


def reader(n: int) -> str:
    return f"reader{n}@example.org"


def sent_long_ago(site: Site, email: str) -> None:
    """As if the message had left an hour ago, so a click now is a person's pace."""
    subscriber_id = site.subscriber(email)["id"]
    with site.world.store.begin() as conn:
        conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.subscriber_id == subscriber_id)
            .values(sent_at=utcnow() - timedelta(hours=1))
        )


def gif_size(body: bytes) -> tuple[int, int]:
    # GIF89a: 6 bytes of signature, then the logical screen width and height, little-endian.
    assert body[:6] == b"GIF89a"
    return struct.unpack("<HH", body[6:10])


# ---- the pixel --------------------------------------------------------------------------


def test_the_pixel_of_a_sent_message_returns_a_gif_and_records_the_open(sent: Site):
    url = pixel_url(sent.message_to(reader(0)))
    with sent.client() as mail_client:
        answer = mail_client.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    assert gif_size(answer.content) == (1, 1)
    assert "no-store" in answer.headers["cache-control"]
    assert answer.headers["pragma"] == "no-cache"
    sent.flush()
    (event,) = sent.events(OPEN, reader(0))
    assert event["issue_id"] == sent.world.issue_row()["id"]
    assert event["delivery_id"] is not None
    assert event["user_agent"] == BROWSER
    assert event["machine"] is False
    assert utcnow() - event["occurred_at"] < timedelta(minutes=1)


def test_replays_of_one_pixel_within_a_minute_are_one_open(sent: Site):
    url = pixel_url(sent.message_to(reader(1)))
    with sent.client() as mail_client:
        for _ in range(30):
            assert mail_client.get(url).status_code == 200
            assert mail_client.head(url).status_code == 200
    sent.flush()
    assert len(sent.events(OPEN, reader(1))) == 1


def test_opens_further_apart_than_the_replay_window_are_each_kept_for_the_timeline(sent: Site):
    url = pixel_url(sent.message_to(reader(15)))
    window = sent.app.state.recent_hits
    # The window, shortened for this test only: three opens a minute apart, in a second.
    window.seconds = 0.2
    try:
        with sent.client() as mail_client:
            for _ in range(3):
                mail_client.get(url)
                time.sleep(0.3)
    finally:
        window.seconds = REPLAY_SECONDS
    assert len(sent.wait_for_events(OPEN, 3, reader(15))) == 3


def test_replays_of_one_click_within_a_minute_are_one_click_and_each_redirects(sent: Site):
    links = tracked_links(sent.message_to(reader(16)))
    sent_long_ago(sent, reader(16))
    with sent.client() as browser:
        for _ in range(20):
            assert browser.get(links[0]).status_code == 302
        assert browser.get(links[1]).status_code == 302
    sent.flush()
    clicks = sent.events(CLICK, reader(16))
    assert sorted(event["link_idx"] for event in clicks) == [0, 1]


@pytest.mark.parametrize("bad", ["tampered", "garbage", "another purpose"])
def test_an_invalid_pixel_token_still_gets_the_gif_and_records_nothing(sent: Site, bad: str):
    url = pixel_url(sent.message_to(reader(2)))
    token = url.rsplit("/", 1)[1][:-4]
    if bad == "tampered":
        token = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    elif bad == "garbage":
        token = "x"
    else:
        token = sent.context.tokens.sign(
            Purpose.UNSUBSCRIBE, sent.world.issue_row()["id"], sent.subscriber(reader(2))["id"]
        )
    before = len(sent.events())
    with sent.client() as mail_client:
        answer = mail_client.get(f"/o/{token}.gif")
    assert answer.status_code == 200
    assert gif_size(answer.content) == (1, 1)
    sent.flush()
    assert len(sent.events()) == before


def test_apple_mail_privacy_proxy_opens_are_marked_machine(sent: Site):
    url = pixel_url(sent.message_to(reader(3)))
    with sent.client(headers={"User-Agent": APPLE_PRIVACY_PROXY_AGENT}) as proxy:
        proxy.get(url)
    sent.flush()
    (event,) = sent.events(OPEN, reader(3))
    assert event["machine"] is True
    assert event["detail"] == {"machine": "Apple Mail Privacy Protection proxy"}
    assert event["user_agent"] == "Mozilla/5.0"


def test_a_head_request_on_the_pixel_is_a_machine(sent: Site):
    url = pixel_url(sent.message_to(reader(4)))
    with sent.client() as checker:
        assert checker.head(url).status_code == 200
    sent.flush()
    (event,) = sent.events(OPEN, reader(4))
    assert event["machine"] is True
    assert event["detail"]["method"] == "HEAD"


def test_test_send_opens_and_clicks_are_not_recorded(sent: Site):
    message = sent.send_test()
    before = len(sent.events())
    with sent.client() as editor:
        assert editor.get(pixel_url(message)).status_code == 200
        click = editor.get(tracked_links(message)[0])
    assert click.status_code == 302
    sent.flush()
    assert len(sent.events()) == before


# ---- clicks -----------------------------------------------------------------------------


def test_a_tracked_link_redirects_to_the_original_url_and_records_the_click(sent: Site):
    message = sent.message_to(reader(5))
    links = tracked_links(message)
    originals = issue_links_of(sent)
    assert len(links) == len(originals) > 3
    sent_long_ago(sent, reader(5))
    with sent.client() as browser:
        answer = browser.get(links[2])
    assert answer.status_code == 302
    assert answer.headers["location"] == originals[2]
    # The original URL is in the text part, which carries no tracking.
    assert originals[2] in message.get_body(preferencelist=("plain",)).get_content()
    sent.flush()
    (event,) = sent.events(CLICK, reader(5))
    assert event["link_idx"] == 2
    assert event["machine"] is False
    assert event["user_agent"] == BROWSER
    assert event["delivery_id"] is not None


def issue_links_of(site: Site) -> list[str]:
    with site.world.store.read() as conn:
        return issue_links(conn, site.world.issue_row()["id"])


def test_a_click_seconds_after_sending_is_a_scanner(sent: Site):
    with sent.world.store.begin() as conn:
        conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.subscriber_id == sent.subscriber(reader(6))["id"])
            .values(sent_at=utcnow())
        )
    with sent.client() as gateway:
        answer = gateway.get(tracked_links(sent.message_to(reader(6)))[0])
    assert answer.status_code == 302
    sent.flush()
    (event,) = sent.events(CLICK, reader(6))
    assert event["machine"] is True
    assert event["detail"]["machine"].startswith("clicked ")


@pytest.mark.parametrize(
    "agent",
    [
        "Barracuda Sentinel (EE)",
        "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
        "python-requests/2.32.3",
        "",
    ],
)
def test_clicks_by_scanner_user_agents_are_marked_machine(sent: Site, agent: str):
    sent_long_ago(sent, reader(7))
    before = len(sent.events(CLICK, reader(7)))
    with http_client(headers={"User-Agent": agent}) as scanner:
        assert scanner.get(tracked_links(sent.message_to(reader(7)))[1]).status_code == 302
    sent.flush()
    events = sent.events(CLICK, reader(7))
    assert len(events) == before + 1
    assert events[-1]["machine"] is True
    assert events[-1]["detail"]["machine"]


@pytest.mark.parametrize("bad", ["tampered", "link the issue does not have", "open token"])
def test_an_invalid_click_token_gets_the_404_page_and_never_a_redirect(sent: Site, bad: str):
    link = tracked_links(sent.message_to(reader(8)))[0]
    token = link.rsplit("/", 1)[1]
    issue_id, subscriber_id = sent.world.issue_row()["id"], sent.subscriber(reader(8))["id"]
    if bad == "tampered":
        # A character of the MAC: the link beside it is not signed, it only picks among the
        # issue's stored links (the next case).
        token = token[:30] + ("A" if token[30] != "A" else "B") + token[31:]
    elif bad == "link the issue does not have":
        token = sent.context.tokens.sign(Purpose.CLICK, issue_id, subscriber_id, 999)
    else:
        token = sent.context.tokens.sign(Purpose.OPEN, issue_id, subscriber_id)
    with sent.client() as browser:
        answer = browser.get(f"/c/{token}")
    assert answer.status_code == 404
    assert "location" not in answer.headers
    assert "找不到页面" in answer.text
    sent.flush()
    assert sent.events(CLICK, reader(8)) == []


def test_a_url_in_the_request_is_never_followed(sent: Site):
    link = tracked_links(sent.message_to(reader(9)))[0]
    with sent.client() as browser:
        answer = browser.get(link, params={"url": "https://attacker.example/", "next": "https://attacker.example/"})
        sneaky = browser.get(link + "/https://attacker.example/")
    assert answer.headers["location"] == issue_links_of(sent)[0]
    assert sneaky.status_code == 404


STORED_NON_WEB_LINKS = [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "mailto:editor@example.com",
    "ftp://files.example.net/a",
    "//attacker.example.net/scheme-relative",
    "file:///etc/passwd",
]


def test_a_stored_link_that_is_not_http_or_https_is_never_followed(sent: Site):
    # Rendering tracks only web links, so such a row would be a bug or a tampered
    # database; the redirect must not turn it into a javascript:/data: navigation.
    issue_id, subscriber_id = sent.world.issue_row()["id"], sent.subscriber(reader(11))["id"]
    first = 900
    with sent.world.store.begin() as conn:
        conn.execute(
            sa.insert(links),
            [
                {"issue_id": issue_id, "idx": first + n, "url": url}
                for n, url in enumerate([*STORED_NON_WEB_LINKS, "https://news.example.com/allowed"])
            ],
        )
    sent_long_ago(sent, reader(11))
    with sent.client() as browser:
        for n, url in enumerate(STORED_NON_WEB_LINKS):
            token = sent.context.tokens.sign(Purpose.CLICK, issue_id, subscriber_id, first + n)
            answer = browser.get(f"/c/{token}")
            assert answer.status_code == 404, url
            assert "location" not in answer.headers, url
        # The same way to a web link does redirect: the refusals above are about the scheme.
        token = sent.context.tokens.sign(Purpose.CLICK, issue_id, subscriber_id, first + len(STORED_NON_WEB_LINKS))
        answer = browser.get(f"/c/{token}")
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://news.example.com/allowed"
    sent.flush()
    assert [event["link_idx"] for event in sent.events(CLICK, reader(11))] == [first + len(STORED_NON_WEB_LINKS)]


def test_the_html_part_carries_the_pixel_and_no_original_link(sent: Site):
    html = html_part(sent.message_to(reader(10)))
    for original in issue_links_of(sent):
        assert f'href="{original}"' not in html


# ---- shutdown ---------------------------------------------------------------------------


def test_hits_still_buffered_at_shutdown_are_written_before_the_server_stops(database_url: str, tmp_path):
    world = World(tmp_path, database_url)
    try:
        world.add_subscribers(2, prefix="late")

        def never_flush_by_itself(app) -> None:
            app.state.recorder.flush_seconds = 3600
            # Every request an open of its own, to fill the buffer.
            app.state.recent_hits.seconds = 0

        with served(world, before_start=never_flush_by_itself) as running:
            running.send()
            url = pixel_url(running.message_to("late0@example.org"))
            with running.client() as mail_client:
                for _ in range(25):
                    mail_client.get(url)
            assert running.events(OPEN) == []  # still in memory
            recorder = running.app.state.recorder
        # The server has stopped: its lifespan shutdown wrote the buffer.
        assert recorder.pending == 0
        assert len(running.events(OPEN)) == 25
    finally:
        world.close()


def test_a_batch_the_database_refused_is_kept_and_written_once_it_is_back(
    database_url: str, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(hits, "RETRY_SECONDS", 0.05)
    world = World(tmp_path, database_url)
    recorder = HitRecorder(world.store, flush_seconds=0.02)
    try:
        world.add_subscribers(1)
        world.send()
        issue_id, (subscriber_id,) = world.issue_row()["id"], world.emails()
        # A real failure of the database write: the table is not there for a while.
        with world.store.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE events RENAME TO events_away")
        # Five opens a replay window apart, so that each is one of its own.
        for n in range(5):
            recorder.add(Hit(OPEN, issue_id, subscriber_id, time.time() - n * REPLAY_SECONDS, BROWSER))
        # Two failed tries of the same five hits: the batch was kept for the second one.
        deadline = time.monotonic() + 10
        while sum("could not record 5 tracking hits" in r.getMessage() for r in caplog.records) < 2:
            assert time.monotonic() < deadline, f"the writer tried the batch {len(caplog.records)} times, expected 2"
            time.sleep(0.01)
        assert recorder.recorded == 0
        with world.store.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE events_away RENAME TO events")
        # The writer thread retries by itself.
        while recorder.recorded < 5:
            assert time.monotonic() < deadline + 10, f"{recorder.pending} hits still waiting"
            time.sleep(0.01)
        assert recorder.pending == 0
        with world.store.read() as conn:
            stored = conn.execute(
                sa.select(events.c.kind, events.c.subscriber_id).where(events.c.issue_id == issue_id)
            ).all()
        assert stored == [(OPEN, subscriber_id)] * 5
    finally:
        recorder.stop()
        world.close()


def test_the_same_hit_written_by_two_processes_is_stored_once(database_url: str, tmp_path):
    """Two recorders on their own connections to one database, as two `serve --workers`
    processes are: a repeat each of them was given is one row (its replay key), while the
    reader's other user agent and the next window are rows of their own."""
    world = World(tmp_path, database_url)
    other_store = Store.open(database_url)
    first, second = HitRecorder(world.store), HitRecorder(other_store)
    try:
        world.add_subscribers(1)
        world.send()
        issue_id, (subscriber_id,) = world.issue_row()["id"], world.emails()
        # Inside one bucket of the window (replay_key), then the next one.
        start = time.time() // REPLAY_SECONDS * REPLAY_SECONDS
        first.add(Hit(OPEN, issue_id, subscriber_id, start + 1, BROWSER))
        second.add(Hit(OPEN, issue_id, subscriber_id, start + 2, BROWSER))
        second.add(Hit(OPEN, issue_id, subscriber_id, start + 3, "Phone Mail/1.0"))
        first.add(Hit(OPEN, issue_id, subscriber_id, start + REPLAY_SECONDS + 1, BROWSER))
        second.add(Hit(CLICK, issue_id, subscriber_id, start + 4, BROWSER, link_idx=0))
        first.add(Hit(CLICK, issue_id, subscriber_id, start + 5, BROWSER, link_idx=0))
        first.flush()
        second.flush()
        with world.store.read() as conn:
            stored = conn.execute(
                sa.select(events.c.kind, events.c.user_agent, events.c.occurred_at).order_by(events.c.occurred_at)
            ).all()
        # Which of a repeat's two is kept depends on which writer came first; one is.
        windows = sorted(
            (kind, agent, (moment.timestamp() - start) // REPLAY_SECONDS) for kind, agent, moment in stored
        )
        assert windows == [(CLICK, BROWSER, 0), (OPEN, BROWSER, 0), (OPEN, BROWSER, 1), (OPEN, "Phone Mail/1.0", 0)]
        assert first.recorded + second.recorded == 4
    finally:
        first.stop()
        second.stop()
        other_store.close()
        world.close()


# ---- the judgement itself (pure) --------------------------------------------------------


def test_judge_tells_people_from_machines():
    now = utcnow()
    person = judge(kind=CLICK, user_agent=BROWSER, occurred_at=now, sent_at=now - timedelta(hours=2))
    assert person.machine is False and person.detail() is None
    quick = judge(kind=CLICK, user_agent=BROWSER, occurred_at=now, sent_at=now - timedelta(seconds=3))
    assert quick.machine and "3.0 s" in quick.reason
    later = judge(
        kind=CLICK,
        user_agent=BROWSER,
        occurred_at=now,
        sent_at=now - timedelta(seconds=CLICK_SECONDS_AFTER_SENDING + 1),
    )
    assert not later.machine
    # An open seconds after sending is a person reading at once; only clicks are timed.
    assert not judge(kind=OPEN, user_agent=BROWSER, occurred_at=now, sent_at=now).machine
    # Outlook shows images to its reader as ms-office; it never clicks by itself.
    outlook = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"
    assert not judge(kind=OPEN, user_agent=outlook).machine
    assert judge(kind=CLICK, user_agent=outlook).machine
    gmail = judge(
        kind=OPEN,
        user_agent="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    )
    assert not gmail.machine and gmail.detail() == {"proxy": "gmail"}
    assert judge(kind=OPEN, user_agent="Mozilla/5.0").machine
    # Apple Mail itself (not its proxy) is a person.
    apple_mail = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    )
    assert not judge(kind=OPEN, user_agent=apple_mail).machine


# ---- the command --------------------------------------------------------------------------


def test_newsletter_serve_writes_buffered_opens_when_stopped_with_ctrl_c(tmp_path):
    world = World(tmp_path, f"sqlite:///{tmp_path / 'newsletter.db'}")
    try:
        port = free_port()
        world.configure("newsletter", base_url=f"http://127.0.0.1:{port}")
        world.add_subscribers(5)
        world.send()
        server = world.start_newsletter("serve", "--port", str(port))
        try:
            urls = [pixel_url(parse_message(path.read_bytes())) for path in world.outbox_files()]
            deadline = time.monotonic() + 30
            while True:
                try:
                    with http_client(headers={"User-Agent": BROWSER}) as mail_client:
                        for url in urls:
                            assert mail_client.get(url).status_code == 200
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
                    time.sleep(0.1)
        finally:
            server.send_signal(signal.SIGINT)
            _, stderr = server.communicate(timeout=30)
        assert server.returncode == 0, stderr
        with world.store.read() as conn:
            stored = conn.execute(
                sa.select(sa.func.count()).select_from(events).where(events.c.kind == OPEN)
            ).scalar_one()
        assert stored == 5
    finally:
        world.close()


def test_newsletter_serve_refuses_the_demo_secret_beyond_loopback():
    demo = replace(
        load_settings(environ={"NEWSLETTER_SECRET": DEMO_SECRET}), newsletter={"base_url": "https://news.example.com"}
    )
    with pytest.raises(ConfigError, match="demo secret"):
        refuse_unsafe_settings(demo, listen_host="0.0.0.0")
    local = replace(demo, newsletter={"base_url": "http://127.0.0.1:8000"})
    refuse_unsafe_settings(local, listen_host="127.0.0.1")  # the local outbox demo still works
    with pytest.raises(ConfigError):
        refuse_unsafe_settings(local, listen_host="0.0.0.0")
