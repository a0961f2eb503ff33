"""A local SES API v2 stand-in that answers at once and uses little CPU (asyncio).

The SES benchmark measures the sender, so the server must cost next to nothing on the same
2 cores: moto parses and stores every message in Python (~15 ms each) and werkzeug closes
every connection after one answer.  This server reads each request (the head up to the
blank line, then Content-Length bytes of body, RFC 9112 sections 2 and 6), answers
`SendEmail` with a fresh MessageId and `GetAccount` with the quota it was given, and keeps
connections open between requests (HTTP/1.1 persistent connections, RFC 9112 section 9.3).
It verifies nothing: not the signature, not the JSON.

Two ways to use it:

- in-process on a thread of its own, for the tests, which read back what arrived on the
  wire and script answers:

      with InstantSes(record=True) as ses:
          ses.script(Answer(429, b'{"message": "Maximum sending rate exceeded."}',
                            {"x-amzn-ErrorType": "TooManyRequestsException"}), DROP)
          ...send to ses.endpoint_url...
          ses.requests[0].headers["authorization"], ses.connections

- as a process of its own, for the benchmarks (`SesStandIn` starts it):

      python bench/instant_ses.py [--latency SECONDS]

  prints one JSON line `{"endpoint_url": ...}` and serves until terminated;
  `GET /_bench/counts` answers {"sends", "connections", "bytes", "cpu"} (cpu: this
  process's user + system seconds) and `POST /_bench/reset` zeroes the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Self

LOOPBACK = "127.0.0.1"
SEND_EMAIL = "/v2/email/outbound-emails"
GET_ACCOUNT = "/v2/email/account"
CONTROL = "/_bench/"
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}


@dataclass(frozen=True)
class WireRequest:
    """One request as it arrived: the request line, the header fields and the body bytes."""

    method: str
    target: str  # the request-target, exactly as sent (path and query)
    headers: dict[str, str]  # field names lowercased; a repeated field's values joined by ","
    body: bytes
    connection: int  # which connection it came on, counting from 1

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    """A scripted answer to the next SendEmail: status, body and extra header fields; or
    `raw` bytes written as they are (any framing, or an answer cut short), after which the
    connection is closed if `hang_up`."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    hang_up: bool = False


# A scripted "answer": read the whole request, then close the connection without a word,
# as a server that crashed after taking a message would.
DROP = Answer(0)


