"""LocalSes (tests/transport_servers.py) in a process of its own, for the SES benchmarks.

In the benchmark's own process moto's request handling would compete with the sender for
the GIL, which both slows the sender and shifts the arrival times being measured.  Real SES
is another machine; another process is the nearest thing here.

    with SesProcess() as ses:              # starts `python bench/local_ses_process.py`
        ses.call("set_quota", max_send_rate=50)
        ses.call("verify", "digest@example.com")
        ...send to ses.endpoint_url...
        times = ses.request_times()        # time.monotonic() of each SendEmail arrival

CLOCK_MONOTONIC is one clock for every process on Linux, so the server's timestamps compare
with the benchmark's.  The control calls are an extra route on the same WSGI server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parent.parent
CONTROL = "/_bench/"


class SesProcess:
    """`fast=True`: SendEmail requests pass LocalSes's quota, throttling and timestamping as
    usual but are then answered at once instead of by moto, whose parsing and storing of
    each ~70 KB message (tens of ms of Python) would otherwise set the ceiling."""

    def __init__(self, *, fast: bool = False, latency: float = 0.0) -> None:
        self.fast = fast
        # Seconds each SendEmail answer is held back, standing in for the round trip to SES
        # over the internet (tens of ms), which loopback lacks.
        self.latency = latency
        self.process: subprocess.Popen | None = None
        self.endpoint_url = ""
        self.environ: dict[str, str] = {}

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, __file__, *(["--fast"] if self.fast else []), f"--latency={self.latency}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        started = json.loads(self.process.stdout.readline())
        self.endpoint_url = started["endpoint_url"]
        self.environ = started["environ"]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def call(self, method: str, *args, **kwargs):
        body = json.dumps({"method": method, "args": args, "kwargs": kwargs}).encode()
        request = urllib.request.Request(self.endpoint_url + CONTROL, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def request_times(self, status: int | None = 200) -> list[float]:
        """Arrival times of the SendEmail requests answered `status` (None: all)."""
        return [at for at, answered in self.call("requests") if status is None or answered == status]


def _serve() -> None:
    sys.path.insert(0, str(REPO))
    from tests.transport_servers import LocalSes

    class ControlledSes(LocalSes):
        def _app(self, environ, start_response):
            if environ.get("PATH_INFO") == CONTROL:
                call = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
                if call["method"] == "requests":
                    with self._lock:
                        result = [(request.at, request.status) for request in self.requests]
                elif call["method"] in ("verify", "set_quota", "throttle_share", "reset"):
                    result = getattr(self, call["method"])(*call["args"], **call["kwargs"])
                elif call["method"] == "accepted_count":
                    result = self.accepted_count
                else:
                    raise ValueError(call["method"])
                payload = json.dumps(result).encode()
                start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
                return [payload]
            return super()._app(environ, start_response)

    server = ControlledSes().start()
    latency = float(next((arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("--latency=")), 0))
    if latency:
        import time

        send_email = server._send_email

        def answer_late(environ, start_response):
            time.sleep(latency)
            return send_email(environ, start_response)

        server._send_email = answer_late
    if "--fast" in sys.argv:
        import uuid

        moto = server._moto

        def answer_sends_at_once(environ, start_response):
            if environ.get("PATH_INFO") == "/v2/email/outbound-emails":
                payload = json.dumps({"MessageId": uuid.uuid4().hex}).encode()
                start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
                return [payload]
            return moto(environ, start_response)

        server._moto = answer_sends_at_once
    print(json.dumps({"endpoint_url": server.endpoint_url, "environ": server.environ}), flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    _serve()
