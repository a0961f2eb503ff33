"""The open pixel under load: `newsletter serve` against wrk, recording to SQLite.

    .venv/bin/python bench/bench_pixel.py [--subscribers 2000] [--duration 10] [--connections 50]
                                          [--database URL] [--direct]

Sets up a throwaway installation (newsletter.toml, SQLite file, the example issue sent through
the outbox to --subscribers readers), starts the real `newsletter serve` in its own process,
and points wrk (Debian's package) at the pixel URLs of every recipient in turn, with a
browser's user agent.  Then it stops the server with SIGINT, as Ctrl-C or systemd would, and
counts the open events stored: every request wrk saw answered must be there (a few more
may be, for requests in flight when wrk stopped), none may be missing.

--direct serves a bare pixel endpoint that commits one event per hit instead (no buffer),
for comparison: the reason newsletter/feedback/hits.py exists.

Prints requests/s, latency percentiles, errors, rows stored, and the CPU the server used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.config import load_settings
from newsletter.sending.campaign import run_send
from newsletter.sending.plan import SendOptions, plan_send
from newsletter.store import Store
from newsletter.store.lists import get_or_create_list
from newsletter.store.schema import (
    ACTIVE,
    OPEN,
    events,
    memberships,
    subscribers,
    utcnow,
)
from newsletter.tokens import Links, Tokens

SECRET = "bench-pixel-5b1e0c7a9d3f4e2a8c6b0d1f3e5a7c9b"
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"

WRK_SCRIPT = """
-- Cycle through one pixel path per recipient, as their mail clients would ask for them.
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local counter = 0
wrk.headers["User-Agent"] = "%(agent)s"
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
"""

# --direct: the same pixel with one database transaction per hit, no buffer.
DIRECT_APP = """
import sys
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route
from newsletter.config import load_settings
from newsletter.errors import TokenError
from newsletter.store import Store
from newsletter.store.events import record_event
from newsletter.store.schema import OPEN
from newsletter.tokens import Purpose, Tokens
from newsletter.web.tracking import NO_CACHE, PIXEL_GIF

settings = load_settings(sys.argv[1])
store = Store.open(settings.database_url)
tokens = Tokens(settings.newsletter.secret)

def record(claim, agent):
    with store.begin() as conn:
        record_event(conn, kind=OPEN, issue_id=claim.issue_id, subscriber_id=claim.subscriber_id, user_agent=agent)

async def pixel(request):
    try:
        claim = tokens.verify(request.path_params["name"][:-4], Purpose.OPEN)
        await run_in_threadpool(record, claim, request.headers.get("user-agent"))
    except TokenError:
        pass
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_CACHE)

