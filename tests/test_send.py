"""The campaign (newsletter/send.py) in-process, over the outbox, aiosmtpd and moto's SES.

Each test sends the example issue to subscribers in a fresh database and reads back what
reached the server (files, SMTP transactions, SES requests) and what the ledger says.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletter.audience.subscribers import add_subscriber, unsubscribe
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.sending import campaign as send_module
from newsletter.sending import pacing
from newsletter.sending.pacing import Pacer
from newsletter.store import Store
from newsletter.store.schema import deliveries, subscribers
from newsletter.tokens import Links, Tokens

pytest.register_assert_rewrite("tests.send_world", "tests.transport_servers")
from tests.send_world import SENDER, World, parse_message, recipients_of
from tests.transport_servers import LocalSes, LocalSmtp

pytest_plugins = ["tests.transport_servers", "tests.send_world"]


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after milliseconds instead of seconds: the schedule is configuration."""
    monkeypatch.setattr(pacing, "BASE_BACKOFF", 0.005)
    monkeypatch.setattr(pacing, "MAX_BACKOFF", 0.02)


def factory_for(world: World) -> MessageFactory:
    """The message factory of the issue as stored, as the campaign builds it."""
    plan = world.plan()
    return MessageFactory(
        plan.settings,
        plan.rendered,
        issue_id=plan.stored.id,
        issue_uid=plan.stored.uid,
        list_slug=plan.list_slug,
        links=Links(plan.settings.base_url, Tokens(plan.settings.newsletter.secret)),
    )


def with_date_of(received: bytes, built: bytes) -> bytes:
    """`built` with the Date header of `received`: the only header that depends on when."""
    date = re.search(rb"^Date: [^\r\n]*", received, re.MULTILINE).group(0)
    return re.sub(rb"^Date: [^\r\n]*", lambda _: date, built, count=1, flags=re.MULTILINE)


def interrupt_after(sent: int):
    """A progress callback that presses Ctrl-C once `sent` messages are out: the campaign's
    main thread gets KeyboardInterrupt there, as from the terminal."""
    pressed = []

    def progress(summary, total):
        if summary.sent >= sent and not pressed:
            pressed.append(summary.sent)
            raise KeyboardInterrupt

    return progress


def one_each(counted: dict[str, int], expected: set[str]) -> None:
    assert set(counted) == expected, set(counted) ^ expected
    doubles = {address: n for address, n in counted.items() if n != 1}
    assert not doubles, doubles


# ---------------------------------------------------------------------------------------
# Outbox: audience, ledger, resume
# ---------------------------------------------------------------------------------------


def test_send_reaches_every_active_member_of_the_list_exactly_once(world: World):
    active = world.add_subscribers(30)
    world.add_subscribers(3, prefix="gone", status="unsubscribed")
    world.add_subscribers(2, prefix="bounced", status="bounced")
    world.add_subscribers(2, prefix="pending", status="unconfirmed")
    world.add_subscribers(5, prefix="other", list_slug="other-list")

    plan = world.plan()
    assert plan.audience == 30 and not plan.snapshotted
    summary = send_module.run_send(plan)

    assert (summary.sent, summary.failed_permanent, summary.failed_temporary, summary.skipped) == (30, 0, 0, 0)
    assert summary.complete and summary.uncertain == 0
    one_each(recipients_of(world.outbox_headers()), {f"reader{n}@example.org" for n in range(30)})
    rows = world.deliveries()
    assert sorted(rows) == active
    assert {row.status for row in rows.values()} == {"sent"}
    assert all(row.attempts == 1 and row.provider_message_id for row in rows.values())
    assert world.issue_row()["completed_at"] is not None


def test_outbox_holds_exactly_the_bytes_that_were_built(world: World):
    world.add_subscribers(5, names=["王小明", "", 'Jane "JJ" Doe', "Zoë", "长" * 60])
    world.send()
    factory = factory_for(world)
    emails = world.emails()
    for path in world.outbox_files():
        received = path.read_bytes()
        message = parse_message(received)
        row = next(r for r in world.deliveries().values() if r.message_id == message["Message-ID"])
        name = {0: "王小明", 1: "", 2: 'Jane "JJ" Doe', 3: "Zoë", 4: "长" * 60}[row.subscriber_id - 1]
        built = factory.build(Recipient(row.subscriber_id, emails[row.subscriber_id], name), message_id=row.message_id)
        assert received == with_date_of(received, built.data)


