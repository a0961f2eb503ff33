"""Does the time /subscribe takes to answer tell whether an address is already known?

    .venv/bin/python bench/bench_subscribe_timing.py [--requests 60] [--runs 3] [--pause 0.3]

Sets up a throwaway installation (newsletter.toml, SQLite, the outbox transport, 2,000
subscribers), starts the real `newsletter serve` in its own process, and POSTs the subscribe
form `--requests` times for known addresses (active members of the list, each asked for once:
no email is due)
and `--requests` times for unknown ones (a fresh address each time: a subscriber row, a
pending membership, a confirmation row and an email are due), in pairs of one of each in a
random order.  Each
request is a new connection, and the next starts `--pause` seconds later, once the server's
background work for the previous one has finished, so one request's work does not land in
another's time.

Prints, per run, the median and 90th percentile of the time to the full answer for each
kind, their ratio, the server's CPU time, and whether every answer was byte-identical; the
goal is the two medians within 10 % of each other.  The load average is printed as well:
the machine is shared, and wall times move with it.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.config import load_settings
from newsletter.store import Store
from newsletter.store.lists import get_or_create_list
from newsletter.store.schema import ACTIVE, memberships, subscribers, utcnow

SECRET = "bench-subscribe-7d2c9a4e1b6f3085c7e2a9d4b1f6c3e8"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(root: Path, port: int) -> Path:
    config = root / "newsletter.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [newsletter]
            name = "Bench"
            from = "Bench <bench@example.com>"
            base_url = "http://127.0.0.1:{port}"
            database = "sqlite:///{root / "newsletter.db"}"
            secret = "{SECRET}"
            list = "default"

            [transport]
            kind = "outbox"

            [transport.outbox]
            path = "outbox"

            [web]
            # The bench is one client sending 2 x 60 forms a run: no rate limit in the way.
            subscribe_rate_per_minute = 1000000
            """
        ),
        encoding="utf-8",
    )
    return config


def prepare(config: Path, count: int) -> None:
    settings = load_settings(config, environ={})
    with Store.open(settings.database_url) as store:
        now = utcnow()
        with store.begin() as conn:
            list_id = get_or_create_list(conn, "default")
            conn.execute(
                subscribers.insert(),
                [
                    {
                        "email": f"r{n:06d}@example.org",
                        "email_key": f"r{n:06d}@example.org",
                        "name": "",
                        "status": ACTIVE,
                        "attributes": {},
                        "source": "bench",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n in range(count)
                ],
            )
            stamp = sa.literal(now, type_=subscribers.c.created_at.type)
            conn.execute(
                memberships.insert().from_select(
                    ["list_id", "subscriber_id", "created_at", "status", "changed_at", "change_source"],
                    sa.select(
                        sa.literal(list_id), subscribers.c.id, stamp, sa.literal(ACTIVE), stamp, sa.literal("bench")
                    ),
                )
            )


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read() if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start listening")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def form_token(base_url: str) -> tuple[str, str]:
    """(cookie value, form field) from the form page, as a browser would have them."""
    with httpx.Client(base_url=base_url, headers={"User-Agent": BROWSER}) as browser:
        page = browser.get("/subscribe")
        page.raise_for_status()
        token = re.search(r'name="form_token" value="([^"]+)"', page.text).group(1)
        return browser.cookies["nl_form"], token


def one_run(base_url: str, requests: int, pause: float, run: int, server_pid: int, members: int) -> dict:
    cookie, token = form_token(base_url)
    # In pairs, one of each kind in a random order: a busy moment of the (shared) machine
    # then falls on both kinds alike instead of on whichever came in a row.
    shuffler = random.Random(run)
    plan = [kind for _ in range(requests) for kind in shuffler.sample(["known", "unknown"], 2)]
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    answers: set[tuple[int, str]] = set()
    cpu_before = cpu_seconds(server_pid)
    # A new connection per request (no keep-alive), so a request never waits behind the
    # previous one's background work on the same connection.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=base_url, limits=limits, headers={"User-Agent": BROWSER}) as client:
        client.cookies.set("nl_form", cookie)
        for n, kind in enumerate(plan):
            # Each address is used once: the address checks keep a cache (addresses.py), and
            # one known address asked for again and again would answer from it while every
            # unknown one could not.  Same domain and length for both kinds, for the same reason.
            serial = run * 2 * requests + n
            email = f"r{serial % members:06d}@example.org" if kind == "known" else f"u{serial:06d}@example.org"
            data = {"email": email, "name": "", "list": "default", "form_token": token}
            started = time.perf_counter()
            answer = client.post("/subscribe", data=data)
            times[kind].append(time.perf_counter() - started)
            answers.add((answer.status_code, answer.text))
            time.sleep(pause)
    cpu = cpu_seconds(server_pid) - cpu_before
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    p90 = {kind: statistics.quantiles(values, n=10)[-1] for kind, values in times.items()}
    return {"median": medians, "p90": p90, "cpu": cpu, "identical": len(answers) == 1, "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per kind and run (default 60)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between requests (default 0.3)")
    parser.add_argument("--subscribers", type=int, default=2000)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-subscribe-"))
    server = None
    try:
        port = free_port()
        config = write_config(root, port)
        prepare(config, args.subscribers)
        server = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", str(port)],
            cwd=root,
            env={k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_listening(port, server)
        base_url = f"http://127.0.0.1:{port}"
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"{args.requests} known + {args.requests} unknown requests per run, {args.pause} s apart")
        ratios = []
        for run in range(args.runs):
            result = one_run(base_url, args.requests, args.pause, run, server.pid, args.subscribers)
            known, unknown = result["median"]["known"] * 1000, result["median"]["unknown"] * 1000
            ratio = unknown / known
            ratios.append(ratio)
            print(
                f"run {run + 1}: median known {known:.2f} ms, unknown {unknown:.2f} ms, ratio {ratio:.3f}; "
                f"p90 known {result['p90']['known'] * 1000:.2f} ms, unknown {result['p90']['unknown'] * 1000:.2f} ms; "
                f"server CPU {result['cpu']:.2f} s; answers identical: {result['identical']}"
            )
        outbox = len(list((root / "outbox" / "new").iterdir())) if (root / "outbox" / "new").is_dir() else 0
        print(f"confirmation emails in the outbox: {outbox} (expected {args.runs * args.requests})")
        print(f"ratio unknown/known, median of runs: {statistics.median(ratios):.3f} (goal: within 0.90-1.10)")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
