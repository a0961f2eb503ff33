"""How fast the outbox writes messages, against the standard library's `mailbox.Maildir`.

    .venv/bin/python bench/outbox_write.py [--count 2000] [--size 90] [--dir /tmp]

Prints per-message cost for: `mailbox.Maildir.add`, `OutboxTransport.send`, the same with
`fsync=True`, and `OutboxTransport` shared by 8 threads.  Messages are ~90 KB, the size of
the seed issue's HTML, with CRLF line ends.
"""

from __future__ import annotations

import argparse
import mailbox
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.transports.outbox import OutboxTransport


def messages(count: int, size_kb: int) -> list[bytes]:
    body = (b"x" * 76 + b"\r\n") * (size_kb * 1024 // 78)
    return [
        b"Message-ID: <%d.bench@example.com>\r\nFrom: news@example.com\r\nTo: r%d@example.org\r\n"
        b"Subject: bench\r\n\r\n" % (n, n) + body
        for n in range(count)
    ]


def run_threads(transport: OutboxTransport, batch: list[bytes], threads: int) -> None:
    def worker(part: list[bytes]) -> None:
        for message in part:
            transport.send(message, sender="news@example.com", recipient="r@example.org")

    workers = [threading.Thread(target=worker, args=(batch[n::threads],)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=90, help="message size in KB")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to create the Maildirs")
    args = parser.parse_args()
    batch = messages(args.count, args.size)
    fsync_batch = batch[: max(1, args.count // 10)]

    def send_all(transport: OutboxTransport, items: list[bytes]) -> None:
        for message in items:
            transport.send(message, sender="news@example.com", recipient="r@example.org")

    def add_all(box: Path) -> None:
        maildir = mailbox.Maildir(box, create=True)
        for message in batch:
            maildir.add(message)

    cases = [
        ("mailbox.Maildir.add", batch, add_all),
        ("OutboxTransport.send", batch, lambda box: send_all(OutboxTransport(box), batch)),
        (
            "OutboxTransport fsync=True",
            fsync_batch,
            lambda box: send_all(OutboxTransport(box, fsync=True), fsync_batch),
        ),
        ("OutboxTransport, 8 threads", batch, lambda box: run_threads(OutboxTransport(box), batch, 8)),
    ]
    print(f"{args.count} messages of {len(batch[0]) / 1024:.0f} KB into {args.dir}")
    for label, items, run in cases:
        root = Path(tempfile.mkdtemp(dir=args.dir))
        try:
            started = time.perf_counter()
            run(root / "box")
            elapsed = time.perf_counter() - started
        finally:
            shutil.rmtree(root)
        print(f"{label:28s} {len(items) / elapsed:8.0f} msg/s {elapsed / len(items) * 1e6:8.0f} us/msg")


if __name__ == "__main__":
    main()
