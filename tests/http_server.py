"""An ASGI app served by a real uvicorn on 127.0.0.1, in a background thread, for tests.

    from http_server import run_asgi_in_thread

    with run_asgi_in_thread(app) as base_url:      # "http://127.0.0.1:PORT"
        httpx.get(base_url + "/")

or, as a pytest plugin (`pytest_plugins = ["http_server"]`), the fixture `serve_asgi`:
`base_url = serve_asgi(app)`, stopped when the test ends.

The socket is bound here (port 0: the kernel picks a free port) and handed to uvicorn, so
there is no window in which another process could take the port between choosing and
binding it.  Lifespan events run as in production.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 15.0


@contextlib.contextmanager
def run_asgi_in_thread(app: Any, *, host: str = LOOPBACK, tls: Any = None) -> Iterator[str]:
    """Serve `app` until the block ends; yields the base URL without a trailing slash.

    `tls`: a transport_servers.TlsCertificate to serve https with (clients trust it through
    its `certfile`, e.g. SSL_CERT_FILE)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    certificates = {"ssl_certfile": str(tls.certfile), "ssl_keyfile": str(tls.keyfile)} if tls else {}
    config = uvicorn.Config(app, log_level="warning", lifespan="auto", access_log=False, **certificates)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            # uvicorn installs no signal handlers outside the main thread.
            server.run(sockets=[sock])
        except BaseException as err:  # noqa: BLE001 - reported to the test below, not lost in the thread
            failure.append(err)

    thread = threading.Thread(target=serve, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if failure or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"uvicorn did not start: {failure[0] if failure else 'thread ended'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"uvicorn did not start within {START_TIMEOUT_SECONDS} s")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def serve_asgi() -> Iterator:
    """`serve_asgi(app) -> base_url`; every server started is stopped after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda app, **kwargs: stack.enter_context(run_asgi_in_thread(app, **kwargs))
