"""axe-core, the accessibility engine, run inside pages in headless Chromium.

axe-core comes from the npm registry, installed once into `.cache/axe-core/` at the top of
the repository (`.ci/run` does it before the tests; a test that finds it missing installs it
there itself, under a lock so parallel workers install it once).  Nothing of it is kept in
the repository.

    pytest_plugins = ["browser", "axe"]

    def test_x(new_page, axe):
        page = new_page(); page.goto(url)
        assert axe.serious(page) == []      # violations of impact serious or critical

Without npm (or the registry) the tests skip, except under CI, where that is a failure.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

AXE_VERSION = "4.14.1"
CACHE = Path(os.environ.get("NEWSLETTER_AXE_DIR", Path(__file__).resolve().parent.parent / ".cache" / "axe-core"))
SCRIPT = CACHE / "node_modules" / "axe-core" / "axe.min.js"
# What a reader is stopped by (axe-core's impact levels: minor, moderate, serious, critical).
BLOCKING = ("serious", "critical")


def install() -> Path:
    """axe.min.js, installed from npm into CACHE if it is not there yet."""
    if SCRIPT.is_file():
        return SCRIPT
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not installed (apt-get install npm), so axe-core cannot be installed")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".install-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not SCRIPT.is_file():
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(CACHE),
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                    f"axe-core@{AXE_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if result.returncode != 0 or not SCRIPT.is_file():
                _unavailable(f"npm install axe-core@{AXE_VERSION} failed: {result.stderr.strip()[-500:]}")
    return SCRIPT


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Axe:
    source: str

    def violations(self, page) -> list[dict]:
        """axe-core's violations on the page as it is now, each {id, impact, nodes, help}."""
        if not page.evaluate("typeof window.axe === 'object'"):
            page.add_script_tag(content=self.source)
        return page.evaluate(
            """async () => {
                 const result = await axe.run(document, {resultTypes: ['violations']});
                 return result.violations.map(v => ({
                   id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').split('\\n').slice(1).join(' ').trim()),
                 }));
               }"""
        )

    def serious(self, page) -> list[str]:
        """One line per serious or critical violation: `id (impact): help: first node`."""
        return [
            f"{v['id']} ({v['impact']}): {v['help']}: {v['nodes'][0] if v['nodes'] else ''}"
            for v in self.violations(page)
            if v["impact"] in BLOCKING
        ]


@pytest.fixture(scope="session")
def axe() -> Axe:
    return Axe(install().read_text(encoding="utf-8"))
