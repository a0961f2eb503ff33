"""`newsletter preview`: the live-preview app over real HTTP on 127.0.0.1, in headless
Chromium, and the command itself."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from ports import free_port
from sample_issues import EXAMPLE, FIXTURES

from newsletter.config import load_settings
from newsletter.web.preview import create_preview_app, serve_preview

pytest_plugins = ["browser", "http_server"]

OLD_TITLE = "端侧大模型走进千元机：3B 参数模型首次成为国产手机出厂标配"
NEW_TITLE = "改过的标题：预览会自己刷新"
WAIT = 10_000  # ms; an upper bound for polling, never a measured time


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={}, cwd=tmp_path)


@pytest.fixture
def issue_copy(tmp_path) -> Path:
    return Path(shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name))


def edit(path: Path, old: str, new: str) -> None:
    """Change the file as an editor saving it would, in one step: written beside it and
    renamed over it, so a poll never sees it half-written."""
    text = path.read_text(encoding="utf-8")
    assert old in text
    partial = path.with_name(path.name + ".saving")
    partial.write_text(text.replace(old, new, 1), encoding="utf-8")
    os.replace(partial, path)


def poll(get, until, *, seconds: float = 10.0):
    """Call `get()` until `until(value)` holds; the last value either way."""
    deadline = time.monotonic() + seconds
    value = get()
    while not until(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = get()
    return value


# ---------------------------------------------------------------------------------------
# Over HTTP
# ---------------------------------------------------------------------------------------


def test_preview_serves_the_shell_email_text_and_web_pages(serve_asgi, settings, issue_copy):
    base = serve_asgi(create_preview_app(settings, issue_copy))
    with httpx.Client(base_url=base) as client:
        shell = client.get("/")
        assert shell.status_code == 200 and 'id="frame"' in shell.text and 'data-view="phone"' in shell.text
        email = client.get("/email.html")
        assert email.status_code == 200 and email.headers["content-type"].startswith("text/html")
        assert email.headers["cache-control"] == "no-store"
        assert OLD_TITLE in email.text and "%%nl:" not in email.text
        assert 'href="http://127.0.0.1:8000/u/preview"' in email.text
        text = client.get("/email.txt")
        assert text.headers["content-type"].startswith("text/plain") and OLD_TITLE in text.text
        web = client.get("/web.html")
        assert web.status_code == 200 and OLD_TITLE in web.text
        version = client.get("/version").json()
        assert version["error"] is None and version["version"]


def test_editing_the_issue_changes_the_version_and_the_pages(serve_asgi, settings, issue_copy):
    base = serve_asgi(create_preview_app(settings, issue_copy))
    with httpx.Client(base_url=base) as client:
        before = client.get("/version").json()["version"]
        edit(issue_copy, OLD_TITLE, NEW_TITLE)
        after = poll(lambda: client.get("/version").json(), lambda v: v["version"] != before)
        assert after["version"] != before and after["error"] is None
        email = client.get("/email.html").text
        assert NEW_TITLE in email and OLD_TITLE not in email
        assert NEW_TITLE in client.get("/email.txt").text


def test_editing_a_custom_template_changes_the_version(serve_asgi, settings, issue_copy, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "digest.txt.j2").write_text(
        "first {{ issue.title }} {{ slot('unsubscribe_url') }}\n", encoding="utf-8"
    )
    base = serve_asgi(create_preview_app(settings, issue_copy, templates))
    with httpx.Client(base_url=base) as client:
        before = client.get("/version").json()["version"]
        assert client.get("/email.txt").text.startswith("first ")
        (templates / "digest.txt.j2").write_text(
            "second version of the template {{ slot('unsubscribe_url') }}\n", encoding="utf-8"
        )
        poll(lambda: client.get("/version").json()["version"], lambda v: v != before)
        assert client.get("/email.txt").text.startswith("second version")


def test_a_broken_edit_reports_file_and_line_and_keeps_the_last_good_pages(serve_asgi, settings, issue_copy):
    base = serve_asgi(create_preview_app(settings, issue_copy))
    with httpx.Client(base_url=base) as client:
        client.get("/version")
        edit(issue_copy, "[示例科技日报](https://news.example.com/2026/11/edge-llm-phones)", "[示例科技日报]()")
        answer = poll(lambda: client.get("/version").json(), lambda v: v["error"] is not None)
        assert answer["error"].startswith(f"{issue_copy}:9: link [示例科技日报]() has no target")
        email = client.get("/email.html")
        assert email.status_code == 200 and OLD_TITLE in email.text


def test_an_issue_broken_from_the_start_shows_its_error_escaped(serve_asgi, settings, tmp_path):
    path = Path(shutil.copy(FIXTURES / "empty_category.md", tmp_path / "bad.md"))
    edit(path, "## 条目", "## 条目 <img src=x onerror=alert(1)>")
    base = serve_asgi(create_preview_app(settings, path))
    with httpx.Client(base_url=base) as client:
        page = client.get("/email.html")
        assert page.status_code == 500
        assert f"{path}:5: 分类 / Category has nothing after it" in page.text
        assert "<img" not in page.text.split("<pre>", 1)[1]


def test_preview_shows_the_check_findings_with_their_lines(serve_asgi, settings, issue_copy):
    base = serve_asgi(create_preview_app(settings, issue_copy))
    with httpx.Client(base_url=base) as client:
        assert [f for f in client.get("/version").json()["findings"] if f["severity"] == "error"] == []
        edit(issue_copy, "**核心洞察：** 端侧模型", "**核心洞查：** 端侧模型")

        def errors(answer):
            return [f for f in answer["findings"] if f["severity"] == "error"]

        answer = poll(lambda: client.get("/version").json(), errors)
        (finding,) = errors(answer)
        assert finding["severity"] == "error"
        assert finding["text"].startswith(f"{issue_copy}:11: error: unknown label '核心洞查'")


def test_serve_preview_refuses_a_port_in_use_in_one_line(settings, issue_copy):
    from newsletter.errors import InputError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            InputError, match=rf"^port {port} on 127\.0\.0\.1 is already in use; pick another with --port$"
        ):
            serve_preview(settings, issue_copy, host="127.0.0.1", port=port)


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------


def test_preview_command_serves_the_issue_until_stopped(issue_copy, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "preview", str(issue_copy), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def get():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/email.html", timeout=2)
            except httpx.TransportError:
                return None

        response = poll(get, lambda r: r is not None or process.poll() is not None, seconds=20)
        assert response is not None, process.stderr.read() if process.poll() is not None else "no answer"
        assert response.status_code == 200 and OLD_TITLE in response.text
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=10)
    assert stdout.startswith(f"previewing {issue_copy} at http://127.0.0.1:{port}/")
    assert "Traceback" not in stderr


def test_preview_command_starts_with_a_broken_issue_and_shows_it_until_fixed(tmp_path):
    shutil.copy(FIXTURES / "empty_sources.md", tmp_path / "bad.md")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "preview", "bad.md", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def version():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/version", timeout=2).json()
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read()
                return None

        answer = poll(version, lambda v: v is not None, seconds=30)
        assert answer["error"] == "bad.md:6: 来源 / Sources has nothing after it; list the sources as links"
        edit(tmp_path / "bad.md", "> **来源：**", "> **来源：** [来源](https://source.example.com/fixed)")
        fixed = poll(version, lambda v: v["error"] is None)
        assert fixed["error"] is None
        assert httpx.get(f"http://127.0.0.1:{port}/email.html", timeout=5).status_code == 200
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=10)
    assert stderr.splitlines()[0] == (
        "bad.md:6: 来源 / Sources has nothing after it; list the sources as links "
        "(the page shows it until the file is fixed)"
    )
    assert "Traceback" not in stderr and stdout.startswith("previewing bad.md at ")


def test_preview_command_with_its_port_in_use_is_one_line(issue_copy, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "preview", str(issue_copy), "--port", str(port)],
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


# ---------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------


@pytest.mark.browser
def test_preview_page_switches_views_and_reloads_after_the_issue_changes(serve_asgi, settings, issue_copy, new_page):
    from playwright.sync_api import expect

    base = serve_asgi(create_preview_app(settings, issue_copy))
    page = new_page(1100, 900)
    page.goto(base + "/")
    frame = page.frame_locator("#frame")
    expect(frame.locator("h2.nl-entry-title").first).to_have_text(OLD_TITLE, timeout=WAIT)
    assert page.locator("#frame").evaluate("f => f.getBoundingClientRect().width") == 680

    page.get_by_role("button", name="Phone 375").click()
    expect(page.get_by_role("button", name="Phone 375")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="Desktop 680")).to_have_attribute("aria-pressed", "false")
    assert page.locator("#frame").evaluate("f => f.getBoundingClientRect().width") == 375
    expect(frame.locator("h2.nl-entry-title").first).to_have_text(OLD_TITLE, timeout=WAIT)
    phone = page.frame_locator("#frame").locator("html")
    assert phone.evaluate("e => e.scrollWidth <= e.clientWidth"), "the phone view scrolls sideways"

    page.get_by_role("button", name="Text").click()
    expect(frame.locator("body")).to_contain_text("本期概览", timeout=WAIT)
    expect(frame.locator("body")).to_contain_text("退订：http://127.0.0.1:8000/u/preview")
    assert frame.locator("h2").count() == 0, "the text view shows the text part, not the HTML"

    page.get_by_role("button", name="Web").click()
    expect(frame.locator("article h2").first).to_have_text(OLD_TITLE, timeout=WAIT)

    page.get_by_role("button", name="Desktop 680").click()
    expect(frame.locator("h2.nl-entry-title").first).to_have_text(OLD_TITLE, timeout=WAIT)
    edit(issue_copy, OLD_TITLE, NEW_TITLE)
    # The shell polls /version and reloads the frame by itself; nobody touches the page.
    expect(frame.locator("h2.nl-entry-title").first).to_have_text(NEW_TITLE, timeout=WAIT)
    expect(page.locator("body")).to_have_attribute("data-reloads", "1")
    assert page.locator("#error").is_hidden()


@pytest.mark.browser
def test_preview_page_shows_a_broken_edit_and_recovers(serve_asgi, settings, issue_copy, new_page):
    from playwright.sync_api import expect

    base = serve_asgi(create_preview_app(settings, issue_copy))
    page = new_page(1100, 700)
    page.goto(base + "/")
    expect(page.frame_locator("#frame").locator("h2.nl-entry-title").first).to_have_text(OLD_TITLE, timeout=WAIT)
    edit(issue_copy, "> **分类：** 市场动态", "> **分类：**")
    expect(page.locator("#error")).to_be_visible(timeout=WAIT)
    expect(page.locator("#error")).to_contain_text(f"{issue_copy}:8: 分类 / Category has nothing after it")
    edit(issue_copy, "> **分类：**\n", "> **分类：** 市场动态\n")
    expect(page.locator("#error")).to_be_hidden(timeout=WAIT)


@pytest.mark.browser
def test_preview_page_lists_the_check_findings_until_they_are_fixed(serve_asgi, settings, issue_copy, new_page):
    from playwright.sync_api import expect

    base = serve_asgi(create_preview_app(settings, issue_copy))
    page = new_page(1100, 700)
    page.goto(base + "/")
    expect(page.frame_locator("#frame").locator("h2.nl-entry-title").first).to_have_text(OLD_TITLE, timeout=WAIT)
    finding = page.locator("#findings li.error")
    expect(finding).to_have_count(0)
    edit(issue_copy, "**核心洞察：** 端侧模型", "**核心洞查：** 端侧模型")
    expect(finding).to_contain_text(f"{issue_copy}:11: error: unknown label '核心洞查'", timeout=WAIT)
    edit(issue_copy, "**核心洞查：** 端侧模型", "**核心洞察：** 端侧模型")
    expect(finding).to_have_count(0, timeout=WAIT)