app = Starlette(routes=[Route("/o/{name}", pixel)])
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(root: Path, database: str, port: int) -> Path:
    config = root / "newsletter.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [newsletter]
            name = "Bench"
            from = "Bench <bench@example.com>"
            base_url = "http://127.0.0.1:{port}"
            database = "{database}"
            secret = "{SECRET}"
            list = "default"

            [transport]
            kind = "outbox"

            [transport.outbox]
            path = "outbox"
            """
        ),
        encoding="utf-8",
    )
    return config


def prepare(config: Path, count: int) -> list[str]:
    """Subscribers, the example issue sent to them; returns one pixel path per recipient."""
    settings = load_settings(config, environ={})
    with Store.open(settings.database_url) as store:
        now = utcnow()
        with store.begin() as conn:
            list_id = get_or_create_list(conn, "default")
            conn.execute(
                subscribers.insert(),
                [
                    {
                        "email": f"r{n}@example.org",
                        "email_key": f"r{n}@example.org",
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
            ids = conn.execute(sa.select(subscribers.c.id)).scalars().all()
            conn.execute(
                memberships.insert(), [{"list_id": list_id, "subscriber_id": i, "created_at": now} for i in ids]
            )
        issue = REPO / "issues" / "2026-11-30.md"
        plan = plan_send(settings, store, issue, SendOptions())
        summary = run_send(plan)
        assert summary.sent == count, summary
        links = Links(settings.base_url, Tokens(settings.newsletter.secret))
        prefix = len(settings.base_url)
        return [links.open_pixel(plan.stored.id, subscriber_id)[prefix:] for subscriber_id in ids]


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
    """User + system seconds of `pid` and of its live children (serve --workers' processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return own + sum(cpu_seconds(int(child)) for child in children)


def parse_wrk(output: str) -> dict:
    def number(pattern: str, default: str = "0") -> str:
        found = re.search(pattern, output, re.MULTILINE)
        return found.group(1) if found else default

    def millis(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests": int(number(r"(\d+) requests in")),
        "requests_per_second": float(number(r"Requests/sec:\s+([\d.]+)")),
        "p50_ms": millis(number(r"^\s+50%\s+(\S+)", "0us")),
        "p99_ms": millis(number(r"^\s+99%\s+(\S+)", "0us")),
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "non_2xx": int(number(r"Non-2xx or 3xx responses: (\d+)")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--direct", action="store_true", help="one commit per hit, no buffer (for comparison)")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (above 1 needs PostgreSQL)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    root = Path(tempfile.mkdtemp(prefix="bench-pixel-"))
    try:
        port = free_port()
        database = args.database or f"sqlite:///{root / 'newsletter.db'}"
        config = write_config(root, database, port)
        paths = prepare(config, args.subscribers)
        (root / "paths.txt").write_text("\n".join(paths) + "\n")
        (root / "pixel.lua").write_text(WRK_SCRIPT % {"paths": root / "paths.txt", "agent": BROWSER})

        env = {key: value for key, value in os.environ.items() if not key.startswith("NEWSLETTER_")}
        if args.direct:
            (root / "direct.py").write_text(DIRECT_APP)
            command = [sys.executable, str(root / "direct.py"), str(config), str(port)]
            env["PYTHONPATH"] = str(REPO)
        else:
            command = [sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", str(port)]
            command += ["--workers", str(args.workers)]
        server = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_until_listening(port, server)
            cpu_before = cpu_seconds(server.pid)
            load_before = os.getloadavg()[0]
            wrk = subprocess.run(
                [
                    "wrk",
                    f"-t{args.threads}",
                    f"-c{args.connections}",
                    f"-d{args.duration}s",
                    "--latency",
                    "-s",
                    str(root / "pixel.lua"),
                    f"http://127.0.0.1:{port}/",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            server_cpu = cpu_seconds(server.pid) - cpu_before
        finally:
            # SIGINT, as Ctrl-C: uvicorn finishes the requests in flight, then the lifespan
            # shutdown writes the buffered hits.
            server.send_signal(signal.SIGINT)
            stopped_at = time.monotonic()
            server.wait(timeout=60)
            shutdown_seconds = time.monotonic() - stopped_at
        figures = parse_wrk(wrk.stdout)
        with Store.open(database) as store, store.read() as conn:
            rows = conn.execute(
                sa.select(sa.func.count()).select_from(events).where(events.c.kind == OPEN)
            ).scalar_one()
        figures.update(
            mode="direct (one commit per hit)" if args.direct else "newsletter serve (buffered)",
            database=store.dialect,
            workers=args.workers,
            rows=rows,
            missing=max(0, figures["requests"] - rows),
            server_cpu_seconds=round(server_cpu, 2),
            shutdown_seconds=round(shutdown_seconds, 2),
            load_average_before=round(load_before, 2),
            cpus=os.cpu_count(),
        )
        if args.json:
            print(json.dumps(figures, indent=2))
            return
        print(
            f"{figures['mode']} on {figures['database']}, {args.workers} worker(s), {args.connections} connections, "
            f"{args.duration} s, "
            f"{os.cpu_count()} CPUs (load {load_before:.2f} before)"
        )
        print(f"  requests/s      {figures['requests_per_second']:10.0f}")
        print(f"  latency p50/p99 {figures['p50_ms']:7.2f} / {figures['p99_ms']:.2f} ms")
        print(f"  errors          {figures['socket_errors']:10d} socket, {figures['non_2xx']} non-2xx")
        print(f"  answered        {figures['requests']:10d}")
        print(f"  rows stored     {rows:10d}  (missing: {figures['missing']})")
        print(f"  server CPU      {server_cpu:10.1f} s   shutdown {shutdown_seconds:.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
