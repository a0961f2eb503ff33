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
"""

from __future__ import annotations

import collections
import logging
import threading
from datetime import datetime

from newsletter.compose.render import TRACKABLE_SCHEMES
from newsletter.feedback.machines import judge
from newsletter.store import Store, ledger
from newsletter.store.hits import Hit, record_hits

__all__ = ["Hit", "HitRecorder", "tracked_link"]

log = logging.getLogger("newsletter.web")  # its lines belong with the web app's

FLUSH_SECONDS = 0.25
BATCH_SIZE = 2_000
MAX_PENDING = 1_000_000
RETRY_SECONDS = 2.0


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

    def __init__(self, store: Store, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
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
                self.recorded += record_hits(conn, batch, judge_hit)
            return True
        except Exception as err:
            # Put the batch back in front, in order, and let the next round try again.
            pending.extendleft(reversed(batch))
            log.warning("could not record %d tracking hits (will retry): %s", len(batch), err)
            if self._stopping.is_set():
                raise
            self._stopping.wait(RETRY_SECONDS)
            return False


def tracked_link(store: Store, issue_id: int, index: int) -> str | None:
    """The URL behind link `index` of the issue, if the issue recorded one there.

    Only web links are ever tracked (render.TRACKABLE_SCHEMES): anything else in the table
    would be a bug, and a redirect to a javascript: or data: URL a dangerous one.
    """
    with store.read() as conn:
        url = ledger.link_url(conn, issue_id, index)
    return url if url and url.lower().startswith(TRACKABLE_SCHEMES) else None
