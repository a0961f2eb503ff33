"""Keep-alive HTTP/1.1 connections to one origin, pooled: what SES SendEmail requests go over.

Why not urllib3, which botocore sends with: the request itself is small work, and the HTTP
machinery around it is not.  Measured on this machine against a local server answering at
once, one 90 KB POST and its answer cost 314 us of CPU through botocore's URLLib3Session,
201 us through a bare urllib3 connection pool, 122 us through http.client, and 30 us written
as one `sendall` and read back with a buffered reader (bench/RESULTS.md, "SES wire path").
Per message that is more than building the message.  What SendEmail needs of HTTP is little:
one origin, a POST with a Content-Length body, an answer framed by Content-Length, chunked
transfer coding or the end of the connection (RFC 9112 section 6.3), and persistent
connections (RFC 9112 section 9.3).

What is kept of a mature client:
- TLS with certificate and host name checks (`ssl.create_default_context`) against the CA
  bundle botocore would use;
- an `http://` proxy from HTTPS_PROXY / HTTP_PROXY (NO_PROXY honoured by the caller), through
  a CONNECT tunnel for https (RFC 9110 section 9.3.6), with Basic credentials from its URL;
- connect and read timeouts; TCP_NODELAY, so the last segment of a request is not held back
  waiting for an acknowledgement (Nagle's algorithm, RFC 896);
- a connection the server closed while it sat idle in the pool is noticed before reuse (it
  polls readable: end of file, or bytes nobody asked for) and replaced;
- what the caller must know for a POST that is not idempotent: `RequestNotSent` when the
  request cannot have reached the server whole (no connection, or writing it failed, so a
  server that frames the body by Content-Length cannot have acted on it), `NoAnswer` when it
  was written and no complete answer came back (the server may have acted on it).
"""

from __future__ import annotations

import base64
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MAX_LINE = 65_536  # longest status or header line accepted
MAX_HEADERS = 100
MAX_BODY = 16 * 1024 * 1024  # SES answers are a few hundred bytes; a proxy's error page a few KB


class RequestNotSent(Exception):
    """The request did not reach the server whole: trying again cannot send it twice.

    `code` names the failure the way botocore's exceptions do, for the error message."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class NoAnswer(Exception):
    """The request was written, and no complete answer came back: it may have been acted on."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    reason: str
    headers: dict[str, str]  # names lowercased; repeated fields joined with ", "
    body: bytes