def test_an_issue_sent_completely_is_not_sent_again(world: World):
    world.add_subscribers(4)
    world.send()
    before = sorted(path.name for path in world.outbox_files())

    plan = world.plan()
    assert plan.complete and plan.audience == 0
    summary = send_module.run_send(plan)
    assert summary.sent == 0 and summary.complete
    assert sorted(path.name for path in world.outbox_files()) == before


class CommittedStatusTransport:
    """A transport that, inside `send()`, reads the recipient's ledger row through a store of
    its own.  Another connection sees only what is committed: the state a crash at that very
    moment would leave behind."""

    def __init__(self, database_url: str) -> None:
        self.store = Store.open(database_url, upgrade=False)
        self.seen: dict[str, str] = {}
        self.handed = threading.Event()  # set by every send, after its read
        self._lock = threading.Lock()

    def send(self, message, *, sender, recipient, tags={}):  # noqa: B006 - the Transport signature
        query = (
            sa.select(deliveries.c.status)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(subscribers.c.email == recipient)
        )
        with self.store.read() as conn:
            status = conn.execute(query).scalar_one()
        with self._lock:
            self.seen[recipient] = status
        self.handed.set()
        return f"committed-check-{recipient}"

    def quota(self):
        return None

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextmanager
def claims_held_open(store: Store, transport: CommittedStatusTransport, hold: float = 0.5) -> Iterator[list[bool]]:
    """Hold the commit of the first transaction that marks rows `sending` until the transport
    has been handed a message, or `hold` seconds.  The workers are idle then, so a campaign
    that hands claimed rows to them before that commit is caught every time (the read inside
    `send()` sees `queued`), not only when a worker happens to win the race with the commit.
    Only the first claim is held: a correct campaign sends nothing meanwhile, so it costs
    `hold` once."""
    held: list[bool] = []

    def after_execute(conn, cursor, statement, parameters, context, executemany):
        statement_object = getattr(context.compiled, "statement", None)
        if (
            context.isupdate
            and getattr(statement_object, "table", None) is deliveries
            and any(p.get("status") == "sending" for p in context.compiled_parameters)
            and not held
        ):
            held.append(True)
            conn.info["claiming"] = True

    def before_commit(conn):
        if conn.info.pop("claiming", False):
            transport.handed.wait(hold)

    def on_rollback(conn):
        conn.info.pop("claiming", None)

    listeners = [("after_cursor_execute", after_execute), ("commit", before_commit), ("rollback", on_rollback)]
    for name, listener in listeners:
        sa.event.listen(store.engine, name, listener)
    try:
        yield held
    finally:
        for name, listener in listeners:
            sa.event.remove(store.engine, name, listener)


def test_every_row_is_committed_sending_before_its_message_is_handed_to_the_transport(world: World):
    world.add_subscribers(20)
    with CommittedStatusTransport(world.database_url) as transport, claims_held_open(world.store, transport) as held:
        summary = world.send(transport=transport, workers=2)
    assert held, "no claim was seen: claims_held_open no longer recognises the ledger's claim"
    assert summary.sent == 20
    assert transport.seen == {email: "sending" for email in world.emails().values()}
    assert world.statuses() == {"sent": 20}


def test_an_unsubscribe_that_lands_mid_send_is_honoured(world: World):
    count = send_module.OUTBOX_CLAIM_WINDOW * 3
    ids = world.add_subscribers(count)
    late = ids[-1]
    unsubscribed = []

    def progress(summary, total):
        # The first rows are out; the last one is still queued, beyond the claim window.
        if summary.sent and not unsubscribed:
            unsubscribe(world.store, subscriber_id=late)
            unsubscribed.append(late)

    summary = world.send(progress=progress)

    assert unsubscribed and summary.sent == count - 1 and summary.skipped == 1
    rows = world.deliveries()
    assert (rows[late].status, rows[late].failure) == ("skipped", "unsubscribed")
    assert f"reader{count - 1}@example.org" not in recipients_of(world.outbox_headers())
    assert summary.complete


