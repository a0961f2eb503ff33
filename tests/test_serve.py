"""`newsletter serve` as a command: a port already in use is one line suggesting --port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def test_serve_with_its_port_in_use_is_one_line_suggesting_port(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_SECRET"] = "serve-test-secret-4c1d9a7e0b2f46e8a3d5c7b9e1f0a2c4"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use; pick another with --port"
    ]
