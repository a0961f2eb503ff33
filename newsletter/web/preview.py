"""`newsletter preview`: the issue in a browser, re-rendered whenever a file changes.

The page is a small shell around an iframe showing the email at desktop (680 px) or phone
(375 px) width, the plain-text part, or the web version, with the check findings above it.
The shell polls `/version`, a fingerprint of the issue file and every template file, and
reloads the frame when it changes; polling needs no websocket and survives a restarted
server.  A file that does not parse (from the start, or after an edit) is shown as its
error, FILE:LINE first, until it parses again; the preview never stops for it.
"""

from __future__ import annotations

import hashlib
import html
import threading
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.compose.build import render_issue
from newsletter.compose.checks import check_rendered
from newsletter.compose.render import Renderer
from newsletter.config import Settings
from newsletter.errors import NewsletterError

POLL_MILLISECONDS = 700
PREVIEW_HOSTS = ["127.0.0.1", "localhost"]


class PreviewState:
    """Renders the issue again when its fingerprint changes; keeps the last result or error."""

    def __init__(self, settings: Settings, issue_file: Path, templates_dir: Path | None) -> None:
        self.settings = settings
        self.issue_file = issue_file
        self.templates_dir = templates_dir
        self._lock = threading.Lock()
        self._version = ""
        self._pages: dict[str, str] = {}
        self._error: str | None = None
        self._findings: list[dict[str, str]] = []

    def watched_files(self) -> list[Path]:
        files = [self.issue_file]
        for directory in Renderer(self.settings, self.templates_dir).search_path:
            files.extend(sorted(p for p in Path(directory).rglob("*") if p.is_file()))
        return files

    def fingerprint(self) -> str:
        digest = hashlib.sha1()
        for path in self.watched_files():
            try:
                stat = path.stat()
                digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size};".encode())
            except FileNotFoundError:
                digest.update(f"{path}:missing;".encode())
        return digest.hexdigest()[:16]

    def current(self) -> tuple[str, dict[str, str], str | None]:
        version = self.fingerprint()
        with self._lock:
            if version != self._version:
                self._version = version
                try:
                    rendered = render_issue(self.settings, self.issue_file, templates_dir=self.templates_dir)
                    email_html, email_text = rendered.preview(self.settings)
                    self._pages = {"email": email_html, "text": email_text, "web": rendered.web_html}
                    self._findings = [
                        {"severity": f.severity, "text": str(f)} for f in check_rendered(rendered, self.settings)
                    ]
                    self._error = None
                except NewsletterError as err:
                    self._error = str(err)
            return self._version, self._pages, self._error

    @property
    def findings(self) -> list[dict[str, str]]:
        """The checks of the last version that rendered (`current` first)."""
        with self._lock:
            return list(self._findings)


def create_preview_app(settings: Settings, issue_file: Path, templates_dir: Path | None = None) -> Starlette:
    state = PreviewState(settings, issue_file, templates_dir)

    async def shell(request: Request) -> Response:
        return HTMLResponse(
            _SHELL.replace("{title}", html.escape(str(issue_file))).replace("{poll}", str(POLL_MILLISECONDS))
        )

    async def version(request: Request) -> Response:
        current, _, error = await run_in_threadpool(state.current)
        return JSONResponse(
            {"version": current, "error": error, "findings": state.findings}, headers={"Cache-Control": "no-store"}
        )

    def page(kind: str):
        async def endpoint(request: Request) -> Response:
            _, pages, error = await run_in_threadpool(state.current)
            if error is not None and kind not in pages:
                return HTMLResponse(f"<!doctype html><pre>{html.escape(error)}</pre>", status_code=500)
            if kind == "text":
                return PlainTextResponse(pages[kind], headers={"Cache-Control": "no-store"})
            return HTMLResponse(pages[kind], headers={"Cache-Control": "no-store"})

        return endpoint

    return Starlette(
        # Only our own names: a page on another site can point its name at 127.0.0.1 (DNS
        # rebinding) and read what its scripts fetch from there, if we answer to that name.
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=PREVIEW_HOSTS)],
        routes=[
            Route("/", shell),
            Route("/version", version),
            Route("/email.html", page("email")),
            Route("/email.txt", page("text")),
            Route("/web.html", page("web")),
        ],
    )


