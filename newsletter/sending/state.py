"""Where a send stands, by the one rule every command uses, and the exit status it gives.

    state = send_state(counts)        # COMPLETE or INCOMPLETE
    code = exit_status(state)         # 0 or 75

An issue's send is `complete` only when every ledger row is settled for good: sent, skipped
(the reader left, bounced or complained before their turn) or failed permanently.  Rows
queued, failed temporarily (retried automatically once their backoff has passed) or
uncertain (in flight when a send stopped: they may or may not have gone out) make it
`incomplete`.  `newsletter send`, `issues`, `stats` and `/stats` all ask `send_state`, so
none of them can call an issue finished that another says is not (the listmonk failure:
campaigns marked finished with part of the list unsent).

Exit statuses of `newsletter send`, after sysexits.h (the BSD convention cron wrappers and
CI read): 0 complete; 75 (EX_TEMPFAIL) incomplete, some rows are to be retried: run the
same command again later; 1 an error before or during sending (nothing or only part was
sent, and a person must act); 2 a usage error (click's own).
"""

from __future__ import annotations

from newsletter.store.ledger import LedgerCounts

COMPLETE = "complete"
INCOMPLETE = "incomplete"

EXIT_COMPLETE = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
# sysexits.h: "temporary failure, indicating something that is not really an error ... the
# user is invited to retry the operation later".
EXIT_INCOMPLETE = 75


def send_state(counts: LedgerCounts) -> str:
    """COMPLETE when no row is queued, failed temporarily or uncertain; else INCOMPLETE."""
    return INCOMPLETE if pending(counts) else COMPLETE


def pending(counts: LedgerCounts) -> int:
    """Rows another run may still deliver: queued, failed temporarily, uncertain."""
    return counts.queued + counts.failed_temporary + counts.sending


def exit_status(state: str) -> int:
    return EXIT_COMPLETE if state == COMPLETE else EXIT_INCOMPLETE
