"""Several `newsletter send` processes on one issue, on PostgreSQL, through the SES stand-in.

    .venv/bin/python bench/bench_senders.py --database postgresql://postgres@127.0.0.1/DB
        [--recipients 1000000] [--senders 1 2 4] [--runs 1] [--dry-run]

For each number of senders: a fresh schema with `--recipients` readers, the example issue,
bench/instant_ses.py in a process of its own (it answers at once and reports an account
rate of 100,000/s, so nothing paces the senders), then that many `newsletter send ISSUE
--yes` processes started together.  Each sender runs the real command in a child of this
script that counts the SQL statements its engine executes (SQLAlchemy's
`before_cursor_execute`), so "statements per message" is every statement of every sender
over the messages sent.  Prints, per run: wall time from the first start to the last exit,
messages/s, the senders' CPU seconds (user + system, from wait4) and messages per CPU
second, statements per message, and the load average before and after.
A sender's exit 75 (incomplete) is accepted only when the ledger ends with every row sent:
the exit codes, the final ledger and such a sender's summary lines are printed with the
figures, since that sender's report then disagrees with the ledger.

--dry-run times `newsletter send ISSUE --dry-run` (one process: a dry run builds every
message and claims nothing, so there is nothing to share).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_ses_send import AWS_ENVIRONMENT, _Endpoint
from bench.instant_ses import SesStandIn
from newsletter.sending.state import EXIT_INCOMPLETE

BATCH = 50_000


def _load() -> str:
    return "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def _child(counts: Path, argv: list[str]) -> None:
    """Run the CLI in this process, counting SQL statements; write the count at exit."""
    import atexit

    import sqlalchemy as sa

    executed = [0]

    @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
    def count(*_args, **_kwargs) -> None:
        executed[0] += 1

    atexit.register(lambda: counts.write_text(json.dumps({"statements": executed[0]})))
    from newsletter.cli.main import main

    sys.argv = ["newsletter", *argv]
    main()


def _schema_url(base: str) -> tuple[str, str]:
    import sqlalchemy as sa

    from newsletter.store.database import normalize_url

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    server = normalize_url(base)
    engine = sa.create_engine(server)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = server.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    return schema, url


def _drop(base: str, schema: str) -> None:
    import sqlalchemy as sa

    from newsletter.store.database import normalize_url

    engine = sa.create_engine(normalize_url(base))
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def one_run(base: str, recipients: int, senders: int, *, dry_run: bool) -> dict:
    from tests.send_world import World

    schema, url = _schema_url(base)
    try:
        with tempfile.TemporaryDirectory() as directory, SesStandIn() as ses:
            root = Path(directory)
            world = World(root, url)
            for start in range(0, recipients, BATCH):
                world.add_subscribers(min(BATCH, recipients - start), prefix=f"r{start}-")
            world.configure("transport", kind="ses")
            world.configure("transport.ses", region="us-east-1", endpoint_url=_Endpoint(ses.endpoint_url).endpoint_url)
            env = {**world.environment(), **AWS_ENVIRONMENT}
            args = ["--config", str(world.config_path), "send", str(world.issue_file)]
            args += ["--dry-run"] if dry_run else ["--yes"]
            load_before = _load()
            started = time.monotonic()
            processes = []
            for n in range(1 if dry_run else senders):
                counts = root / f"counts-{n}.json"
                code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.bench_senders import _child; "
                code += f"_child(__import__('pathlib').Path({str(counts)!r}), {args!r})"
                processes.append(
                    (
                        subprocess.Popen(
                            [sys.executable, "-c", code],
                            cwd=root,
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                        ),
                        counts,
                    )
                )
            cpu = 0.0
            statements = 0
            exits: list[int] = []
            notes: dict[int, list[str]] = {}
            for n, (process, counts) in enumerate(processes):
                _pid, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
                _out, err = process.communicate()
                exits.append(process.returncode)
                if process.returncode not in (0, EXIT_INCOMPLETE):
                    raise SystemExit(f"sender exited {process.returncode}: {err.decode()[-2000:]}")
                if process.returncode == EXIT_INCOMPLETE:
                    # Its summary, without the progress lines.
                    notes[n] = [line for line in err.decode().splitlines() if line and not line.endswith(" elapsed)")]
                cpu += usage.ru_utime + usage.ru_stime
                statements += json.loads(counts.read_text())["statements"]
            wall = time.monotonic() - started
            statuses = {"sent": recipients} if dry_run else world.statuses()
            sent = statuses.get("sent", 0)
            world.close()
            if notes and statuses != {"sent": recipients}:
                # 75 is right when rows are left; a 75 with every row sent is the sender's
                # report, not the ledger's, and is kept beside the figures (exit_codes).
                raise SystemExit(f"senders exited {exits}, ledger {statuses}: {notes}")
            return {
                "senders": 1 if dry_run else senders,
                "dry_run": dry_run,
                "recipients": recipients,
                "sent": sent,
                "wall_s": round(wall, 1),
                "msgs_per_s": round(sent / wall, 1),
                "cpu_s": round(cpu, 1),
                "msgs_per_cpu_s": round(sent / cpu, 1),
                "statements_per_msg": round(statements / sent, 3),
                "server_cpu_s": round(ses.counts()["cpu"], 1),
                "load_before": load_before,
                "load_after": _load(),
                "exit_codes": exits,
                "ledger": statuses,
                "notes_of_exit_75": notes,
            }
    finally:
        _drop(base, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="a PostgreSQL URL (a schema of its own is made per run)")
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--senders", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    counts = [1] if args.dry_run else args.senders
    for senders in counts:
        for _ in range(args.runs):
            print(json.dumps(one_run(args.database, args.recipients, senders, dry_run=args.dry_run)), flush=True)


if __name__ == "__main__":
    main()
