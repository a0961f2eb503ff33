"""The HTTP/1.1 protocol `newsletter serve` runs uvicorn with: h11 with bounds on what a
client may make the server hold before a request even reaches the app.

- A request head (request line and header fields) is at most MAX_HEAD_BYTES: a longer one
  gets 400 and the connection is closed (uvicorn's default parser, httptools, buffers any
  size).
  nginx's default for the same is 1 KiB plus 4 buffers of 8 KiB (large_client_header_buffers).
- A request head must arrive within HEAD_SECONDS of the connection opening, or of the answer
  to the previous request on it; a client trickling bytes (slowloris) is disconnected rather
  than held open.  uvicorn's own timeout_keep_alive ends with the first byte of a request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 16 * 1024
HEAD_SECONDS = 10.0


class _BoundedConnection(h11.Connection):
    """h11's connection refusing a request whose head is over MAX_HEAD_BYTES.  h11's own
    max_incomplete_event_size only applies while a head is still incomplete: a large head
    arriving in one read passes it."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            size = (
                len(event.method) + len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers)
            )
            if size > MAX_HEAD_BYTES:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


class BoundedH11Protocol(H11Protocol):
    head_seconds = HEAD_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _BoundedConnection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        # Once the head is in, h11 has left IDLE for this cycle: the app owns the time now.
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_seconds, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()
