"""The SNS signing certificate served as `https://sns.us-east-1.amazonaws.com/...pem` from
127.0.0.1, for a `newsletter serve` running in another process, whose verifier accepts
certificates from SNS hosts only (newsletter.transports.ses.sns.SNS_ORIGIN_PATTERN) and
cannot be handed a wider pattern as an in-process app can (tests/test_web_hooks.py).

How: that process is started with `https_proxy` pointing here, which urllib (the verifier's
fetcher) honours as any HTTP client does, and with `SSL_CERT_FILE` naming a test CA.  This
proxy answers `CONNECT sns.us-east-1.amazonaws.com:443` itself, without connecting anywhere
(RFC 9110 section 9.3.6), then speaks TLS as that host with a certificate the test CA signed,
so the fetch runs through urllib's own proxy support and certificate checks, and no byte
leaves this machine.  Any other host is refused with 403.

    with SnsHostProxy(tmp_path, certificate_pem) as proxy:
        world.start_newsletter("serve", env=proxy.environment())
        ... SigningCertURL=proxy.cert_url ...
"""

from __future__ import annotations

import datetime as dt
import socketserver
import ssl
import threading
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SNS_HOST = "sns.us-east-1.amazonaws.com"
CERT_PATH = "/SimpleNotificationService-test.pem"
# A request head larger than this is not one of urllib's.
MAX_HEAD = 16 * 1024


class SnsHostProxy:
    def __init__(self, directory: Path, certificate_pem: bytes) -> None:
        self.certificate_pem = certificate_pem
        self.ca_file = directory / "test-ca.pem"
        chain_file, key_file = directory / "sns-host.pem", directory / "sns-host.key"
        _write_tls_files(self.ca_file, chain_file, key_file)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(chain_file, key_file)
        # What was asked for, in order: "CONNECT host:port" and "GET path" lines.
        self.requests: list[str] = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._handle(self)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def cert_url(self) -> str:
        return f"https://{SNS_HOST}{CERT_PATH}"

    def environment(self) -> dict[str, str]:
        """What the process fetching the certificate is started with."""
        address = f"http://127.0.0.1:{self._server.server_address[1]}"
        return {
            "https_proxy": address,
            "HTTPS_PROXY": address,
            "no_proxy": "",
            "NO_PROXY": "",
            "SSL_CERT_FILE": str(self.ca_file),
        }

    def fetches(self) -> list[str]:
        return [line for line in self.requests if line.startswith("GET ")]

    def _handle(self, handler: socketserver.StreamRequestHandler) -> None:
        head = _read_head(handler.rfile)
        if head is None:
            return
        method, _, rest = head[0].partition(" ")
        target = rest.split(" ", 1)[0]
        self.requests.append(f"{method} {target}")
        if method != "CONNECT" or target != f"{SNS_HOST}:443":
            handler.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        handler.wfile.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        handler.wfile.flush()
        with self.tls.wrap_socket(handler.connection, server_side=True) as tunnel:
            reader = tunnel.makefile("rb")
            inner = _read_head(reader)
            if inner is None:
                return
            inner_method, _, inner_rest = inner[0].partition(" ")
            path = inner_rest.split(" ", 1)[0]
            self.requests.append(f"{inner_method} {path}")
            if inner_method == "GET" and path == CERT_PATH:
                status, body = b"200 OK", self.certificate_pem
            else:
                status, body = b"404 Not Found", b"not found"
            tunnel.sendall(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/x-pem-file\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _read_head(stream) -> list[str] | None:
    lines: list[str] = []
    size = 0
    while True:
        line = stream.readline(MAX_HEAD)
        size += len(line)
        if not line or size > MAX_HEAD:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.decode("latin-1").rstrip("\r\n"))


def _write_tls_files(ca_file: Path, chain_file: Path, key_file: Path) -> None:
    """A test CA, and a certificate for SNS_HOST that it signed (with its key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "newsletter test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    host_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNS_HOST)]))
        .issuer_name(ca_name)
        .public_key(host_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SNS_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(host.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        host_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
