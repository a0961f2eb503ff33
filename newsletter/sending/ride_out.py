"""Riding out a database that is away for a moment, so a send does not die of it.

    claimed = in_transaction(store, lambda conn: ledger.claim(conn, ...), patience=60)

A PostgreSQL restart or failover, a connection the server or a proxy closed, a SQLite lock
held past the busy timeout: each fails the one transaction that met it, and the next
connection works again (the engine's pool checks connections before use, `pool_pre_ping`).
The fault-injection run found that such a blip aborted the whole send and left the messages
the process knew it had delivered recorded as uncertain, so that a later
`--resend-uncertain` sent them twice.  Here the transaction is run again, after a growing
pause, until `patience` seconds have passed; only then does the error go up.

Running a ledger transaction again is safe: every one of them is a whole unit that either
committed or did not.  (The one exception, a COMMIT that reached the server but whose answer
was lost, leaves claimed rows `sending`: uncertain, never sent twice.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from newsletter.errors import StoreError
from newsletter.store import Store

T = TypeVar("T")

FIRST_PAUSE = 0.2
LONGEST_PAUSE = 5.0

# How long a send waits for a database that went away before giving up: every statement of
# a sender (its claims, its lease and heartbeat, the search for senders that died, the
# shared rate's slots), and longer for recording the outcomes the process already knows
# and for ending its lease, so that they are not lost to an outage the rest gave up on.
DB_PATIENCE = 60.0
RECORD_PATIENCE = 300.0


def is_transient(err: BaseException) -> bool:
    """Whether `err` is the database being away (worth another try), not a bug or a refusal."""
    cause = err if isinstance(err, sa.exc.DBAPIError) else err.__cause__
    if isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, (sa.exc.OperationalError, sa.exc.InterfaceError))


def patiently(
    call: Callable[[], T],
    *,
    patience: float,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, which runs transactions of its own (the sender lease's), run again while the
    database is away, for up to `patience` seconds."""
    deadline = time.monotonic() + patience
    pause = FIRST_PAUSE
    while True:
        try:
            return call()
        except (StoreError, sa.exc.DBAPIError) as err:
            if not is_transient(err) or time.monotonic() + pause > deadline:
                raise
            if on_retry is not None:
                on_retry(err)
            sleep(pause)
            pause = min(LONGEST_PAUSE, pause * 2)


def in_transaction(
    store: Store,
    work: Callable[[sa.Connection], T],
    *,
    patience: float,
    read_only: bool = False,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`work(conn)` in a write (or read-only) transaction, run again while the database is
    away, for up to `patience` seconds."""

    def attempt() -> T:
        with store.read() if read_only else store.begin() as conn:
            return work(conn)

    return patiently(attempt, patience=patience, on_retry=on_retry, sleep=sleep)
