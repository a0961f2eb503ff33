"""A port on 127.0.0.1 where nothing listens now: bound by the kernel's choice, then released,
for a server a test is about to start there, or to stand for a server that is down."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