class _Reader:
    """Buffered reads from a socket, keeping what was read past the current answer visible
    (an idle connection must have nothing left over to be reused)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65_536)
        self.buffer += chunk
        return bool(chunk)

    def readline(self, limit: int = MAX_LINE) -> bytes:
        """Up to and including the next LF; what there is if the connection ends first."""
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                return self._take(end + 1)
            if len(self.buffer) > limit:
                raise ValueError(f"a line longer than {limit} bytes")
            start = len(self.buffer)
            if not self._fill():
                return self._take(len(self.buffer))

    def read(self, size: int) -> bytes:
        """`size` bytes, or fewer if the connection ends first."""
        while len(self.buffer) < size and self._fill():
            pass
        return self._take(min(size, len(self.buffer)))

    def read_to_end(self, limit: int) -> bytes:
        while len(self.buffer) <= limit and self._fill():
            pass
        return self._take(len(self.buffer))

    def _take(self, size: int) -> bytes:
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken


class _Connection:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout
        self.reader = _Reader(sock)

    def close(self) -> None:
        self.sock.close()

    def closed_by_peer(self) -> bool:
        """Whether the server hung up (or spoke unasked) while this connection sat idle."""
        if self.reader.buffer:
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if not poller.poll(0):
            return False
        # Readable: the end of the connection, stray bytes, or (TLS 1.3) a record that
        # carries no data, such as a session ticket (RFC 8446 section 4.6.1).
        self.sock.setblocking(False)
        try:
            self.sock.recv(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            pass
        finally:
            self.sock.settimeout(self.timeout)
        return True


class KeepAlivePool:
    """Up to `size` persistent connections to the origin of `url`, shared by threads.

    `post(target, headers, body)` sends one request on an idle connection (or a new one) and
    returns the answer; a thread beyond `size` waits for a connection to come free.
    `proxy`: an `http://[user:password@]host:port` proxy, or None.  `ca_bundle`: the file of
    trusted certificates for https (None: Python's default store).
    """

    def __init__(
        self,
        url: str,
        *,
        size: int,
        connect_timeout: float,
        read_timeout: float,
        ca_bundle: str | None = None,
        proxy: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        # The Host field as RFC 9110 section 7.2 asks (and SigV4 signs): the port only when
        # it is not the scheme's default, an IPv6 literal in brackets.
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_field = name if parts.port in (None, 443 if self.https else 80) else f"{name}:{parts.port}"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._tls = ssl.create_default_context(cafile=ca_bundle) if self.https else None
        self._proxy = _Proxy.parse(proxy) if proxy else None
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, size))
        self._closed = False

    def target_for(self, path_and_query: str) -> str:
        """The request-target for a path: absolute-form through a plain-HTTP proxy
        (RFC 9112 section 3.2.2), origin-form otherwise."""
        if self._proxy is not None and not self.https:
            return f"http://{self.host_field}{path_and_query}"
        return path_and_query

    def post(self, target: str, headers: list[tuple[str, str]], body: bytes) -> HttpAnswer:
        head = [f"POST {target} HTTP/1.1\r\nHost: {self.host_field}\r\n"]
        for name, value in headers:
            # A CR or LF would end the field and start another (request smuggling).
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise RequestNotSent(f"header field {name!r} holds a line break", code="InvalidHeader")
            head.append(f"{name}: {value}\r\n")
        if self._proxy is not None and not self.https and self._proxy.authorization:
            head.append(f"Proxy-Authorization: {self._proxy.authorization}\r\n")
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        request = "".join(head).encode("latin-1") + body
        with self._slots:
            connection = self._checkout()
            try:
                connection.sock.sendall(request)
            except OSError as err:
                connection.close()
                raise RequestNotSent(
                    f"the connection to {self.url} failed while sending: {err}", code="RequestNotSent"
                ) from err
            try:
                answer, keep = _read_answer(connection.reader)
            except (OSError, ValueError) as err:
                connection.close()
                code = "ReadTimeoutError" if isinstance(err, TimeoutError) else "ConnectionClosedError"
                raise NoAnswer(f"no answer from {self.url}: {err or type(err).__name__}", code=code) from err
            if keep:
                self._checkin(connection)
            else:
                connection.close()
            return answer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # ---- connections ----

    def _checkout(self) -> _Connection:
        while True:
            with self._lock:
                if self._closed:
                    raise RequestNotSent("the SES connection pool is closed", code="PoolClosed")
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect()
            if connection.closed_by_peer():
                connection.close()
                continue
            return connection

    def _checkin(self, connection: _Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self) -> _Connection:
        where = (self._proxy.host, self._proxy.port) if self._proxy else (self.host, self.port)
        try:
            sock = socket.create_connection(where, timeout=self.connect_timeout)
        except OSError as err:
            via = f" through the proxy {self._proxy.host}:{self._proxy.port}" if self._proxy else ""
            code = "ProxyConnectionError" if self._proxy else "EndpointConnectionError"
            if isinstance(err, TimeoutError):
                code = "ConnectTimeoutError"
            raise RequestNotSent(f"could not connect to {self.url}{via}: {err}", code=code) from err
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._proxy is not None and self.https:
                self._tunnel(sock)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except ssl.SSLError as err:
            sock.close()
            raise RequestNotSent(f"TLS with {self.url} failed: {err}", code="SSLError") from err
        except (OSError, ValueError) as err:
            sock.close()
            code = "ProxyConnectionError" if self._proxy else "EndpointConnectionError"
            raise RequestNotSent(f"could not connect to {self.url}: {err}", code=code) from err
        return _Connection(sock, self.read_timeout)

    def _tunnel(self, sock: socket.socket) -> None:
        """Ask the proxy for a tunnel to the origin (CONNECT, RFC 9110 section 9.3.6)."""
        assert self._proxy is not None
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = f"{host}:{self.port}"  # authority-form always names the port
        lines = [f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"]
        if self._proxy.authorization:
            lines.append(f"Proxy-Authorization: {self._proxy.authorization}\r\n")
        sock.sendall(("".join(lines) + "\r\n").encode("latin-1"))
        # Read the proxy's answer byte by byte up to its blank line: anything after it
        # belongs to the TLS handshake and must stay in the socket.
        reply = bytearray()
        while not reply.endswith(b"\r\n\r\n"):
            chunk = sock.recv(1)
            if not chunk or len(reply) > MAX_LINE:
                raise ValueError("the proxy closed the connection during CONNECT")
            reply += chunk
        status_line = reply.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].startswith("2"):
            raise ValueError(f"the proxy refused the tunnel: {status_line!r}")


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None

    @classmethod
    def parse(cls, url: str) -> _Proxy:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// proxies are supported for SES sending, not {url!r}")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        return cls(parts.hostname, parts.port or 80, authorization)


def _read_answer(reader: _Reader) -> tuple[HttpAnswer, bool]:
    """One answer from `reader`, and whether the connection may carry another (RFC 9112)."""
    while True:
        status_line = reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection without answering")
        if not status_line.endswith(b"\n"):
            raise ValueError("the status line is cut short or too long")
        version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
            raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        status = int(code)
        headers = _read_fields(reader)
        # 1xx answers are interim (RFC 9110 section 15.2): the final one follows.
        if status >= 200:
            break
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    keep = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    if status in (204, 304):
        return HttpAnswer(status, reason, headers, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_BODY:
            raise ValueError(f"an answer of {length} bytes")
        body = reader.read(length)
        if len(body) != length:
            raise ConnectionError(f"the answer ended after {len(body)} of {length} bytes")
    else:
        # Framed by the end of the connection (RFC 9112 section 6.3, last rule).
        body = reader.read_to_end(MAX_BODY)
        if len(body) > MAX_BODY:
            raise ValueError("an answer of more than 16 MB")
        keep = False
    return HttpAnswer(status, reason, headers, body), keep


def _read_fields(reader: _Reader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = reader.readline()
        if line in (b"\r\n", b"\n"):
            return headers
        if not line.endswith(b"\n"):
            raise ConnectionError("the answer's header ended early") if not line else ValueError("a header too long")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise ValueError(f"not a header field: {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raise ValueError(f"more than {MAX_HEADERS} header fields")


def _read_chunked(reader: _Reader) -> bytes:
    """A chunked body (RFC 9112 section 7.1): size lines, chunks, a last empty chunk, trailers."""
    body = bytearray()
    while True:
        line = reader.readline()
        if not line.endswith(b"\n"):
            raise ConnectionError("the answer ended inside a chunk size")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            _read_fields(reader)  # trailer fields, unused
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise ValueError("an answer of more than 16 MB")
        chunk = reader.read(size + 2)
        if len(chunk) != size + 2 or not chunk.endswith(b"\r\n"):
            raise ConnectionError("the answer ended inside a chunk")
        body += chunk[:-2]
