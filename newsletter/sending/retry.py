"""When a reader whose message failed temporarily is tried again, and when we give up.

    verdict = after_temporary_failure(attempts=3, max_attempts=8, now=now, throttled=False)

A temporary failure (a 4xx reply, a dropped connection, an SES 5xx) is recorded `failed
(temporary)` with the time its next try is due; any later `newsletter send` of the issue
(or the same run, if it is still going then) claims it again once that time has passed.  So a
cron line running the send every ten minutes finishes an issue through a provider outage
without a person.

The schedule: the first retry is due 30 s after the first try, each later one four times
further apart, capped at 4 hours: 30 s, 2 min, 8 min, 32 min, 2 h 8 min, 4 h, 4 h (about
11 hours from the first try to the eighth, the default `[sending] max_attempts`).  Greylisting
servers ask for a retry after a few minutes (RFC 6647 section 2.1); outages of a provider
last minutes to hours.  After `max_attempts` tries the row is failed permanently, with the
last reason, as a mail server gives up on a message after days of retries (RFC 5321 section
4.5.4.1 suggests 4-5 days; a newsletter older than half a day is stale news).

Throttling never uses up attempts: it says the provider wants us slower, not that this
reader's message cannot go, so a throttled row is always due again a few seconds later and
the pacer lowers the rate instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from newsletter.store.schema import PERMANENT, TEMPORARY

FIRST_RETRY = timedelta(seconds=30)
GROWTH = 4
LONGEST_WAIT = timedelta(hours=4)
# A throttled row is due again after this, not after the schedule above.
AFTER_THROTTLING = timedelta(seconds=5)


@dataclass(frozen=True)
class RetryVerdict:
    failure: str  # TEMPORARY or PERMANENT
    next_attempt_at: datetime | None
    # The reason to record: the last error, and for a give-up how many tries it took.
    error: str


def retry_delay(attempts: int) -> timedelta:
    """How long after try number `attempts` (1-based) the next is due."""
    return min(LONGEST_WAIT, FIRST_RETRY * GROWTH ** max(0, attempts - 1))


def after_temporary_failure(
    *, attempts: int, max_attempts: int, now: datetime, error: str, throttled: bool = False
) -> RetryVerdict:
    """What to record for a row whose try number `attempts` failed temporarily with `error`."""
    if throttled:
        return RetryVerdict(TEMPORARY, now + AFTER_THROTTLING, error)
    if attempts >= max_attempts:
        return RetryVerdict(PERMANENT, None, f"gave up after {attempts} attempts; the last: {error}")
    return RetryVerdict(TEMPORARY, now + retry_delay(attempts), error)
