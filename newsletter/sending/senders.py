"""The senders of an issue: a lease per `newsletter send` process, kept alive by a heartbeat.

On PostgreSQL any number of senders, on one machine or several, share an issue: each opens
a lease, claims rows with `FOR UPDATE SKIP LOCKED` under it (`ledger.claim`), and the issue
is complete when every row is settled, whichever sender settles the last.  On SQLite one
process sends an issue at a time: the second is refused, because a SQLite file is one
machine's and its single writer would make more senders wait rather than send.

A sender that stops answering (killed, its machine gone) is found out by the others: on
this machine at once (its pid is gone), elsewhere when its heartbeat is older than
`ledger.SENDER_SILENCE`.  Its lease is ended as lost, and the rows it held in `sending`
become the uncertain rows of DESIGN.md's rules: settled exactly where the transport can
tell (the outbox), otherwise reported and resent only with `--resend-uncertain`.

Every method here is one or more whole transactions that can be run again (the campaign
rides a database outage out by doing so, sending/ride_out.py): `start` finds the lease it
opened if the answer to its COMMIT was lost, ending and finding leases are conditional.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletter.errors import NewsletterError
from newsletter.store import Store, leases, ledger
from newsletter.store.schema import utcnow


@dataclass(frozen=True)
class Orphans:
    """Rows adopted from senders that ended: (row id, message id), and whose they were."""

    rows: list[tuple[int, str | None]]
    senders: list[str]


class SenderLease:
    """This process's part in sending one issue; `start()`, `heartbeat()`, `end()`."""

    def __init__(self, store: Store, issue_id: int, slug: str, *, name: str | None = None) -> None:
        self.store = store
        self.issue_id = issue_id
        self.slug = slug
        self.name = name or ledger.this_sender()
        self.joins = store.dialect == "postgresql"
        self.id: int | None = None
        # When this sender last found the database away (the campaign's ride-out sets it).
        # The others could not beat while it was away either, so their silence is counted
        # from then, not from their last heartbeat: an outage this sender rode out does not
        # make it take a live sender for dead (see ledger.SENDER_SILENCE).
        self.database_away_at: datetime | None = None

    # -- joining and leaving -------------------------------------------------

    def start(self) -> None:
        """Open this sender's lease; on SQLite take the issue's lock first, or refuse."""
        with self.store.begin() as conn:
            if self.joins:
                leases.show_sender(conn, self.issue_id, self.name, utcnow())
            else:
                self._lock_alone(conn)
            self.id = leases.open_lease(conn, self.issue_id, self.name)

    def _lock_alone(self, conn) -> None:
        free_before = utcnow() - ledger.SENDER_SILENCE
        if leases.take_issue_lock(conn, self.issue_id, self.name, free_before=free_before):
            return
        holder = leases.lock_holder(conn, self.issue_id)
        if holder is not None and not ledger.sender_alive(holder.name, holder.seen_at):
            if leases.take_issue_lock_from(conn, self.issue_id, self.name, holder.name):
                return
            holder = leases.lock_holder(conn, self.issue_id)
        raise refusal(self.slug, holder.name if holder else "another process")

    def heartbeat(self, *, sent: int) -> bool:
        """Say this sender is alive; False when another sender has taken it for dead (it was
        silent too long) and its rows may already be someone else's: stop claiming."""
        assert self.id is not None
        with self.store.begin() as conn:
            alive = leases.beat(conn, self.id, sent=sent)
            if alive:
                if self.joins:
                    leases.show_sender(conn, self.issue_id, self.name, utcnow())
                else:
                    ledger.refresh_sender(conn, self.issue_id, self.name)
        return alive

    def end(self, *, sent: int) -> None:
        if self.id is None:
            return
        with self.store.begin() as conn:
            leases.close_lease(conn, self.id, sent=sent)
            successor = next(iter(self._live_others(conn)), None)
            leases.release_issue_lock(conn, self.issue_id, self.name, successor=successor)

    # -- the others ------------------------------------------------------------

    def _alive(self, lease: leases.LeaseRow) -> bool:
        seen = lease.heartbeat_at
        if self.database_away_at is not None and self.database_away_at > seen:
            seen = self.database_away_at
        return ledger.sender_alive(lease.name, seen)

    def _live_others(self, conn) -> list[leases.LeaseRow]:
        return [
            lease for lease in leases.open_leases(conn, self.issue_id) if lease.id != self.id and self._alive(lease)
        ]

    def others(self) -> list[str]:
        """The names of the other senders of this issue still running."""
        with self.store.read() as conn:
            return [lease.name for lease in self._live_others(conn)]

    def find_lost(self) -> list[str]:
        """End the leases of senders found dead; returns the names of those this call ended."""
        with self.store.read() as conn:
            dead = [
                lease
                for lease in leases.open_leases(conn, self.issue_id)
                if lease.id != self.id and not self._alive(lease)
            ]
        if not dead:
            return []
        with self.store.begin() as conn:
            ended = set(leases.end_lost(conn, [lease.id for lease in dead]))
        return [lease.name for lease in dead if lease.id in ended]

    def adopt_orphans(self) -> Orphans:
        """Take over the rows that ended senders left in `sending` (one statement: a row two
        senders race for goes to one of them)."""
        assert self.id is not None
        with self.store.begin() as conn:
            ended = leases.ended_lease_ids(conn, self.issue_id)
            before = leases.sending_by_sender(conn, self.issue_id)
            rows = leases.adopt_orphans(conn, self.issue_id, self.id, ended)
            names = leases.lease_names(conn, [i for i in before if i is not None and i in set(ended)])
        return Orphans(rows, sorted(set(names.values())))

    def settle_adopted(self, *, arrived: list[int], missing: list[int]) -> None:
        assert self.id is not None
        with self.store.begin() as conn:
            leases.settle_adopted(conn, self.id, arrived=arrived, missing=missing)

    def requeue_orphans(self) -> int:
        """`--resend-uncertain`: every row an ended sender left in `sending` goes back to the queue."""
        with self.store.begin() as conn:
            return leases.requeue_orphans(conn, self.issue_id, leases.ended_lease_ids(conn, self.issue_id))


def refusal(slug: str, holder: str) -> NewsletterError:
    """Why a second sender of an issue does not start on SQLite, in one line."""
    return NewsletterError(
        f"another send of {slug!r} is running ({holder}); wait for it or stop it first "
        "(joining a running send needs PostgreSQL)"
    )


@dataclass(frozen=True)
class InFlight:
    """An issue's rows in `sending`: held by senders still running, or uncertain."""

    uncertain: int
    elsewhere: int
    senders: list[str]


def in_flight(store: Store, issue_id: int) -> InFlight:
    """Split the issue's `sending` rows into those live senders hold and the uncertain rest
    (their sender ended, died, or was never a lease)."""
    with store.read() as conn:
        held = leases.sending_by_sender(conn, issue_id)
        live = {
            lease.id: lease.name
            for lease in leases.open_leases(conn, issue_id)
            if ledger.sender_alive(lease.name, lease.heartbeat_at)
        }
    elsewhere = sum(number for sender_id, number in held.items() if sender_id in live)
    uncertain = sum(number for sender_id, number in held.items() if sender_id not in live)
    return InFlight(uncertain=uncertain, elsewhere=elsewhere, senders=sorted(live.values()))
