"""A DNS server on 127.0.0.1 for tests: dnslib's UDP server answering from zones the test
writes, so DKIM verification and `newsletter doctor` resolve real DNS packets over a socket.

    with LocalDns() as dns:
        dns.add("example.com", "TXT", "v=spf1 include:amazonses.com ~all")
        dns.add("example.com", "MX", "10 mail.example.com.")
        dns.nameserver            # "127.0.0.1:PORT", as [doctor] nameservers takes it
        dns.resolver()            # a dnspython Resolver that asks only this server

Names it holds no record for get NXDOMAIN; a name with records of other types gets an
empty answer (NOERROR, no data), as an authoritative server answers.  `queries` lists each
(name, type) asked.  As a pytest plugin (`pytest_plugins = ["dns_server"]`) it gives the
fixture `local_dns` (one server per test module, its zones cleared before each test).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Self

import pytest

LOOPBACK = "127.0.0.1"


def txt_strings(text: str) -> list[bytes]:
    """A TXT record's text as the 255-byte character strings DNS carries (RFC 1035 3.3.14);
    a long DKIM key needs several, which a reader joins back together."""
    data = text.encode("ascii")
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


class LocalDns:
    """dnslib's UDP server on 127.0.0.1 at a free port, answering from `records`."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = None
        self.port = 0

    # ---- zones ----

    def add(self, name: str, kind: str, value: str) -> None:
        with self._lock:
            self.records.setdefault((name.rstrip(".").lower(), kind.upper()), []).append(value)

    def clear(self) -> None:
        with self._lock:
            self.records.clear()
            self.queries.clear()

    @property
    def nameserver(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def resolver(self):
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [LOOPBACK]
        resolver.port = self.port
        resolver.lifetime = 5.0
        return resolver

    # ---- life cycle ----

    def start(self) -> LocalDns:
        from dnslib import QTYPE, RCODE, RR
        from dnslib.server import BaseResolver, DNSLogger, DNSServer

        owner = self

        class ZoneResolver(BaseResolver):
            def resolve(self, request, handler):
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                kind = QTYPE[request.q.qtype]
                with owner._lock:
                    owner.queries.append((name, kind))
                    values = list(owner.records.get((name, kind), []))
                    known = any(key[0] == name for key in owner.records)
                if not known:
                    reply.header.rcode = RCODE.NXDOMAIN
                    return reply
                for value in values:
                    reply.add_answer(*RR.fromZone(_zone_line(name, kind, value)))
                return reply

        class QuietLogger(DNSLogger):
            def __init__(self) -> None:
                super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data")

        self._server = DNSServer(ZoneResolver(), address=LOOPBACK, port=0, logger=QuietLogger())
        self.port = self._server.server.server_address[1]
        self._server.start_thread()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server.server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _zone_line(name: str, kind: str, value: str) -> str:
    if kind == "TXT":
        strings = " ".join('"' + part.decode("ascii").replace('"', '\\"') + '"' for part in txt_strings(value))
        return f"{name}. 300 IN TXT {strings}"
    return f"{name}. 300 IN {kind} {value}"


@pytest.fixture(scope="module")
def _dns_server() -> Iterator[LocalDns]:
    with LocalDns() as server:
        yield server


@pytest.fixture
def local_dns(_dns_server: LocalDns) -> LocalDns:
    """The module's DNS server with no records."""
    _dns_server.clear()
    return _dns_server
