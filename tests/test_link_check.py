"""`newsletter check --links`: every link fetched once from a real HTTP server on 127.0.0.1
answering 200, a redirect to a login page, 404, 500, 405 to HEAD, and a path that does not
answer in time; plus a host that does not resolve."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from cli_in_process import run_newsletter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter.compose.issue.parse import load_issue
from newsletter.compose.link_check import USER_AGENT, check_links

pytest_plugins = ["http_server"]


class Site:
    """The paths the issue links to, and every request they received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.release = threading.Event()

    def app(self) -> Starlette:
        async def record(request: Request) -> None:
            self.requests.append((request.method, request.url.path, request.headers.get("user-agent", "")))

        async def ok(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("fine")

        async def moved(request: Request) -> Response:
            await record(request)
            return RedirectResponse("/account/login?next=/members/story", status_code=301)

        async def login(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("please sign in")

        async def missing(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("no such page", status_code=404)

        async def broken(request: Request) -> Response:
            await record(request)
            return PlainTextResponse("oops", status_code=500)

        async def get_only(request: Request) -> Response:
            await record(request)
            if request.method == "HEAD":
                return PlainTextResponse("", status_code=405, headers={"Allow": "GET"})
            return PlainTextResponse("only GET here")

        async def slow(request: Request) -> Response:
            await record(request)
            # Answers only when the test is over: longer than any timeout.
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return PlainTextResponse("too late")

        methods = ["GET", "HEAD"]
        return Starlette(
            routes=[
                Route("/ok", ok, methods=methods),
                Route("/members/story", moved, methods=methods),
                Route("/account/login", login, methods=methods),
                Route("/missing", missing, methods=methods),
                Route("/broken", broken, methods=methods),
                Route("/get-only", get_only, methods=methods),
                Route("/slow", slow, methods=methods),
            ]
        )


@pytest.fixture
def site(serve_asgi):
    site = Site()
    site.base = serve_asgi(site.app())
    yield site
    site.release.set()


def issue_linking(tmp_path: Path, base: str, paths: list[str], extra: str = "") -> Path:
    items = "\n".join(f"- 链接{n}：见[原文]({base}{path})" for n, path in enumerate(paths))
    text = (
        "# 链接检查 2026-03-01\n\n## 条目\n\n> **分类：** 测试\n> **来源：** "
        f"[首页]({base}/ok)\n\n**核心洞察：** 每个链接只取一次。\n**内容简介：**\n\n{items}\n{extra}"
    )
    path = tmp_path / "links.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_links_reports_broken_login_and_slow_links_on_their_lines(site, tmp_path):
    paths = ["/ok", "/members/story", "/missing", "/broken", "/get-only", "/slow"]
    path = issue_linking(tmp_path, site.base, paths, "\n![图](http://no-such-host.invalid/a.png)\n")
    findings = check_links(load_issue(path), timeout=2.0)
    found = {f.line: (f.severity, f.message) for f in findings}
    # Line 11 is the first summary item (/ok), so /members/story is line 12, and so on.
    assert sorted(found) == [12, 13, 14, 16, 18]
    assert found[12][0] == "warning" and "redirects to a login page" in found[12][1]
    assert "/account/login?next=/members/story" in found[12][1]
    assert found[13] == ("error", f"link {site.base}/missing is broken: the server answers 404 Not Found")
    assert found[14] == ("error", f"link {site.base}/broken is broken: the server answers 500 Internal Server Error")
    assert found[16] == ("warning", f"link {site.base}/slow did not answer within 2 s")
    assert found[18][0] == "error" and "does not resolve (DNS)" in found[18][1]
    assert all(f.check == "fetch" and f.where == str(path) for f in findings)


def test_each_link_is_fetched_once_with_head_then_get_on_405_and_a_browser_user_agent(site, tmp_path):
    # /ok is both the source and the first summary item: one request for both.
    path = issue_linking(tmp_path, site.base, ["/ok", "/get-only"])
    assert check_links(load_issue(path), timeout=2.0) == []
    # The two links are fetched concurrently, so only the order within one link is fixed.
    get_only = [method for method, route, _ in site.requests if route == "/get-only"]
    assert get_only == ["HEAD", "GET"]
    assert sorted((m, r) for m, r, _ in site.requests) == [("GET", "/get-only"), ("HEAD", "/get-only"), ("HEAD", "/ok")]
    assert {agent for _, _, agent in site.requests} == {USER_AGENT}
    assert USER_AGENT.startswith("Mozilla/5.0 ")


def test_check_command_with_links_exits_1_naming_the_broken_links_line(site, tmp_path):
    path = issue_linking(tmp_path, site.base, ["/ok", "/missing"])
    result = run_newsletter("check", str(path), "--links", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"{path}:12: error: link {site.base}/missing is broken: the server answers 404 Not Found [fetch]"
    ]
    # Without --links nothing is fetched.
    before = len(site.requests)
    plain = run_newsletter("check", str(path), cwd=tmp_path)
    assert plain.returncode == 0 and len(site.requests) == before
