"""The refusals every way of starting the web app gets: `uvicorn newsletter.web.asgi:app`
(docs/deploy.md's way to run several workers) and `newsletter serve` refuse a secret anyone
can know, a short one, and a short admin password, as one line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ports import free_port

from newsletter.config import DEMO_SECRET

LONG_SECRET = "startup-tests-7d2e9b4c1a6f48e0b3c5d7a9e1f2b4c6"
# Long enough to be refused by nothing else; the server is stopped at START_SECONDS if it starts.
START_SECONDS = 20


def run_server(command: list[str], cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "FORWARDED_"))}
    env.update(variables)
    env["NEWSLETTER_DATABASE_URL"] = f"sqlite:///{cwd / 'newsletter.db'}"
    try:
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=START_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{command[2:4]} started and served instead of refusing: {err.stderr!r}")


UVICORN = [sys.executable, "-m", "uvicorn", "newsletter.web.asgi:app", "--host", "127.0.0.1", "--port", "0"]


# A server that wrongly starts must be able to bind (serve refuses port 0).
SERVE = [sys.executable, "-m", "newsletter", "serve", "--port", str(free_port())]

REFUSED = {
    "demo secret on a public base_url": (
        {"NEWSLETTER_SECRET": DEMO_SECRET, "NEWSLETTER_BASE_URL": "https://news.example.com"},
        "newsletter.secret",
        "demo secret",
    ),
    "short secret with smtp": (
        {"NEWSLETTER_SECRET": "x" * 31, "transport": "smtp"},
        "newsletter.secret",
        "at least 32 bytes",
    ),
    "short admin password": (
        {"NEWSLETTER_SECRET": LONG_SECRET, "NEWSLETTER_ADMIN_PASSWORD": "elevenchars"},
        "web.admin_password",
        "at least 12 characters",
    ),
}


@pytest.mark.parametrize("command", [UVICORN, SERVE], ids=["uvicorn", "serve"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_unsafe_settings_are_refused_by_every_way_to_start_the_app(tmp_path: Path, command: list[str], case: str):
    variables, key, words = REFUSED[case]
    variables = dict(variables)
    kind = variables.pop("transport", "outbox")
    (tmp_path / "newsletter.toml").write_text(f'[transport]\nkind = "{kind}"\n', encoding="utf-8")
    result = run_server(command, tmp_path, **variables)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and words in lines[0] and "Traceback" not in result.stderr


def test_a_short_secret_is_fine_for_the_outbox_on_loopback(tmp_path: Path):
    """The local demo still works: the outbox sends nothing anywhere, and the server listens
    on loopback only."""
    (tmp_path / "newsletter.toml").write_text('[transport]\nkind = "outbox"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_SECRET="short", NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'newsletter.db'}")
    server = subprocess.Popen(UVICORN, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if "Uvicorn running on" in line:
                break
            assert "error" not in line.lower(), line
        else:
            pytest.fail(f"uvicorn ended with {server.wait()}")
    finally:
        server.terminate()
        server.wait(timeout=20)