def first_render_error(settings: Settings, issue_file: Path, templates_dir: Path | None = None) -> str | None:
    """The error the issue shows as it is now, if any: the preview starts anyway."""
    try:
        render_issue(settings, issue_file, templates_dir=templates_dir)
    except NewsletterError as err:
        return str(err)
    return None


def serve_preview(
    settings: Settings,
    issue_file: Path,
    *,
    host: str,
    port: int,
    templates_dir: Path | None = None,
    announce: Callable[[], None] | None = None,
) -> None:
    """Serve until interrupted; `announce` runs once the port is known to be free."""
    import uvicorn

    from newsletter.web.bounded_http import MAX_HEAD_BYTES, BoundedH11Protocol
    from newsletter.web.serve import refuse_port_in_use

    # A templates directory that does not exist is the command line's mistake: say it now.
    Renderer(settings, templates_dir)
    refuse_port_in_use(host, port)
    if announce is not None:
        announce()
    uvicorn.run(
        create_preview_app(settings, issue_file, templates_dir),
        host=host,
        port=port,
        log_level="warning",
        # The same bounded request heads as `newsletter serve` (bounded_http.py).
        http=BoundedH11Protocol,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


_SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview: {title}</title>
<style>
body { margin: 0; font: 14px/1.5 -apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", sans-serif; background: #e9ebef; }
nav { position: sticky; top: 0; display: flex; gap: 6px; align-items: center; padding: 8px 12px; background: #1f2328; color: #fff; }
nav button { border: 0; border-radius: 6px; padding: 5px 12px; background: #3a4048; color: #fff; cursor: pointer; font: inherit; }
nav button[aria-pressed="true"] { background: #1a56db; }
nav .file { margin-left: auto; opacity: .7; font-size: 12px; }
#error { display: none; margin: 0; padding: 10px 14px; background: #ffebe9; color: #82071e; white-space: pre-wrap; }
#findings { display: none; margin: 0; padding: 6px 14px 6px 32px; background: #fff8c5; color: #3b2300; font-size: 13px; }
#findings li.error { color: #82071e; }
#stage { display: flex; justify-content: center; padding: 16px 0; }
iframe { border: 0; background: #fff; height: calc(100vh - 90px); box-shadow: 0 1px 6px rgba(0,0,0,.15); }
</style>
</head>
<body>
<nav aria-label="Preview">
<button data-view="desktop" aria-pressed="true">Desktop 680</button>
<button data-view="phone" aria-pressed="false">Phone 375</button>
<button data-view="text" aria-pressed="false">Text</button>
<button data-view="web" aria-pressed="false">Web</button>
<span class="file">{title}</span>
</nav>
<pre id="error" role="alert"></pre>
<ul id="findings" aria-label="Check findings"></ul>
<div id="stage"><iframe id="frame" title="Email preview" src="/email.html" style="width:680px"></iframe></div>
<script>
const views = {desktop: ["/email.html", "680px"], phone: ["/email.html", "375px"], text: ["/email.txt", "680px"], web: ["/web.html", "100%"]};
const frame = document.getElementById("frame");
const error = document.getElementById("error");
const findings = document.getElementById("findings");
let view = "desktop", version = null;
function show(name) {
  view = name;
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-pressed", String(b.dataset.view === name));
  frame.style.width = views[name][1];
  frame.src = views[name][0] + "?v=" + (version || "");
}
for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));
async function poll() {
  try {
    const answer = await (await fetch("/version", {cache: "no-store"})).json();
    error.style.display = answer.error ? "block" : "none";
    error.textContent = answer.error || "";
    findings.replaceChildren(...(answer.findings || []).map(f => { const li = document.createElement("li"); li.className = f.severity; li.textContent = f.text; return li; }));
    findings.style.display = answer.error || !(answer.findings || []).length ? "none" : "block";
    if (version !== null && answer.version !== version) { version = answer.version; show(view); document.body.dataset.reloads = String(Number(document.body.dataset.reloads || 0) + 1); }
    version = answer.version;
  } catch (e) { /* the server is restarting; try again */ }
  setTimeout(poll, {poll});
}
poll();
</script>
</body>
</html>
"""