class InstantSes:
    """The stand-in on 127.0.0.1 at a free port; see the module docstring.

    `prefix`: serve under this path (`http://127.0.0.1:PORT/prefix/v2/email/...`), as an
    SES-compatible server or a proxy may.  `record`: keep every request (the tests); the
    benchmarks only count.  `ssl_context`: serve HTTPS.  `latency`: seconds each SendEmail
    answer is held back, standing in for the round trip to SES over the internet.
    """

    def __init__(
        self,
        *,
        prefix: str = "",
        record: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        latency: float = 0.0,
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.record = record
        self.ssl_context = ssl_context
        self.latency = latency
        self.quota = {"Max24HourSend": -1.0, "MaxSendRate": 100_000.0, "SentLast24Hours": 0.0}
        self.requests: list[WireRequest] = []
        self.connections = 0
        self.sends = 0
        self.bytes = 0
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._idle: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        host = "localhost" if self.ssl_context else LOOPBACK
        return f"{scheme}://{host}:{self.port}{self.prefix}"

    def script(self, *answers: Answer) -> None:
        """Answer the next SendEmail requests so, in order; then back to accepting."""
        with self._lock:
            self._script.extend(answers)

    def hang_up_idle(self) -> int:
        """Close every connection that is waiting for its next request, as a server whose
        keep-alive timeout ran out would; how many were closed."""
        assert self._loop is not None

        async def close_idle() -> int:
            idle = list(self._idle)
            for writer in idle:
                writer.close()
            return len(idle)

        return asyncio.run_coroutine_threadsafe(close_idle(), self._loop).result(timeout=30)

    def reset(self) -> None:
        with self._lock:
            self.requests = []
            self.connections = self.sends = self.bytes = 0
            self._script.clear()

    # ---- life cycle, on a thread of its own ----

    def start(self) -> Self:
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(self.listen())
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="instant-ses", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the SES stand-in did not start")
        return self

    async def listen(self) -> asyncio.Server:
        server = await asyncio.start_server(self._connection, LOOPBACK, 0, ssl=self.ssl_context)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop = None

    async def _close(self) -> None:
        # Open keep-alive connections wait in readuntil: closing them ends each handler
        # with an IncompleteReadError (cancelling instead trips Python 3.11's streams).
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- HTTP/1.1 ----

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
            number = self.connections
        self._writers.add(writer)
        try:
            while True:
                self._idle.add(writer)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                finally:
                    self._idle.discard(writer)
                request_line, *fields = head[:-4].decode("latin-1").split("\r\n")
                method, target, _version = request_line.split(" ", 2)
                headers: dict[str, str] = {}
                for line in fields:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    headers[name] = f"{headers[name]},{value.strip()}" if name in headers else value.strip()
                length = int(headers.get("content-length", "0"))
                try:
                    body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                answer = await self._answer(WireRequest(method, target, headers, body, number))
                if answer is DROP:
                    return
                if isinstance(answer, Answer):  # scripted raw bytes
                    writer.write(answer.raw or b"")
                    await writer.drain()
                    if answer.hang_up:
                        return
                    continue
                writer.write(answer)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, request: WireRequest) -> bytes | Answer:
        path = request.target.partition("?")[0]
        if request.target.startswith(CONTROL):
            return self._control(request)
        if self.record:
            with self._lock:
                self.requests.append(request)
        if not path.startswith(self.prefix + "/"):
            return _response(404, b'{"message": "not found"}')
        path = path[len(self.prefix) :]
        if request.method == "POST" and path == SEND_EMAIL:
            with self._lock:
                scripted = self._script.popleft() if self._script else None
                if scripted is None:
                    self.sends += 1
                    self.bytes += len(request.body)
                    message_id = f"0100019a-{self.sends:08d}-instant"
            if self.latency:
                await asyncio.sleep(self.latency)
            if scripted is DROP or (scripted is not None and scripted.raw is not None):
                return scripted
            if scripted is not None:
                return _response(scripted.status, scripted.body, scripted.headers)
            return _response(200, b'{"MessageId":"%s"}' % message_id.encode())
        if request.method == "GET" and path == GET_ACCOUNT:
            account = {
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": True,
                "SendQuota": self.quota,
                "SendingEnabled": True,
            }
            return _response(200, json.dumps(account).encode())
        return _response(404, b'{"message": "not found"}')

    def _control(self, request: WireRequest) -> bytes:
        if request.method == "POST" and request.target == CONTROL + "reset":
            self.reset()
        usage = os.times()
        with self._lock:
            counts = {
                "sends": self.sends,
                "connections": self.connections,
                "bytes": self.bytes,
                "cpu": usage.user + usage.system,
            }
        return _response(200, json.dumps(counts).encode())


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in fields.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


class SesStandIn:
    """`python bench/instant_ses.py` in a process of its own, for the benchmarks.

    Real SES is another machine; another process is the nearest thing here: in the
    benchmark's own process the server would compete with the sender for the GIL.
    """

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.process: subprocess.Popen | None = None
        self.endpoint_url = ""

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, __file__, f"--latency={self.latency}"], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.endpoint_url = json.loads(self.process.stdout.readline())["endpoint_url"]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def counts(self, *, reset: bool = False) -> dict:
        """sends, connections, bytes and the server's CPU seconds so far."""
        request = urllib.request.Request(
            self.endpoint_url + CONTROL + ("reset" if reset else "counts"), method="POST" if reset else "GET"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


def main() -> None:
    parser = argparse.ArgumentParser(description="An SES stand-in that answers at once (see the module docstring).")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to hold each SendEmail answer")
    args = parser.parse_args()
    server = InstantSes(latency=args.latency)

    async def serve() -> None:
        listening = await server.listen()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        print(json.dumps({"endpoint_url": server.endpoint_url}), flush=True)
        await stop.wait()
        listening.close()

    try:
        import uvloop  # uvicorn[standard] brings it: the cheapest event loop at hand
    except ImportError:  # pragma: no cover - the plain asyncio loop serves too
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
