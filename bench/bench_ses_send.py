"""`newsletter send` through a local SES stand-in that answers at once, against a naive boto3 loop.

Both send the same personal messages of an issue to the same subscribers through
bench/instant_ses.py (asyncio in a process of its own, answering at once; the account it
reports allows 100,000 messages/s, so nothing paces either side).

- The naive loop is what a first script would do: one boto3 sesv2 client, `send_email` with
  Content.Raw for one message after another.  Its messages are built before the clock starts,
  so it is timed on sending alone.  CPU: this process's user + system time over the loop.
- `newsletter send ISSUE --yes` runs as the editor runs it, in a process of its own.  Its
  figures are those of the campaign (claim, build, pace, send, record in the ledger), read
  inside that process around `run_send` (the figure the command itself reports as msgs/s);
  the whole command's wall and CPU time (start-up, render, checks, GetAccount) are printed
  beside them.

Runs alternate (naive loop, newsletter send, naive loop, ...) on a fresh database each, so
both see the same machine load; each run's ratio is of its own pair; the summary gives
medians over the runs.

    .venv/bin/python bench/bench_ses_send.py [--messages 2000] [--runs 5] [--workers N]
                                             [--latency MS] [--seed] [--profile FILE]

`--latency MS` holds each answer back like a round trip to SES over the internet.
`--profile FILE` records the last `newsletter send` with py-spy (every thread, sampled; pip
install py-spy) into FILE as collapsed stacks ("frame;frame;... count" a line; sum the counts
of the stacks under newsletter/sending/ for the campaign).  That run's "whole command" CPU is
not the command's (it read 0.2 s for a 2 s send): the command runs under py-spy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.instant_ses import SesStandIn

AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class _Endpoint:
    region = "us-east-1"

    def __init__(self, url: str) -> None:
        self.endpoint_url = url


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def naive_loop(world, endpoint_url: str) -> dict:
    """One boto3 client, one send_email after another, over messages built beforehand."""
    import boto3

    from tests.send_world import SENDER

    plan = world.plan()
    factory = plan.message_factory()
    from newsletter.mail.message import Recipient

    recipients = sorted(world.emails().items())
    messages = [factory.build(Recipient(subscriber_id, email)).data for subscriber_id, email in recipients]
    tags = [{"Name": "issue", "Value": plan.stored.slug}, {"Name": "list", "Value": plan.list_slug}]
    client = boto3.session.Session().client("sesv2", region_name="us-east-1", endpoint_url=endpoint_url)
    client.get_account()  # the connection and the endpoint resolved outside the timing
    started, cpu = time.monotonic(), _cpu_seconds()
    for data, (_subscriber_id, email) in zip(messages, recipients, strict=True):
        client.send_email(
            FromEmailAddress=SENDER,
            Destination={"ToAddresses": [email]},
            Content={"Raw": {"Data": data}},
            EmailTags=tags,
        )
    elapsed, cpu = time.monotonic() - started, _cpu_seconds() - cpu
    client.close()
    size = sum(map(len, messages)) / len(messages)
    return {"sent": len(messages), "wall": elapsed, "cpu": cpu, "size": size}


def newsletter_send(world, *, workers: int | None, profile: Path | None) -> dict:
    """`newsletter send` in a process of its own; the campaign's figures and the whole command's."""
    figures = world.root / "campaign.json"
    args = ["--config", str(world.config_path), "send", str(world.issue_file), "--yes"]
    if workers:
        args += ["--workers", str(workers)]
    command = [sys.executable, __file__, "--child", str(figures)]
    if profile is not None:
        # --nonblocking: py-spy reads the process without pausing it, so timing is not skewed.
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "--gil", "--rate", "500"]
        command = [*spy, "--format", "raw", "--output", str(profile), "--", *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    started = time.monotonic()
    process = subprocess.Popen(
        [*command, "--", *args],
        cwd=world.root,
        env={**env, "TERM": "dumb", "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = process.communicate(timeout=3600)
    # wait4 would give the child's rusage; communicate() already reaped it, so take
    # RUSAGE_CHILDREN, which grows by exactly this child (the only one run meanwhile).
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"newsletter send failed ({process.returncode}):\n{out.decode()}\n{err.decode()}")
    result = json.loads(figures.read_text())
    result["command_wall"] = wall
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _child(figures: Path, argv: list[str]) -> None:
    """Run `newsletter ARGV` here, timing its campaign from inside."""
    import newsletter.cli.send as send_command
    from newsletter.cli.main import main
    from newsletter.store import ledger

    # How many rows each claim and each record transaction carried (the campaign calls
    # these through the module, so wrapping them here sees every call).
    batches: dict[str, list[int]] = {"claim": [], "record": []}
    real_claim, real_record = ledger.claim, ledger.record

    def counted_claim(*args, **kwargs):
        claimed, skipped = real_claim(*args, **kwargs)
        batches["claim"].append(len(claimed) + len(skipped))
        return claimed, skipped

    def counted_record(conn, outcomes, *args, **kwargs):
        outcomes = list(outcomes)
        batches["record"].append(len(outcomes))
        return real_record(conn, outcomes, *args, **kwargs)

    ledger.claim, ledger.record = counted_claim, counted_record
    real_run_send = send_command.run_send

    def timed_run_send(plan, **options):
        started, cpu = time.monotonic(), _cpu_seconds()
        summary = real_run_send(plan, **options)
        figures.write_text(
            json.dumps(
                {
                    "sent": summary.sent,
                    "complete": summary.complete,
                    "wall": time.monotonic() - started,
                    "cpu": _cpu_seconds() - cpu,
                    "workers": plan.workers,
                    "claims": [n for n in batches["claim"] if n],
                    "records": [n for n in batches["record"] if n],
                }
            )
        )
        return summary

    send_command.run_send = timed_run_send
    main(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="newsletter send --workers (default: its own choice)")
    parser.add_argument("--latency", type=float, default=0.0, help="ms each SendEmail answer is held back")
    parser.add_argument("--seed", action="store_true", help="send the seed digest (143 KB) instead of the example")
    parser.add_argument("--database", default="", help="a database URL for the ledger (default: SQLite per run)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the last newsletter send into FILE")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        _child(args.child, [a for a in rest if a != "--"])
        return

    os.environ.update(AWS_ENVIRONMENT)
    from tests.sample_issues import SEED
    from tests.send_world import EXAMPLE_ISSUE, World

    issue = SEED if args.seed else EXAMPLE_ISSUE
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {_load()}")
    print(f"issue: {issue.name}; {args.messages} messages per run, {args.runs} runs, alternating")
    if args.latency:
        print(f"each SendEmail answered {args.latency:g} ms late (a stand-in for the round trip to SES)")
    rows = []
    with SesStandIn(latency=args.latency / 1000) as ses, tempfile.TemporaryDirectory(prefix="bench-ses-") as scratch:
        for run in range(1, args.runs + 1):
            row: dict = {"load_before": os.getloadavg()[0]}
            for side in ("naive", "newsletter"):
                root = Path(scratch) / f"run{run}-{side}"
                root.mkdir()
                url = args.database or f"sqlite:///{root / 'newsletter.db'}"
                if args.database:
                    _empty(url)
                world = World(root, url, issue=issue)
                try:
                    world.use_ses(_Endpoint(ses.endpoint_url))
                    world.add_subscribers(args.messages)
                    server_before = ses.counts()
                    if side == "naive":
                        figures = naive_loop(world, ses.endpoint_url)
                    else:
                        children = _children_cpu()
                        profile = args.profile if run == args.runs else None
                        figures = newsletter_send(world, workers=args.workers, profile=profile)
                        figures["command_cpu"] = _children_cpu() - children
                    server_after = ses.counts()
                finally:
                    world.close()
                sends = server_after["sends"] - server_before["sends"]
                if sends != args.messages or figures["sent"] != args.messages:
                    raise SystemExit(f"{side}: the server took {sends} sends, {figures['sent']} reported sent")
                figures["connections"] = server_after["connections"] - server_before["connections"]
                figures["server_cpu"] = server_after["cpu"] - server_before["cpu"]
                row[side] = figures
            row["load_after"] = os.getloadavg()[0]
            rows.append(row)
            _print_run(run, row, args.messages)
    _print_summary(rows, args.messages)
    print(f"after: {_load()}")


def _empty(url: str) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from tests.databases import empty_database

    empty_database(url)


def _rate(figures: dict, messages: int) -> float:
    return messages / figures["wall"]


def _print_run(run: int, row: dict, messages: int) -> None:
    naive, ours = row["naive"], row["newsletter"]
    ratio = _rate(ours, messages) / _rate(naive, messages)
    print(
        f"run {run} (load {row['load_before']:.1f} -> {row['load_after']:.1f}): "
        f"naive {_rate(naive, messages):6.0f} msgs/s, {naive['cpu'] / messages * 1000:.2f} ms CPU/msg, "
        f"{naive['connections']} connection(s) | "
        f"newsletter send {_rate(ours, messages):6.0f} msgs/s, {ours['cpu'] / messages * 1000:.2f} ms CPU/msg, "
        f"{ours['workers']} workers, {ours['connections']} connections, "
        f"{len(ours['claims'])} claims of {statistics.mean(ours['claims']):.0f} rows and "
        f"{len(ours['records'])} records of {statistics.mean(ours['records']):.0f} rows (mean) | ratio {ratio:.2f}x | "
        f"server {naive['server_cpu'] / messages * 1e6:.0f} / {ours['server_cpu'] / messages * 1e6:.0f} us CPU/msg | "
        f"whole command {ours['command_wall']:.1f} s wall, {ours['command_cpu']:.1f} s CPU",
        flush=True,
    )


def _print_summary(rows: list[dict], messages: int) -> None:
    def median(values) -> float:
        return statistics.median(list(values))

    naive_rate = median(_rate(r["naive"], messages) for r in rows)
    ours_rate = median(_rate(r["newsletter"], messages) for r in rows)
    ratio = median(_rate(r["newsletter"], messages) / _rate(r["naive"], messages) for r in rows)
    size = rows[0]["naive"]["size"] / 1024
    print()
    print(f"medians of {len(rows)} runs, {messages} messages of {size:.0f} KB:")
    print(
        f"  naive sequential boto3 loop : {naive_rate:7.0f} msgs/s, "
        f"{median(r['naive']['cpu'] for r in rows) / messages * 1000:.2f} ms CPU/msg, "
        f"wall {median(r['naive']['wall'] for r in rows) / messages * 1000:.2f} ms/msg"
    )
    print(
        f"  newsletter send (campaign)  : {ours_rate:7.0f} msgs/s, "
        f"{median(r['newsletter']['cpu'] for r in rows) / messages * 1000:.2f} ms CPU/msg, "
        f"wall {median(r['newsletter']['wall'] for r in rows) / messages * 1000:.2f} ms/msg"
    )
    print(
        f"  newsletter send (command)   : {median(messages / r['newsletter']['command_wall'] for r in rows):7.0f} msgs/s, "
        f"{median(r['newsletter']['command_cpu'] for r in rows) / messages * 1000:.2f} ms CPU/msg (start-up included)"
    )
    print(f"  ratio (per run, median)     : {ratio:7.2f}x")


if __name__ == "__main__":
    main()
