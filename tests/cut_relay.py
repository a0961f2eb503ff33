"""A TCP relay to a server on 127.0.0.1 that a test can cut, as a restart looks to the clients.

    relay = CutRelay(5432)            # clients connect to 127.0.0.1:relay.port
    relay.cut()                       # every connection dropped, new ones refused
    relay.restore()                   # the same port listens again
    relay.cut_after_answer_to(b"SKIP LOCKED")  # cut once the server has answered that
    relay.close()

A PostgreSQL restart closes every session (the client reads "server closed the connection
unexpectedly") and refuses connections until it is up again.  The relay does the same for
the clients that go through it and for no one else, so a test can take the database away
from its own processes while the server goes on serving every other test and session.
"""

from __future__ import annotations

import socket
import threading

from tests.ports import free_port


class CutRelay:
    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.cuts = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        # What a client must send for the relay to cut after the server's answer to it,
        # and the server sockets whose next complete answer sets the cut off.
        self._cut_marker: bytes | None = None
        self._cut_answering: set[socket.socket] = set()
        self.restore()

    def restore(self) -> None:
        """Listen (again) on `port`."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        # accept() wakes up this often to see whether the relay was cut meanwhile.
        listener.settimeout(0.1)
        self._listener = listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._accepting.start()

    def cut(self) -> None:
        """Drop every connection through the relay and refuse new ones until `restore()`."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        # A connection accepted meanwhile is dropped by _accept itself (it sees the listener
        # gone), so the open ones can go first, before the wait for the accepting thread.
        with self._lock:
            dropped, self._open = self._open, set()
        for sock in dropped:
            _drop(sock)
        if self._accepting is not None:
            self._accepting.join()
        self.cuts += 1

    def cut_after_answer_to(self, marker: bytes) -> None:
        """Cut (once) as soon as the server has answered the first statement a client sends
        containing `marker` (in the SQL text of its Parse or Query message), before the
        client's next statement reaches the server."""
        with self._lock:
            self._cut_marker = marker

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _drop(client)
                continue
            with self._lock:
                if self._listener is not listener:
                    _drop(client)
                    _drop(server)
                    return
                self._open.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    if self._cut_marker is not None and self._cut_marker in data:
                        self._cut_marker = None
                        self._cut_answering.add(sink)
                    answered = source in self._cut_answering and data.endswith(_READY_IN_TRANSACTION)
                    if answered:
                        self._cut_answering.clear()
                sink.sendall(data)
                if answered:
                    # Here, before the client can send its next statement; the cut closes
                    # `source` too, which ends this loop.
                    self.cut()
        except OSError:
            pass
        # One side ended (or the relay was cut): end the other, as a closed session does.
        with self._lock:
            self._open.discard(source)
            self._open.discard(sink)
        _drop(source)
        _drop(sink)


# The server's ReadyForQuery in a transaction block: message type "Z", length 5, status "T"
# (PostgreSQL's frontend/backend protocol, "Message Formats"): the end of its answer to one
# statement.
_READY_IN_TRANSACTION = b"Z\x00\x00\x00\x05T"


def _drop(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