def test_ctrl_c_finishes_in_flight_messages_and_leaves_the_rest_queued(world: World):
    # More than one claim window: however far the worker gets before the Ctrl-C is seen,
    # rows beyond the first claim are still queued.
    count = send_module.OUTBOX_CLAIM_WINDOW + 40
    world.add_subscribers(count)
    summary = world.send(progress=interrupt_after(5))

    assert summary.stopped == "interrupted" and not summary.complete
    counts = summary.ledger
    assert counts.sending == 0, "nothing may be left in flight after a clean stop"
    assert counts.sent == summary.sent >= 5 and counts.queued == count - counts.sent
    assert len(world.outbox_files()) == counts.sent

    resumed = world.send()
    assert resumed.sent == count - counts.sent and resumed.complete
    one_each(recipients_of(world.outbox_headers()), {f"reader{n}@example.org" for n in range(count)})


def test_a_subscriber_added_after_the_send_began_is_not_added_to_it(world: World):
    world.add_subscribers(10)
    world.send(progress=interrupt_after(2))
    add_subscriber(world.store, "latecomer@example.org")

    resumed = world.send()
    assert resumed.complete
    assert "latecomer@example.org" not in recipients_of(world.outbox_headers())
    assert len(world.deliveries()) == 10


def test_a_changed_issue_file_resumes_with_the_stored_version(world: World):
    world.add_subscribers(20)
    world.send(progress=interrupt_after(3))
    original = world.issue_file.read_text(encoding="utf-8")
    world.issue_file.write_text(
        original.replace("端侧大模型走进千元机", "改过的标题").replace(
            "https://news.example.com/2026/11/edge-llm-phones", "https://changed.example.com/new-link"
        ),
        encoding="utf-8",
    )

    plan = world.plan()
    assert any("changed since this issue's send began" in note for note in plan.notes)
    send_module.run_send(plan)

    bodies = set()
    for path in world.outbox_files():
        message = parse_message(path.read_bytes())
        html = message.get_body(("html",)).get_content()
        assert "改过的标题" not in html and "端侧大模型走进千元机" in html
        # Personal parts aside, every subscriber got the same issue.
        bodies.add(re.sub(r"/[uco]/[A-Za-z0-9_-]{44}", "/TOKEN", html))
    assert len(bodies) == 1
    with world.store.read() as conn:
        from newsletter.store import ledger

        assert "https://changed.example.com/new-link" not in ledger.issue_links(conn, plan.stored.id)


# ---------------------------------------------------------------------------------------
# SMTP (aiosmtpd)
# ---------------------------------------------------------------------------------------


def test_smtp_delivers_the_built_bytes_once_to_each_subscriber(world: World, local_smtp: LocalSmtp):
    world.use_smtp(local_smtp)
    world.add_subscribers(12)
    summary = world.send()

    assert summary.sent == 12 and summary.complete
    factory = factory_for(world)
    rows = {row.email: row for row in world.deliveries().values()}
    one_each(Counter(rcpt for d in local_smtp.received for rcpt in d.rcpt_tos), set(rows))
    for delivery in local_smtp.received:
        row = rows[delivery.rcpt_tos[0]]
        assert delivery.mail_from == SENDER
        built = factory.build(
            Recipient(row.subscriber_id, row.email, f"读者 {row.subscriber_id - 1}"), message_id=row.message_id
        )
        assert delivery.content == with_date_of(delivery.content, built.data)


def next_attempt_at(world: World, subscriber_id: int):
    with world.store.read() as conn:
        return conn.execute(
            sa.select(deliveries.c.next_attempt_at).where(deliveries.c.subscriber_id == subscriber_id)
        ).scalar_one()


