"""One rate and one daily quota for every sender of an account (issue 14, item 2): real
`newsletter send` processes through the SES test server, whose wrapper timestamps each
request as it arrives; PostgreSQL holds the shared schedule."""

from __future__ import annotations

import itertools
import math
import os
import socket
import subprocess
import threading

import pytest
import sqlalchemy as sa

from newsletter.sending.shared_rate import BATCH_SECONDS, SHARED_MARGIN, SharedPacer, join_rate
from newsletter.store.schema import senders

pytest.register_assert_rewrite("tests.send_world", "tests.transport_servers")
from tests.send_world import World
from tests.test_send import max_in_one_second, use_ses
from tests.transport_servers import LocalSes

pytest_plugins = ["tests.transport_servers", "tests.send_world"]

RATE = 100


# Every test here is PostgreSQL's: that is where senders join and share a rate.
pytestmark = pytest.mark.only_on("postgresql")


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def shares(world: World) -> dict[str, int]:
    with world.store.read() as conn:
        return {row.name: row.sent for row in conn.execute(sa.select(senders.c.name, senders.c.sent))}


def test_slots_taken_by_concurrent_senders_never_crowd_one_second(store):
    """The schedule itself, without the network's jitter: three pacers on threads of their
    own take batches from the account's row at once; the slots they get, together, are
    never closer than the spacing and never more than the rate in a second."""
    join_rate(store, "ses:test", float(RATE), allowance=None)
    slots: list[float] = []
    lock = threading.Lock()

    def take(batches: int) -> None:
        pacer = SharedPacer(store, "ses:test", float(RATE))
        for _ in range(batches):
            with pacer._lock:
                pacer._take()
                taken = list(pacer._slots)
                pacer._slots.clear()
            with lock:
                slots.extend(taken)

    threads = [threading.Thread(target=take, args=(12,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slots.sort()
    per_batch = math.ceil(RATE * BATCH_SECONDS)
    assert len(slots) == 3 * 12 * per_batch
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    # One clock, so only float rounding (and the wall clock's own steps) between slots.
    assert min(gaps) >= (1 + SHARED_MARGIN) / RATE - 1e-3
    assert max_in_one_second(slots) <= RATE


def test_two_senders_share_one_rate_as_the_provider_counts_arrivals(world: World, local_ses: LocalSes):
    use_ses(world, local_ses)
    local_ses.keep_messages = False
    local_ses.set_quota(max_send_rate=RATE, max_24_hour_send=1_000_000)
    world.add_subscribers(20 * RATE)
    issue = str(world.issue_file)
    running = [world.start_newsletter("send", issue, "--yes") for _ in range(2)]
    results = [finish(process) for process in running]

    for code, _out, err in results:
        assert code == 0, err
    assert world.statuses() == {"sent": 20 * RATE}
    accepted = sorted(request.at for request in local_ses.requests if request.status == 200)
    assert len(accepted) == len(local_ses.requests) == 20 * RATE
    by_sender = shares(world)
    assert set(by_sender) == {f"{socket.gethostname()}:{p.pid}" for p in running}
    assert all(number > 0 for number in by_sender.values()), by_sender
    # Both together, as SES counts: within 2 % under the rate from the first arrival to
    # the last, and never more than the rate in any one second.
    achieved = (len(accepted) - 1) / (accepted[-1] - accepted[0])
    assert 0.98 * RATE <= achieved <= RATE, achieved
    # On a machine busier than its cores a request now and then reaches the server (or its
    # timestamp) tens of milliseconds late, bunching with the next ones by more than the
    # slots' 1.6 % margin: seen 101-124 in the busiest second at load 5-12, against 199 with
    # the rate not shared.  The slots themselves are checked without that noise above.
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    crowded = max_in_one_second(accepted)
    assert crowded <= (RATE if load <= cores else 1.3 * RATE), (crowded, load)


def test_two_senders_share_the_daily_quota(world: World, local_ses: LocalSes):
    use_ses(world, local_ses)
    local_ses.set_quota(max_send_rate=RATE, max_24_hour_send=300, sent_last_24_hours=0)
    world.add_subscribers(1_000)
    issue = str(world.issue_file)
    running = [world.start_newsletter("send", issue, "--yes") for _ in range(2)]
    results = [finish(process) for process in running]

    # 300 left today, taken by both together: nobody asked SES for a 301st.
    assert len(local_ses.requests) == 300
    assert all(request.status == 200 for request in local_ses.requests)
    statuses = world.statuses()
    assert statuses["sent"] == 300 and statuses["queued"] == 700 and "sending" not in statuses
    assert any("daily sending quota is spent" in err for _code, _out, err in results), [e for _c, _o, e in results]
    for code, _out, err in results:
        assert code == 75, err
