"""`newsletter serve`: the app under uvicorn.

For production behind a reverse proxy, or under another ASGI server, see docs/deploy.md;
this is the same app with uvicorn's defaults chosen for that setup.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.sending.schedule import ScheduleRunner
from newsletter.store import Store
from newsletter.web.app import create_app
from newsletter.web.context import WebContext
from newsletter.web.refusals import refuse_unsafe_settings


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    announce: Callable[[], None] | None = None,
) -> None:
    """Serve until interrupted; a clean stop writes every buffered tracking hit first.
    `announce` runs once the port is known to be free.

    With `workers` above 1 (PostgreSQL only), uvicorn runs that many processes of the app
    on one socket, each with its own hit buffer, flushed when it stops (its lifespan), and
    this process only supervises them and runs the scheduled sends, so those run once.
    """
    import uvicorn

    from newsletter.web.bounded_http import MAX_HEAD_BYTES, BoundedH11Protocol

    # create_app refuses the same again; here first, with the address we listen on.
    refuse_unsafe_settings(settings, listen_host=host)
    refuse_port_in_use(host, port)
    with Store.open(settings.database_url) as store:
        if workers > 1 and store.dialect != "postgresql":
            raise InputError(
                f"--workers {workers} needs PostgreSQL: a SQLite file has one writer, which more "
                "processes would only queue behind (use --workers 1, or [newsletter] database = postgresql://...)"
            )
        if workers > 1:
            # Each worker process imports the app afresh (newsletter/web/asgi.py), reading
            # the configuration this process was given.
            if os.path.isfile(settings.source):
                os.environ["NEWSLETTER_CONFIG"] = os.path.abspath(settings.source)
            app: object = "newsletter.web.asgi:app"
        else:
            app = create_app(WebContext.create(settings, store))
        if announce is not None:
            announce()
        # Scheduled sends (`send --at`) go out from a background thread while the server
        # runs; a stop (Ctrl-C, SIGTERM) lets a send in progress finish its messages in flight.
        with ScheduleRunner(settings, store):
            uvicorn.run(
                app,  # type: ignore[arg-type]
                host=host,
                port=port,
                workers=workers if workers > 1 else None,
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
