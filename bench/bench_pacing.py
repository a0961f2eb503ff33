"""Pacing: `newsletter send --rate 50` for 60 seconds against the local SES server.

Reads LocalSes's arrival time of every SendEmail request (the server runs in a process of
its own; CLOCK_MONOTONIC is shared) and reports the achieved rate (goal: within 2 % of
50) and the most sends in any one-second window [t, t + 1 s) (goal: never above 50),
which is how SES counts MaxSendRate.  The account itself allows 1,000/s, so only the
pacer limits the rate.

    .venv/bin/python bench/bench_pacing.py [--rate 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import itertools

from local_ses_process import SesProcess


class _Endpoint:
    def __init__(self, url: str) -> None:
        self.endpoint_url = url
        self.region = "us-east-1"


class StampedTransport:
    """The real SES transport, noting the moment the pacer let each send go.  Comparing with the server's arrival times separates the pacer from the way."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.started: list[float] = []

    def send(self, message, **kwargs):
        self.started.append(time.monotonic())
        return self.inner.send(message, **kwargs)

    def send_paced(self, message, *, pace, **kwargs):
        # The campaign paces SES at the wire (after signing): stamp when the pacer releases.
        def stamped() -> bool:
            released = pace()
            self.started.append(time.monotonic())
            return released

        return self.inner.send_paced(message, pace=stamped, **kwargs)

    def close(self) -> None:
        self.inner.close()


def windows(times: list[float], length: float = 1.0) -> list[int]:
    """For each request, how many requests fall in [its time, its time + length)."""
    times = sorted(times)
    counts, end = [], 0
    for start, at in enumerate(times):
        while end < len(times) and times[end] < at + length:
            end += 1
        counts.append(end - start)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=None, help="sending threads (default: what the campaign picks)")
    parser.add_argument(
        "--fast-server", action="store_true", help="LocalSes answers sends without moto (see local_ses_process.py)"
    )
    args = parser.parse_args()

    from newsletter.sending.campaign import run_send
    from newsletter.sending.pacing import PACE_MARGIN
    from newsletter.transports.configured import open_transport
    from tests.send_world import SENDER, World

    count = int(args.rate * args.seconds) + 1
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(
        f"server: LocalSes in its own process, sends answered by {'the quota layer alone (--fast-server)' if args.fast_server else 'moto'}"
    )
    with SesProcess(fast=args.fast_server) as ses, tempfile.TemporaryDirectory(prefix="bench-pacing-") as scratch:
        os.environ.update(ses.environ)
        ses.call("verify", SENDER)
        ses.call("set_quota", max_send_rate=1000, max_24_hour_send=-1)
        world = World(Path(scratch), f"sqlite:///{scratch}/newsletter.db")
        world.use_ses(_Endpoint(ses.endpoint_url))
        world.add_subscribers(count)
        plan = world.plan(rate=args.rate, workers=args.workers)
        transport = StampedTransport(open_transport(plan.settings, workers=plan.workers))
        started = time.monotonic()
        summary = run_send(plan, transport=transport)
        elapsed = time.monotonic() - started
        transport.close()
        assert summary.sent == count and summary.complete, summary
        times = sorted(ses.request_times(status=None))

    assert len(times) == count, len(times)
    span = times[-1] - times[0]
    achieved = (len(times) - 1) / span
    per_window = windows(times)
    worst = max(per_window)
    histogram = collections.Counter(per_window)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(
        f"--rate {args.rate:g}: {count} sends in {span:.2f} s at the server ({elapsed:.1f} s for the whole run_send), "
        f"{plan.workers} workers, pacer margin {PACE_MARGIN:.1%}"
    )
    print(
        f"  achieved rate at the server : {achieved:.2f}/s ({(achieved / args.rate - 1):+.2%} of {args.rate:g}; goal within 2 %: "
        f"{'met' if abs(achieved / args.rate - 1) <= 0.02 else 'MISSED'})"
    )
    print(
        f"  most sends in any 1 s window: {worst} (goal never above {args.rate:g}: {'met' if worst <= args.rate else 'MISSED'})"
    )
    print(
        "  windows holding N sends     : "
        + ", ".join(f"{n}: {histogram[n]}" for n in sorted(histogram) if n >= args.rate - 2)
    )
    print(
        f"  gaps between arrivals       : min {min(gaps) * 1000:.1f} ms, median {sorted(gaps)[len(gaps) // 2] * 1000:.1f} ms, "
        f"max {max(gaps) * 1000:.1f} ms (nominal {1000 / args.rate:.1f} ms)"
    )
    released = sorted(transport.started)
    delays = sorted(arrived - left for arrived, left in zip(times, released, strict=False))
    print(f"  most in any 1 s as released : {max(windows(released))} (send calls begun, in this process)")
    print(
        f"  release -> arrival          : median {delays[len(delays) // 2] * 1000:.1f} ms, "
        f"99th percentile {delays[int(len(delays) * 0.99)] * 1000:.1f} ms, max {delays[-1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
