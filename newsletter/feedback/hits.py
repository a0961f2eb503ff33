"""Open and click hits: buffered in memory and written in batches by one thread, and the
stored links that a click may go to.

Why a buffer: one SQLite commit per pixel hit means one write transaction (and one WAL
append) per request, and SQLite has a single writer; measured here, that ceiling sits below
the 2,000 hits/s the open pixel must sustain (bench/bench_pixel.py, bench/RESULTS.md).  So
the request only appends the hit to a deque (no I/O, no lock held across I/O) and answers;
a writer thread wakes every FLUSH_SECONDS and stores whatever is waiting in batches of up to
BATCH_SIZE, one transaction each.  On PostgreSQL it spares a connection per hit as well.

Nothing is lost on a clean stop: the app's lifespan calls `stop()` on shutdown, which writes
everything still waiting before the process ends (uvicorn runs the lifespan shutdown after
the last request finished).  A crash (kill -9, power loss) loses at most the last
FLUSH_SECONDS of hits; for opens and clicks that is an acceptable price.  A database
error keeps the batch and retries it, so a brief outage loses nothing either; only past
MAX_PENDING waiting hits (the database down for a long while) are new hits dropped, with
a log line, so memory stays bounded.

A repeat is stored once across processes as well (`newsletter serve --workers N`, or several
servers behind a load balancer): each hit is written with a replay key, and the batch insert
skips a key already stored (`replay_key` says what the key is and where its window ends).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from newsletter.compose.render import TRACKABLE_SCHEMES
from newsletter.feedback.machines import judge
from newsletter.store import Store, ledger
from newsletter.store.hits import Hit, record_hits

__all__ = ["REPLAY_SECONDS", "Hit", "HitRecorder", "replay_key", "tracked_link"]

log = logging.getLogger("newsletter.web")  # its lines belong with the web app's

FLUSH_SECONDS = 0.25
BATCH_SIZE = 2_000
MAX_PENDING = 1_000_000
RETRY_SECONDS = 2.0
# The same pixel or link of the same message requested again within this many seconds is
# the same open or click (a mail client loading an image twice, a scanner, or a replay in a
# loop), recorded once.
REPLAY_SECONDS = 60.0


def replay_key(hit: Hit, seconds: float = REPLAY_SECONDS) -> str | None:
    """The events' `dedupe_key` of a hit: one per message (issue, subscriber), kind, link,
    user agent and `seconds`-long bucket of the clock (Unix time // seconds).

    The rule this gives, with the sliding window each process keeps in front of it
    (web/tracking.py RecentHits): across processes, at most one row per key per bucket.  A
    bucket is not exactly "within `seconds`": two requests a second apart either side of a
    bucket's edge, answered by two processes, are both stored, while within one process the
    sliding window still merges them; requests in one bucket are always less than `seconds`
    apart, so the key never merges what the window would keep apart.  That is fine because
    the stats count people, not rows (unique opens and clicks are distinct subscribers), and
    the raw counts (clicks per link, the timeline) gain at most one row per reader per
    window.  The key includes the user agent so that a scanner's hit does not hide the
    reader's own a moment later (judge_hit tells them apart); RecentHits' cap of
    REPLAY_AGENTS agents per window stays per process.  Processes on other machines must
    keep their clocks in step (NTP) for their buckets to agree.

    128 bits of SHA-256 in hex: the events' unique index holds one per hit row, and half
    a digest is as good as a whole one against accidental collisions at any number of rows
    this table will hold.  The "hit" prefix keeps the keys apart from SES events' keys.
    No window (`seconds` 0) gives no key: every hit is one of its own, as in RecentHits.
    """
    if seconds <= 0:
        return None
    bucket = int(hit.at // seconds)
    agent = "-" if hit.user_agent is None else f"={hit.user_agent}"
    text = f"hit:{hit.kind}:{hit.issue_id}:{hit.subscriber_id}:{hit.link_idx}:{bucket}:{agent}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def judge_hit(hit: Hit, sent_at: datetime | None) -> tuple[bool, dict | None]:
    verdict = judge(
        kind=hit.kind, user_agent=hit.user_agent, method=hit.method, occurred_at=hit.occurred_at, sent_at=sent_at
    )
    detail = verdict.detail()
    if hit.method != "GET":
        detail = {**(detail or {}), "method": hit.method}
    return verdict.machine, detail


class HitRecorder:
    """`add(hit)` from any thread; a writer thread stores hits in batches."""

    def __init__(
        self,
        store: Store,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        replay_seconds: Callable[[], float] = lambda: REPLAY_SECONDS,
    ) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        # The width of a replay key's bucket (`replay_key`), asked at each write: the app
        # passes its sliding window's, so that the two are always one window.
        self.replay_seconds = replay_seconds
        self._pending: collections.deque[Hit] = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        # Held while a batch is being written, so flush() can wait for one in progress.
        self._writing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.recorded = 0
        self.dropped = 0

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="newsletter-hits", daemon=True)
            self._thread.start()

    def add(self, hit: Hit) -> None:
        # deque.append is atomic under the GIL: no lock on the request path.
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped % 10_000 == 1:
                log.error("hit buffer full (%d waiting, database unreachable?); dropping new hits", MAX_PENDING)
            return
        self._pending.append(hit)
        if self._thread is None:
            # Served without lifespan events (some ASGI servers can turn them off): start on
            # first use rather than never.
            self.start()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Write everything added so far before returning (tests, shutdown)."""
        while True:
            with self._writing:
                if not self._pending or not self._write_some():
                    return

    def stop(self) -> None:
        """Write what is waiting and end the writer thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        # Anything added while the thread was finishing.
        self.flush()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                with self._writing:
                    while self._pending and self._write_some():
                        pass
            except Exception:  # pragma: no cover - a bug; keep the thread alive and say so
                log.exception("recording tracking hits failed")
        with self._writing:
            while self._pending and self._write_some():
                pass

    def _write_some(self) -> bool:
        """Store up to BATCH_SIZE waiting hits; False (batch kept) if the database failed."""
        batch: list[Hit] = []
        pending = self._pending
        try:
            while len(batch) < BATCH_SIZE:
                batch.append(pending.popleft())
        except IndexError:
            pass
        if not batch:
            return False
        try:
            with self.store.begin() as conn:
                self.recorded += record_hits(conn, batch, judge_hit, self._replay_key)
            return True
        except Exception as err:
            # Put the batch back in front, in order, and let the next round try again.
            pending.extendleft(reversed(batch))
            log.warning("could not record %d tracking hits (will retry): %s", len(batch), err)
            if self._stopping.is_set():
                raise
            self._stopping.wait(RETRY_SECONDS)
            return False

    def _replay_key(self, hit: Hit) -> str | None:
        return replay_key(hit, self.replay_seconds())


def tracked_link(store: Store, issue_id: int, index: int) -> str | None:
    """The URL behind link `index` of the issue, if the issue recorded one there.

    Only web links are ever tracked (render.TRACKABLE_SCHEMES): anything else in the table
    would be a bug, and a redirect to a javascript: or data: URL a dangerous one.
    """
    with store.read() as conn:
        url = ledger.link_url(conn, issue_id, index)
    return url if url and url.lower().startswith(TRACKABLE_SCHEMES) else None
