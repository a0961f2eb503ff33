"""Sending to the local SES server: `run_send` against a naive sequential boto3 loop.

Both send the same personal messages of the example issue to the same number of
subscribers through LocalSes (moto behind the quota layer, in a process of its own, with
no rate limit: MaxSendRate 100,000).  The naive loop is what a first script would do: one
boto3 client, `send_email` with Content.Raw for one message after another; its messages
are built before the clock starts, so it is timed on sending alone.  `run_send` is timed
whole: claiming, building, sending from its worker threads, recording in the ledger.

    .venv/bin/python bench/bench_ses_send.py [--messages 1000] [--workers N]

The server is moto in Python on the same 2-core machine: it parses every 140 KB message
it is sent, so it is the ceiling for both, not SES.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from local_ses_process import SesProcess


class _Endpoint:
    def __init__(self, url: str) -> None:
        self.endpoint_url = url
        self.region = "us-east-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None, help="run_send workers (default: what the campaign picks)")
    parser.add_argument(
        "--fast-server", action="store_true", help="LocalSes answers sends without moto (see local_ses_process.py)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="ms each send is held at the server, like an internet round trip"
    )
    args = parser.parse_args()

    import boto3

    from newsletter.mail.message import MessageFactory, Recipient
    from newsletter.sending.campaign import run_send
    from newsletter.tokens import Links, Tokens
    from tests.send_world import SENDER, World

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(
        f"server: LocalSes in its own process, sends answered by {'the quota layer alone (--fast-server)' if args.fast_server else 'moto'}"
    )
    if args.latency:
        print(f"each SendEmail answered {args.latency:g} ms late (a stand-in for the round trip to SES)")
    with (
        SesProcess(fast=args.fast_server, latency=args.latency / 1000) as ses,
        tempfile.TemporaryDirectory(prefix="bench-ses-") as scratch,
    ):
        os.environ.update(ses.environ)
        ses.call("verify", SENDER)
        ses.call("set_quota", max_send_rate=100_000, max_24_hour_send=-1)

        # The naive loop goes first, sending the messages run_send will send next (the same
        # bytes, Date aside); moto keeps both sets apart by MessageId.
        root = Path(scratch) / "campaign"
        root.mkdir()
        world = World(root, f"sqlite:///{root / 'newsletter.db'}")
        world.use_ses(_Endpoint(ses.endpoint_url))
        world.add_subscribers(args.messages)

        plan = world.plan(workers=args.workers)
        factory = MessageFactory(
            plan.settings,
            plan.rendered,
            issue_id=plan.stored.id,
            issue_uid=plan.stored.uid,
            list_slug=plan.list_slug,
            links=Links(plan.settings.base_url, Tokens(plan.settings.newsletter.secret)),
        )
        messages = [
            factory.build(Recipient(subscriber_id, email)).data
            for subscriber_id, email in sorted(world.emails().items())
        ]
        size = sum(map(len, messages)) / len(messages) / 1024
        client = boto3.session.Session().client("sesv2", region_name="us-east-1", endpoint_url=ses.endpoint_url)
        client.get_account()  # connection and endpoint resolution outside the timing
        started = time.monotonic()
        for data, (_subscriber_id, email) in zip(messages, sorted(world.emails().items()), strict=True):
            client.send_email(
                FromEmailAddress=SENDER,
                Destination={"ToAddresses": [email]},
                Content={"Raw": {"Data": data}},
                EmailTags=[{"Name": "issue", "Value": plan.stored.slug}, {"Name": "list", "Value": "default"}],
            )
        naive_elapsed = time.monotonic() - started
        naive_rate = len(messages) / naive_elapsed
        client.close()

        summary = run_send(plan)
        assert summary.sent == args.messages and summary.complete, summary
        accepted = ses.call("accepted_count")
        assert accepted == 2 * args.messages, accepted

        print(
            f"{args.messages} messages of {size:.0f} KB each; run_send with {plan.workers} workers (rate: none set, account allows 100,000/s)"
        )
        print(f"  naive sequential boto3 loop : {naive_rate:8.1f} msgs/s  ({naive_elapsed:.1f} s, sending only)")
        print(
            f"  run_send                    : {summary.rate:8.1f} msgs/s  ({summary.elapsed:.1f} s, build + send + ledger)"
        )
        print(f"  ratio                       : {summary.rate / naive_rate:8.2f}x")


if __name__ == "__main__":
    main()
