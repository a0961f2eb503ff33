"""A real Dovecot IMAP server for the tests, started as an unprivileged process on 127.0.0.1.

    def test_something(dovecot):
        dovecot.append(raw_bytes)                      # into INBOX, as an MTA would deliver
        url = dovecot.url("imaps")                     # imaps://reader@127.0.0.1:PORT/INBOX
        ...
        dovecot.messages("INBOX")                      # what is left, read back over IMAP

Debian's `dovecot-imapd` (.ci/run installs it).  Everything the server needs is in a
directory of its own: a config file, a passwd-file with one user, a self-made certificate
for 127.0.0.1 (the tests trust it through SSL_CERT_FILE), the user's Maildir, the logs.  It
listens on two free ports: plain IMAP and IMAP over TLS.  Run by root (as in CI), the
server runs as `nobody`, never as root; run by anyone else, as that user.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ports import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "bounces@example.com"
PASSWORD = "inbox-test-password-7c1d"


@dataclass
class Dovecot:
    directory: Path
    imap_port: int
    imaps_port: int
    cert_file: Path
    process: subprocess.Popen
    host: str = "127.0.0.1"
    user: str = USER
    password: str = PASSWORD

    def url(self, scheme: str = "imaps", folder: str = "INBOX") -> str:
        port = self.imaps_port if scheme == "imaps" else self.imap_port
        return f"{scheme}://{self.user.replace('@', '%40')}@{self.host}:{port}/{folder}"

    def client(self) -> imaplib.IMAP4:
        connection = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        connection.login(self.user, self.password)
        return connection

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        connection = self.client()
        try:
            typ, data = connection.append(folder, None, None, raw)
            assert typ == "OK", data
        finally:
            connection.logout()

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """The messages in `folder`, read without touching their flags; [] if there is no such folder."""
        connection = self.client()
        try:
            typ, _ = connection.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            _, data = connection.uid("SEARCH", "ALL")
            found = []
            for uid in (data[0] or b"").split():
                _, fetched = connection.uid("FETCH", uid, "(BODY.PEEK[])")
                found.extend(item[1] for item in fetched if isinstance(item, tuple))
            return found
        finally:
            connection.logout()

    def log(self) -> str:
        path = self.directory / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""


# What Dovecot 2.3 announces after login; `start_dovecot(without=...)` leaves some out.
CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED "
    "I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE "
    "LITERAL+"
)


def _config(
    directory: Path, *, login_user: str, uid: int, gid: int, imap_port: int, imaps_port: int, capabilities: str
) -> str:
    group = "nogroup" if uid == 65534 else str(gid)
    announced = f"imap_capability = {capabilities}" if capabilities else ""
    return f"""# Written by tests/dovecot_server.py for one test.
{announced}
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{directory}/cert.pem
ssl_key = <{directory}/key.pem
default_internal_user = {login_user}
default_internal_group = {group}
default_login_user = {login_user}
# Plain IMAP on loopback is what one of the tests reads.
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {directory}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={directory}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


def _wait_until_listening(port: int, process: subprocess.Popen, directory: Path, *, greets: bool) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (
                (directory / "dovecot.log").read_text(errors="replace") if (directory / "dovecot.log").exists() else ""
            )
            raise RuntimeError(f"dovecot exited with {process.returncode}: {log[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                # The TLS port says nothing before a handshake; the plain one greets at once.
                if not greets or connection.recv(64).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"dovecot did not answer on 127.0.0.1:{port}")


def start_dovecot(*, without: tuple[str, ...] = ()) -> Iterator[Dovecot]:
    """The server, stopped and removed after use; `without`: capabilities it does not
    announce (an older or leaner server: no MOVE, no UIDPLUS)."""
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot is not installed (Debian: dovecot-imapd; .ci/run installs it)")
    # Not pytest's tmp_path: its parents are private to the test runner, and the server
    # runs as another user when the tests run as root.
    directory = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    root = os.geteuid() == 0
    if root:
        nobody = pwd.getpwnam("nobody")
        uid, gid, login_user = nobody.pw_uid, nobody.pw_gid, "nobody"
    else:
        uid, gid, login_user = os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    imap_port, imaps_port = free_port(), free_port()
    try:
        for sub in ("run", "state", "home"):
            (directory / sub).mkdir()
        # The same self-signed certificate for 127.0.0.1 our other TLS servers use (EC P-256);
        # imported here so that the test modules registering it for assert rewriting import it first.
        from tests.transport_servers import make_certificate

        cert_file = make_certificate(directory).certfile
        (directory / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        config = directory / "dovecot.conf"
        config.write_text(
            _config(
                directory,
                login_user=login_user,
                uid=uid,
                gid=gid,
                imap_port=imap_port,
                imaps_port=imaps_port,
                capabilities=" ".join(c for c in CAPABILITIES.split() if c not in without) if without else "",
            )
        )
        if root:
            for path in [directory, *directory.rglob("*")]:
                os.chown(path, uid, gid)
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            **({"user": uid, "group": gid, "extra_groups": []} if root else {}),
        )
        try:
            _wait_until_listening(imap_port, process, directory, greets=True)
            _wait_until_listening(imaps_port, process, directory, greets=False)
            yield Dovecot(directory, imap_port, imaps_port, cert_file, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    yield from start_dovecot()