def test_smtp_4xx_is_retried_by_later_runs_once_due_then_given_up_with_the_last_reason(
    world: World, local_smtp: LocalSmtp
):
    world.use_smtp(local_smtp)
    world.configure("sending", max_attempts=3)
    world.add_subscribers(6)
    local_smtp.rcpt_replies["reader2@example.org"] = "451 4.7.1 Greylisted, try again later"
    start = datetime.now(UTC)
    summary = world.send(clock=lambda: start)

    row = world.deliveries()[3]
    assert (row.status, row.failure, row.attempts) == ("failed", "temporary", 1)
    assert "451" in row.error and "Greylisted" in row.error
    assert summary.failed_temporary == 1 and summary.sent == 5 and not summary.complete
    first_due = next_attempt_at(world, 3)
    # The first retry is due within a minute.
    assert start < first_due <= start + timedelta(minutes=1)

    # A run before it is due leaves it alone.
    early = world.send(clock=lambda: first_due - timedelta(seconds=1))
    assert early.sent == 0 and world.deliveries()[3].attempts == 1 and len(local_smtp.received) == 5

    # Due: tried again, refused again, and the next try is further away.
    world.send(clock=lambda: first_due)
    assert world.deliveries()[3].attempts == 2
    second_due = next_attempt_at(world, 3)
    assert second_due - first_due > first_due - start

    # The third try is the last ([sending] max_attempts = 3): permanent, with the last reason.
    last = world.send(clock=lambda: second_due)
    row = world.deliveries()[3]
    assert (row.status, row.failure, row.attempts) == ("failed", "permanent", 3)
    assert row.error.startswith("gave up after 3 attempts") and "451 4.7.1 Greylisted" in row.error
    assert last.complete and next_attempt_at(world, 3) is None
    assert "reader2@example.org" not in {r for d in local_smtp.received for r in d.rcpt_tos}


def test_a_failed_row_is_delivered_by_the_run_after_its_retry_is_due(world: World, local_smtp: LocalSmtp):
    world.use_smtp(local_smtp)
    world.add_subscribers(4)
    local_smtp.rcpt_replies["reader0@example.org"] = "421 4.3.2 System not accepting network messages"
    start = datetime.now(UTC)
    world.send(clock=lambda: start)
    local_smtp.rcpt_replies.clear()

    later = world.send(clock=lambda: start + timedelta(minutes=1))
    assert later.sent == 1 and later.complete
    one_each(Counter(r for d in local_smtp.received for r in d.rcpt_tos), {f"reader{n}@example.org" for n in range(4)})


def test_smtp_5xx_fails_permanently_at_once(world: World, local_smtp: LocalSmtp, quick_backoff):
    world.use_smtp(local_smtp)
    world.add_subscribers(6)
    local_smtp.rcpt_replies["reader4@example.org"] = "550 5.1.1 No such user"
    summary = world.send()

    row = world.deliveries()[5]
    assert (row.status, row.failure, row.attempts) == ("failed", "permanent", 1)
    assert "550" in row.error and "No such user" in row.error
    assert summary.failed_permanent == 1 and summary.sent == 5
    assert summary.failures and "550" in next(iter(summary.failures))


def test_retry_failed_retries_only_the_temporary_failures(world: World, local_smtp: LocalSmtp, quick_backoff):
    world.use_smtp(local_smtp)
    world.add_subscribers(8)
    local_smtp.rcpt_replies["reader1@example.org"] = "452 4.2.2 Mailbox full"
    local_smtp.rcpt_replies["reader6@example.org"] = "550 5.1.1 No such user"
    world.send()
    assert world.statuses() == {"sent": 6, "failed(temporary)": 1, "failed(permanent)": 1}
    local_smtp.rcpt_replies.clear()

    # Without the flag a run leaves failures alone.
    plain = world.send()
    assert plain.sent == 0 and len(local_smtp.received) == 6

    retried = world.send(retry_failed=True)
    assert retried.sent == 1
    assert world.statuses() == {"sent": 7, "failed(permanent)": 1}
    assert [d.rcpt_tos for d in local_smtp.received[6:]] == [["reader1@example.org"]]


def test_a_connection_dropped_mid_data_leaves_the_row_uncertain_and_unsent(world: World, local_smtp: LocalSmtp):
    world.use_smtp(local_smtp)
    world.add_subscribers(6)
    # The server takes the first message and hangs up before saying so.
    local_smtp.hang_up_in_data(1)
    first = world.send(workers=1)

    assert first.uncertain == 1 and first.sent == 5 and not first.complete
    uncertain = [row for row in world.deliveries().values() if row.status == "sending"]
    assert [row.email for row in uncertain] == [local_smtp.received[0].rcpt_tos[0]]

    # Run again: the uncertain row is reported and not resent.
    plan = world.plan()
    assert plan.counts.sending == 1 and plan.audience == 0
    again = send_module.run_send(plan)
    assert again.sent == 0 and again.uncertain == 1 and len(local_smtp.received) == 6

    # Asked to, it resends (and this subscriber, whose first copy did arrive, gets two).
    resent = world.send(resend_uncertain=True)
    assert resent.sent == 1 and resent.complete
    assert world.statuses() == {"sent": 6}
    assert Counter(r for d in local_smtp.received for r in d.rcpt_tos)[uncertain[0].email] == 2


