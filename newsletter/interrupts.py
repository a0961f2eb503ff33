"""How a long-running command stops: Ctrl-C and SIGTERM ask it to finish cleanly.

`newsletter send`, `newsletter events pull` and the web side's scheduled work all loop over
units of work that must not be cut in half (a claimed ledger row, a received SQS batch).  So
while such a loop runs, the first SIGINT or SIGTERM (systemd, `kill`) sets a stop flag that
the loop checks between units; a second Ctrl-C raises KeyboardInterrupt as usual, for an
editor who will not wait.  The CLI turns a KeyboardInterrupt into "interrupted" and exit 130.

Python delivers signals to the main thread only, so elsewhere (a test calling the library
from a thread, the web server's own threads) the caller keeps its own handling.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def stop_on_signals(
    stop: threading.Event, *, on_stop: Callable[[], None] | None = None, interrupt: bool = False
) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM set `stop` (and call `on_stop`).

    `interrupt`: also raise KeyboardInterrupt at the first signal, for a loop that blocks in
    a call which only an exception cuts short (a 20-second long poll); the flag still ends
    the loop if some library between here and the socket swallows the exception.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stopped(signum: int, frame: FrameType | None) -> None:
        first = not stop.is_set()
        stop.set()
        if first and on_stop is not None:
            on_stop()
        # From now on Ctrl-C raises at once: the next one is a person who will not wait.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if interrupt or not first:
            raise KeyboardInterrupt

    previous = {number: signal.signal(number, stopped) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
