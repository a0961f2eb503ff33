"""The Host header decides nothing: the serve app's trailing-slash redirect goes to
`base_url`, and the preview server answers only to 127.0.0.1 and localhost (a page on
another site whose name a DNS rebinding points at 127.0.0.1 must not read the preview)."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from newsletter.config import load_settings
from newsletter.web.preview import create_preview_app
from tests.send_world import EXAMPLE_ISSUE
from tests.web_site import Site, http_client

pytest_plugins = ["tests.web_site", "http_server"]

EVIL = "evil.example.net"


@pytest.fixture(scope="module")
def sent(site: Site) -> Site:
    site.world.add_subscribers(1, prefix="hosts")
    site.send()
    return site


@pytest.mark.parametrize("path", ["/issues/2026-11-30/", "/stats/2026-11-30/", "/feed.xml/"])
@pytest.mark.parametrize("host", [EVIL, f"{EVIL}:443", "127.0.0.1:1"])
def test_the_trailing_slash_redirect_goes_to_base_url_whatever_the_host_header(sent: Site, path: str, host: str):
    with http_client() as client:
        answer = client.get(sent.url + path + "?a=1", headers={"Host": host})
    assert answer.status_code in (301, 307, 308), answer.status_code
    location = answer.headers["location"]
    assert location == sent.context.settings.base_url + path.rstrip("/") + "?a=1", location
    assert urlsplit(location).netloc == urlsplit(sent.url).netloc


def test_a_path_that_is_nothing_with_or_without_its_slash_is_a_404(sent: Site):
    with http_client() as client:
        answer = client.get(sent.url + "/nothing-here/", headers={"Host": EVIL})
    assert answer.status_code == 404 and "location" not in answer.headers


@pytest.fixture
def preview_url(serve_asgi, tmp_path) -> str:
    issue = Path(shutil.copy(EXAMPLE_ISSUE, tmp_path / EXAMPLE_ISSUE.name))
    return serve_asgi(create_preview_app(load_settings(environ={}, cwd=tmp_path), issue))


@pytest.mark.parametrize("host", [EVIL, f"{EVIL}:8000", "127.0.0.2:8000", "localhost.example.net", ""])
def test_the_preview_refuses_other_host_headers(preview_url: str, host: str):
    with httpx.Client() as client:
        for path in ("/", "/email.html", "/version"):
            answer = client.get(preview_url + path, headers={"Host": host})
            assert answer.status_code == 400, (path, host, answer.status_code)
            assert "端侧大模型" not in answer.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_preview_answers_on_loopback_names(preview_url: str, host: str):
    port = urlsplit(preview_url).port
    with httpx.Client() as client:
        answer = client.get(preview_url + "/email.html", headers={"Host": f"{host}:{port}"})
    assert answer.status_code == 200 and "端侧大模型" in answer.text