# ---------------------------------------------------------------------------------------
# SES (moto behind LocalSes)
# ---------------------------------------------------------------------------------------


def use_ses(world: World, server: LocalSes, **values) -> None:
    server.verify(SENDER)
    world.use_ses(server, **values)


def max_in_one_second(times: list[float], *, window: float = 1.0) -> int:
    """The most requests in any window [t, t + 1 s), t at a request: SES's measure."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_ses_send_reaches_everyone_once_with_configuration_set_and_tags(world: World, local_ses: LocalSes):
    use_ses(world, local_ses, configuration_set="newsletter-events")
    local_ses.set_quota(max_send_rate=500)
    world.add_subscribers(25)
    world.add_subscribers(2, prefix="gone", status="unsubscribed")
    summary = world.send()

    assert summary.sent == 25 and summary.complete
    received = local_ses.received()
    messages = [delivery.message for delivery in received]
    one_each(recipients_of(messages), {f"reader{n}@example.org" for n in range(25)})
    rows = {row.email: row for row in world.deliveries().values()}
    for delivery, message in zip(received, messages, strict=False):
        row = rows[message["To"].addresses[0].addr_spec]
        assert delivery.source == SENDER
        assert row.provider_message_id == delivery.message_id
        assert message["Message-ID"] == row.message_id
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for request in local_ses.requests:
        assert request.body["ConfigurationSetName"] == "newsletter-events"
        assert request.body["EmailTags"] == [
            {"Name": "issue", "Value": "2026-11-30"},
            {"Name": "list", "Value": "default"},
        ]
        assert request.body["Destination"]["ToAddresses"] == [parse_message(request.raw)["To"].addresses[0].addr_spec]


def test_ses_pace_never_exceeds_the_accounts_max_send_rate(
    world: World, local_ses: LocalSes, monkeypatch: pytest.MonkeyPatch
):
    releases: list[float] = []
    last_reading = threading.local()

    def clock() -> float:
        last_reading.at = time.monotonic()
        return last_reading.at

    class RecordingPacer(Pacer):
        # The campaign's own pacer, noting when it lets each request go: the last reading of
        # its clock before wait() says yes is the moment it decided.
        def __init__(self, rate):
            super().__init__(rate, clock=clock)

        def wait(self, stop: threading.Event) -> bool:
            released = super().wait(stop)
            if released:
                releases.append(last_reading.at)
            return released

    monkeypatch.setattr(send_module, "Pacer", RecordingPacer)
    # This sender's own pacer, on PostgreSQL too (where senders share one: test_shared_rate.py).
    monkeypatch.setattr(send_module, "shared_pacer", lambda *args, **kwargs: None)
    use_ses(world, local_ses)
    local_ses.set_quota(max_send_rate=8)
    world.add_subscribers(28)
    plan = world.plan()
    assert plan.rate == 8
    started = time.monotonic()
    summary = send_module.run_send(plan)
    elapsed = time.monotonic() - started

    assert summary.sent == 28 and summary.complete
    assert len(local_ses.requests) == 28
    # Every request was released by the pacer, at most MaxSendRate in any second.  (Times of
    # arrival at the server add the delivery's jitter, which on a loaded 2-core machine has
    # no bound; the pacer's guarantee itself is pinned in virtual time below.)
    assert len(releases) == 28
    assert max_in_one_second(releases) <= 8
    # 28 sends 1/8 s apart take at least 27/8 s: the pacer did space them.
    assert elapsed >= 27 / 8


class VirtualTime:
    """The pacer's clock for its tests: time moves only when every worker is waiting, and
    then straight to the earliest wake-up.  Workers are real threads calling the real
    `Pacer.wait`, but nothing sleeps, and "this wait returned 60 ms late" is exact rather
    than whatever a loaded machine does."""

    def __init__(self, workers: int) -> None:
        self.now = 1_000.0
        self._active = workers
        self._wake_at: dict[int, float] = {}
        self._changed = threading.Condition()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._changed:
            me = threading.get_ident()
            self._wake_at[me] = self.now + seconds
            self._advance()
            assert self._changed.wait_for(lambda: self.now >= self._wake_at[me], timeout=30), "virtual time stuck"
            del self._wake_at[me]

    def finished(self) -> None:
        with self._changed:
            self._active -= 1
            self._advance()

    def _advance(self) -> None:
        if self._wake_at and len(self._wake_at) == self._active:
            self.now = max(self.now, min(self._wake_at.values()))
            self._changed.notify_all()


class LateWaker(threading.Event):
    """The pacer's `stop` event (never set) whose waits return `late(n)` seconds after
    their timeout, n counting the waits."""

    def __init__(self, time: VirtualTime, late=lambda n: 0.0) -> None:
        super().__init__()
        self.time, self.late = time, late
        self.waits = 0
        self._count = threading.Lock()

    def wait(self, timeout=None) -> bool:
        with self._count:
            n, self.waits = self.waits, self.waits + 1
        self.time.sleep((timeout or 0.0) + self.late(n))
        return False


def paced_releases(
    rate: float, *, workers: int, sends: int, late=lambda n: 0.0, on_the_way=lambda n: 0.0, arrivals=None
) -> tuple[list[float], LateWaker]:
    """`workers` threads each passing `Pacer(rate).wait` `sends` times in virtual time;
    the (virtual) time of every release.  Send n takes `on_the_way(n)` seconds to reach the
    provider, which answers it at once; `arrivals` (a list) gets those times."""
    time_ = VirtualTime(workers)
    pacer = Pacer(rate, clock=time_.clock)
    stop = LateWaker(time_, late)
    released: list[float] = []
    failures: list[BaseException] = []
    count = itertools.count()

    def worker() -> None:
        try:
            for _ in range(sends):
                release = pacer.wait(stop)
                assert release is not None
                released.append(time_.clock())
                delay = on_the_way(next(count))
                if delay:
                    time_.sleep(delay)
                if arrivals is not None:
                    arrivals.append(time_.clock())
                pacer.answered(release)
        except BaseException as err:  # noqa: BLE001 - reported below, not lost in the thread
            failures.append(err)
        finally:
            time_.finished()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert len(released) == workers * sends
    return sorted(released), stop


@pytest.mark.parametrize("rate", [1, 8, 14, 40])
def test_pacer_spaces_releases_evenly_at_just_under_the_rate_across_workers(rate: int):
    released, _ = paced_releases(rate, workers=5, sends=rate)
    interval = (1 + pacing.PACE_MARGIN) / rate
    gaps = [later - earlier for earlier, later in itertools.pairwise(released)]
    assert min(gaps) == pytest.approx(interval) and max(gaps) == pytest.approx(interval)
    assert max_in_one_second(released) == rate


@pytest.mark.parametrize("rate", [8, 40])
def test_pacer_never_lets_more_than_rate_go_in_any_second_even_when_workers_wake_late(rate: int):
    # Every seventh wait returns 60 ms late, as on a loaded machine, while the next worker's
    # does not: a schedule alone would then let rate + 1 go in one second (9 at 8/s, 41 at
    # 40/s, with the check of the last releases taken out of Pacer.wait).
    released, stop = paced_releases(rate, workers=5, sends=rate // 2, late=lambda n: 0.06 if n % 7 == 2 else 0.0)
    assert stop.waits > 7, "the late wake-ups did happen"
    assert max_in_one_second(released) <= rate


@pytest.mark.parametrize("rate", [8, 20, 40])
def test_sends_slow_on_their_way_never_put_more_than_rate_arrivals_into_one_second(rate: int):
    # Every seventh send reaches the provider 150 ms after it left (our process or the
    # server losing the CPU on a loaded machine: issue 9 saw 22 arrivals in a second at
    # --rate 20), while the sends after it arrive at once.  Judged by release times alone the
    # late one lands among the next second's sends: rate + 1 or more there.
    arrivals: list[float] = []
    released, _ = paced_releases(
        rate, workers=8, sends=rate // 2 + 2, on_the_way=lambda n: 0.15 if n % 7 == 3 else 0.0, arrivals=arrivals
    )
    assert max_in_one_second(released) <= rate
    assert max_in_one_second(arrivals) <= rate
    # What that costs: a late answer holds the send a second after it back by its lateness.
    achieved = (len(arrivals) - 1) / (max(arrivals) - min(arrivals))
    assert achieved >= 0.8 * rate


def test_pacer_with_no_rate_never_waits():
    released, stop = paced_releases(0, workers=3, sends=50)
    assert stop.waits == 0 and set(released) == {1_000.0}


def test_pacer_returns_false_once_stopped():
    pacer = Pacer(5)
    stop = threading.Event()
    assert pacer.wait(stop)
    stop.set()
    assert not pacer.wait(stop)


def test_ses_rate_flag_above_max_send_rate_is_capped(world: World, local_ses: LocalSes):
    use_ses(world, local_ses)
    local_ses.set_quota(max_send_rate=5)
    world.add_subscribers(1)
    plan = world.plan(rate=50)
    assert plan.rate == 5
    assert any("5 messages/s" in note for note in plan.notes)


def test_ses_throttled_sends_are_retried_and_everyone_gets_exactly_one(
    world: World, local_ses: LocalSes, quick_backoff, monkeypatch: pytest.MonkeyPatch
):
    # With a 30 % share and the default 4 tries in a claim, 40 subscribers would leave one
    # failed(temporary) for a later claim about one run in four; this test is about retrying
    # at once.
    monkeypatch.setattr(send_module, "THROTTLED_TRIES", 12)
    use_ses(world, local_ses)
    local_ses.set_quota(max_send_rate=500)
    local_ses.throttle_share(0.3, seed=4)
    world.add_subscribers(40)
    summary = world.send()

    throttled = [request for request in local_ses.requests if request.status == 429]
    assert len(throttled) >= 5, "the test needs throttling to happen"
    assert all(request.error == "TooManyRequestsException" for request in throttled)
    assert summary.sent == 40 and summary.complete
    one_each(recipients_of(d.message for d in local_ses.received()), {f"reader{n}@example.org" for n in range(40)})
    rows = world.deliveries().values()
    # The ledger counts every try: more than one for the throttled ones.
    assert sum(row.attempts for row in rows) == len(local_ses.requests)


def test_ses_message_rejected_leaves_that_row_failed_permanent(world: World, local_ses: LocalSes):
    use_ses(world, local_ses)
    local_ses.set_quota(max_send_rate=500)
    local_ses.fail_next(
        1, "MessageRejected", "Email address is not verified. The following identities failed the check: someone", 400
    )
    world.add_subscribers(10)
    summary = world.send()

    rejected = [request for request in local_ses.requests if request.error == "MessageRejected"]
    assert len(rejected) == 1
    address = rejected[0].body["Destination"]["ToAddresses"][0]
    row = next(row for row in world.deliveries().values() if row.email == address)
    assert (row.status, row.failure, row.attempts) == ("failed", "permanent", 1)
    assert "MessageRejected" in row.error and "not verified" in row.error
    assert summary.sent == 9 and summary.failed_permanent == 1 and summary.complete
    assert address not in recipients_of(d.message for d in local_ses.received())


def test_ses_daily_quota_stops_cleanly_and_a_later_run_finishes(world: World, local_ses: LocalSes):
    use_ses(world, local_ses)
    local_ses.set_quota(max_send_rate=500, max_24_hour_send=25, sent_last_24_hours=0)
    world.add_subscribers(40)
    plan = world.plan()
    assert any("25 more messages" in note for note in plan.notes)
    summary = send_module.run_send(plan)

    # On PostgreSQL the quota every sender shares (shared_rate.py) stops it before SES has to.
    shared = world.store.dialect == "postgresql"
    expected = "daily sending quota is spent" if shared else "Daily message quota exceeded"
    assert summary.stopped and expected in summary.stopped
    assert summary.sent == 25 and not summary.complete
    if shared:
        assert len(local_ses.requests) == 25
    assert world.statuses() == {"sent": 25, "queued": 15}

    local_ses.set_quota(max_24_hour_send=1000)
    resumed = world.send()
    assert resumed.sent == 15 and resumed.complete and not resumed.stopped
    one_each(recipients_of(d.message for d in local_ses.received()), {f"reader{n}@example.org" for n in range(40)})
    assert world.statuses() == {"sent": 40}
