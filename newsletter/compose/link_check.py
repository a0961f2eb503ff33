"""`newsletter check --links`: fetch every link and image of an issue once and report the
broken ones (4xx/5xx answers, hosts that do not resolve or answer) and links that land on a
login page (paywalled or members-only stories readers cannot open).

HEAD first, as link checkers do, since it costs the site no body; a server that does not
implement HEAD answers 405 (RFC 9110, section 15.5.6) or 501, and then a GET is made and
its body left unread.  A browser-like User-Agent, because many news sites answer an unknown
client with 403 even though readers get the page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from newsletter import __version__
from newsletter.compose.checks import Finding, issue_images, issue_links
from newsletter.compose.issue.model import Issue

TIMEOUT_SECONDS = 5.0
CONCURRENCY = 8
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 "
    f"newsletter-link-check/{__version__}"
)
# A path or query naming a login, sign-in or single-sign-on step.
_LOGIN = re.compile(
    r"(?:^|[/?&=._-])(?:log-?in|sign-?in|signon|sso|auth|authenticate|oauth2?|passport|session/new)(?:$|[/?&=._-])",
    re.IGNORECASE,
)
# Too many requests: the site limits us, the link is not broken.
_NOT_BROKEN = {429}


@dataclass(frozen=True)
class Target:
    url: str
    line: int
    what: str  # "link" or "image"


def link_targets(issue: Issue) -> list[Target]:
    """Every distinct http(s) link and image of the issue's text, at its first line."""
    seen: dict[str, Target] = {}
    found: Iterable[tuple[str, int, str]] = [(url, line, "link") for url, line in issue_links(issue)] + [
        (src, line, "image") for src, _, line in issue_images(issue)
    ]
    for url, line, what in found:
        if url.lower().startswith(("http://", "https://")) and url not in seen:
            seen[url] = Target(url, line, what)
    return list(seen.values())


def check_links(issue: Issue, *, timeout: float = TIMEOUT_SECONDS, concurrency: int = CONCURRENCY) -> list[Finding]:
    """Fetch each target once, at most `concurrency` at a time; findings in file order."""
    targets = link_targets(issue)
    if not targets:
        return []
    findings = _run_to_completion(_check_all(issue.path, targets, timeout, concurrency))
    return sorted((f for f in findings if f is not None), key=lambda finding: finding.line or 0)


def _run_to_completion(work: Coroutine[Any, Any, list[Finding | None]]) -> list[Finding | None]:
    """Run `work` on an event loop of its own, also when the caller's thread already runs one.

    `asyncio.run` refuses to start inside a running loop, which is where a check lands when it is
    called from async code (a server's request) or beside Playwright's sync API, whose loop stays
    running in the main thread; a short-lived thread gives the fetches a loop of their own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="link-check") as pool:
        return pool.submit(asyncio.run, work).result()


async def _check_all(path: str, targets: list[Target], timeout: float, concurrency: int) -> list[Finding | None]:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
    ) as client:

        async def one(target: Target) -> Finding | None:
            async with gate:
                return await _check_one(client, path, target, timeout)

        return list(await asyncio.gather(*(one(target) for target in targets)))


async def _check_one(client, path: str, target: Target, timeout: float) -> Finding | None:
    import httpx

    def finding(severity: str, problem: str) -> Finding:
        return Finding(severity, "fetch", f"{target.what} {target.url} {problem}", path, target.line)

    try:
        # The whole exchange, redirects included, within the timeout.
        async with asyncio.timeout(timeout):
            response = await client.head(target.url)
            if response.status_code in (405, 501):
                async with client.stream("GET", target.url) as streamed:
                    response = streamed
    except (TimeoutError, httpx.TimeoutException):
        return finding("warning", f"did not answer within {timeout:g} s")
    except httpx.ConnectError as err:
        if _unresolved(err):
            return finding("error", "is broken: its host name does not resolve (DNS)")
        return finding("error", f"is broken: cannot connect ({err or type(err).__name__})")
    except httpx.TooManyRedirects:
        return finding("error", "is broken: it redirects in a loop")
    except httpx.HTTPError as err:
        return finding("error", f"is broken: {err or type(err).__name__}")
    final = str(response.url)
    if response.history and _LOGIN.search(_path_and_query(final)) and not _LOGIN.search(_path_and_query(target.url)):
        return finding("warning", f"redirects to a login page ({final}); readers without an account stop there")
    if response.status_code >= 400 and response.status_code not in _NOT_BROKEN:
        reason = response.reason_phrase or ""
        return finding("error", f"is broken: the server answers {response.status_code} {reason}".rstrip())
    return None


def _path_and_query(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _unresolved(err: Exception) -> bool:
    import socket

    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return True
        cause = cause.__cause__ or cause.__context__
    text = str(err).lower()
    return "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text
