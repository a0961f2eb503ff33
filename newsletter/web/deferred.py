"""Work a request causes but must not be timed with: the subscribe form's database writes and
its confirmation email.

A response's background task starts the moment the answer's last byte is handed to the
socket, while the client is still reading it; on a busy machine that work then competes with
the answer's own delivery, and the answers for unknown addresses (rows to write, an email to
build and send) came out about 1 ms slower than for known ones (`bench/bench_subscribe_timing.py`:
unknown/known median ratio 1.18 with the work started at once, 0.91 with it started 0.1 s
later; bench/RESULTS.md). So the work is queued and run by one thread a short while after the
answer, one item at a time, which also keeps a burst of sign-ups from sending a burst of mail
at once. Nothing queued is dropped at shutdown: `stop` runs what is left before returning.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from newsletter.web.log_lines import web_logger

log = web_logger("newsletter.web")

# Long enough for an answer of a few KB to be read by the client on a loaded machine.
DELAY_SECONDS = 0.2


class DeferredWork:
    """A queue of calls, each run on one worker thread no sooner than `delay` after it was
    queued, in the order queued."""

    def __init__(self, *, delay: float = DELAY_SECONDS) -> None:
        self.delay = delay
        self._queue: deque[tuple[float, Callable[..., Any], tuple[Any, ...]]] = deque()
        self._changed = threading.Condition()
        self._running = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def later(self, work: Callable[..., Any], *args: Any) -> None:
        """Queue `work(*args)`; the worker starts on first use, so an app served without a
        lifespan (a bare test client) still runs what it queues."""
        with self._changed:
            self._queue.append((time.monotonic() + self.delay, work, args))
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="deferred-work", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued has run; False if that took longer than `timeout`."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._queue and not self._running, timeout)

    def stop(self) -> None:
        """Run what is still queued without waiting for its delay, then end the worker."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    if self._queue:
                        wait = self._queue[0][0] - time.monotonic()
                        if wait <= 0 or self._stopping:
                            break
                        self._changed.wait(wait)
                    elif self._stopping:
                        return
                    else:
                        self._changed.wait()
                _, work, args = self._queue.popleft()
                self._running += 1
            try:
                work(*args)
            except Exception:  # a bug: keep the worker alive for the next request, and say so
                log.exception("deferred work %s failed", getattr(work, "__name__", work))
            finally:
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()
