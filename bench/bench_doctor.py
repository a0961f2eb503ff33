"""Benchmark: wall and CPU time of `newsletter doctor` against local servers (issue 13: under 2 s).

    .venv/bin/python bench/bench_doctor.py             # 7 runs
    .venv/bin/python bench/bench_doctor.py --runs 15

Starts, in this process, a DNS server (dnslib, tests/dns_server.py) serving a good zone for
example.com, moto's SES behind LocalSes (tests/transport_servers.py) with the domain verified
and a configuration set publishing bounces and complaints, and `newsletter serve` over
https; then runs the installed `newsletter doctor --json` as an editor would, once per run in
a fresh process (so imports and boto3's client set-up count), and prints the median and best
wall time with the child's CPU time.  Prints figures only; the goal is checked by reading.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

GOAL_SECONDS = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs

    import boto3
    from dns_server import LocalDns
    from transport_servers import LocalSes, make_certificate

    from tests.send_world import World
    from tests.web_site import served

    with tempfile.TemporaryDirectory() as scratch, LocalDns() as dns, LocalSes() as ses:
        root = Path(scratch)
        certificate = make_certificate(root / "tls")
        dns.add("example.com", "TXT", "v=spf1 include:amazonses.com ~all")
        dns.add("example.com", "MX", "10 mx.example.com.")
        dns.add("_dmarc.example.com", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com")
        ses.verify("example.com")
        ses.client().create_configuration_set(ConfigurationSetName="bench-events")
        boto3.client(
            "ses",
            region_name=ses.region,
            endpoint_url=ses.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_configuration_set_event_destination(
            ConfigurationSetName="bench-events",
            EventDestination={
                "Name": "bench",
                "Enabled": True,
                "MatchingEventTypes": ["bounce", "complaint"],
                "SNSDestination": {"TopicARN": "arn:aws:sns:us-east-1:123456789012:bench"},
            },
        )
        world = World(root / "world", f"sqlite:///{root / 'newsletter.db'}")
        with served(world, tls=certificate):
            world.use_ses(ses, configuration_set="bench-events")
            world.configure("doctor", nameservers=dns.nameserver)
            command = [str(Path(sys.executable).with_name("newsletter")), "--config", str(world.config_path)]
            if not Path(command[0]).exists():
                command = [sys.executable, "-m", "newsletter", "--config", str(world.config_path)]
            env = {**os.environ, **ses.environ, "SSL_CERT_FILE": str(certificate.certfile)}
            walls, cpus = [], []
            for _ in range(runs):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                result = subprocess.run(
                    [*command, "doctor", "--json"], capture_output=True, text=True, env=env, check=False
                )
                walls.append(time.perf_counter() - started)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
                if result.returncode not in (0, 1):
                    raise SystemExit(f"doctor failed: {result.stderr}")
            checks = result.stdout.count('"status"')
        world.close()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {runs} runs, {checks} checks each")
    print(f"newsletter doctor   median {statistics.median(walls):.2f} s   best {min(walls):.2f} s wall")
    print(f"                    median {statistics.median(cpus):.2f} s   best {min(cpus):.2f} s CPU (the child)")
    print(f"goal: under {GOAL_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
