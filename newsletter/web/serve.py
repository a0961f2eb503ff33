"""`newsletter serve`: the app under uvicorn.

For production behind a reverse proxy, or under another ASGI server, see docs/deploy.md;
this is the same app with uvicorn's defaults chosen for that setup.
"""

from __future__ import annotations

from collections.abc import Callable

from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.sending.schedule import ScheduleRunner
from newsletter.store import Store
from newsletter.web.app import create_app
from newsletter.web.context import WebContext
from newsletter.web.refusals import refuse_unsafe_settings


def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, announce: Callable[[], None] | None = None
) -> None:
    """Serve until interrupted; a clean stop writes every buffered tracking hit first.
    `announce` runs once the port is known to be free."""
    import uvicorn

    from newsletter.web.bounded_http import MAX_HEAD_BYTES, BoundedH11Protocol

    # create_app refuses the same again; here first, with the address we listen on.
    refuse_unsafe_settings(settings, listen_host=host)
    refuse_port_in_use(host, port)
    with Store.open(settings.database_url) as store:
        app = create_app(WebContext.create(settings, store))
        if announce is not None:
            announce()
        # Scheduled sends (`send --at`) go out from a background thread while the server
        # runs; a stop (Ctrl-C, SIGTERM) lets a send in progress finish its messages in flight.
        with ScheduleRunner(settings, store):
            uvicorn.run(
                app,
                host=host,
                port=port,
                # X-Forwarded-For/-Proto are believed only from the addresses in
                # $FORWARDED_ALLOW_IPS (uvicorn's default: 127.0.0.1, a proxy on this machine), so
                # a client cannot pick its own address to dodge the subscribe rate limit.
                proxy_headers=True,
                # Access logs would write every unsubscribe and confirmation URL (each one a
                # capability) to disk, and a line per pixel; the reverse proxy logs requests.
                access_log=False,
                log_level="info",
                lifespan="on",
                # Bounded request heads, in size and in time (newsletter/web/bounded_http.py).
                http=BoundedH11Protocol,
                h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            )


def refuse_port_in_use(host: str, port: int) -> None:
    """One line instead of uvicorn's log and exit when the port is taken."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: SO_REUSEADDR, so a port in TIME_WAIT after a restart is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise InputError(f"port {port} on {host} is already in use; pick another with --port") from None
            raise InputError(f"cannot listen on {host}:{port}: {err.strerror}") from None
