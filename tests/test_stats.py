"""Per-issue stats: exact numbers from a crafted ledger, `newsletter stats` (text and
--json), and `/stats/...` under uvicorn (basic auth, the SVG chart, escaping), on SQLite
and PostgreSQL; and the page in Chromium.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from crafted_ledger import SEND_START, CraftedLedger

from newsletter.cli.main import main
from newsletter.config import Settings, replace
from newsletter.stats import issue_stats
from newsletter.store import schema
from newsletter.web.app import create_app
from newsletter.web.context import WebContext

pytest_plugins = ["http_server", "browser"]

REPO = Path(__file__).resolve().parent.parent
SLUG = "2026-11-30"
LINKS = ("https://news.example.com/edge-llm", "https://devices.example.org/q4", "https://chips.example.net/prices")
PASSWORD = "correct horse battery staple"
APPLE_PROXY = "Mozilla/5.0"


def minutes(n: float):
    return SEND_START + timedelta(minutes=n)


def craft(store) -> CraftedLedger:
    """The issue of the module docstring's numbers; see EXPECTED."""
    ledger = CraftedLedger(store)
    issue = ledger.issue(SLUG, link_urls=LINKS)
    ids = {
        name: ledger.subscriber(f"{name}@example.org")
        for name in ("ann", "bot", "cat", "dead", "full", "angry", "temp", "perm", "later", "gone", "left", "virus")
    }
    delivery = {}
    for name, sid in ids.items():
        status, failure = {
            "temp": (schema.FAILED, schema.TEMPORARY),
            "perm": (schema.FAILED, schema.PERMANENT),
            "later": (schema.QUEUED, None),
            "gone": (schema.SKIPPED, "unsubscribed"),
        }.get(name, (schema.SENT, None))
        delivery[name] = ledger.delivery(issue, sid, status=status, failure=failure, provider_id=f"ses-{name}")

    def event(kind, name, at, **options):
        ledger.event(kind, issue, ids[name], at=minutes(at), delivery_id=delivery[name], **options)

    for name in ("ann", "bot", "cat", "left"):
        event(schema.DELIVERY, name, 1)
    # ann: a person; opens twice (once seen by SES's own tracking), clicks link 0 twice.
    event(schema.OPEN, "ann", 10)
    event(schema.SES_OPEN, "ann", 65)
    event(schema.CLICK, "ann", 12, link_idx=0)
    event(schema.CLICK, "ann", 90, link_idx=0)
    # bot: only machines -- Apple's proxy opening, a scanner clicking 5 s after sending.
    event(schema.OPEN, "bot", 1, machine=True)
    event(schema.CLICK, "bot", 5 / 60, link_idx=0, machine=True)
    # cat: a proxy first, then the person; SES's click tracking saw the click on link 1.
    event(schema.OPEN, "cat", 2, machine=True)
    event(schema.OPEN, "cat", 135)
    event(schema.SES_CLICK, "cat", 136, link_idx=1)
    event(schema.DELIVERY_DELAY, "cat", 0.5)
    # The rest: what SES and the unsubscribe link report.
    event(schema.BOUNCE, "dead", 3, detail={"permanent": True, "soft": False})
    event(schema.BOUNCE, "full", 3, detail={"permanent": False, "soft": True})
    event(schema.BOUNCE, "full", 600, detail={"permanent": False, "soft": True})
    event(schema.COMPLAINT, "angry", 240)
    event(schema.UNSUBSCRIBE, "angry", 241)
    event(schema.UNSUBSCRIBE, "left", 30)
    event(schema.REJECT, "virus", 0)
    return ledger


NO_ENTRY = {"text": None, "entry": None, "category": None}
EXPECTED = {
    "slug": SLUG,
    "title": "AI行业速递 - 2026年11月30日",
    "subject": "AI行业速递 - 2026年11月30日",
    "language": "zh-CN",
    "issue_date": "2026-11-30",
    "send_started_at": "2026-11-30T08:00:00Z",
    "completed_at": None,
    "recipients": 12,
    "sent": 8,
    "pending": 1,
    "skipped": 1,
    "failed_temporary": 1,
    "failed_permanent": 1,
    "failed": 2,
    "delivered": 4,
    "bounced_hard": 1,
    "bounced_soft": 1,
    "bounced": 2,
    "complained": 1,
    "rejected": 1,
    "delayed": 1,
    "unsubscribed": 2,
    "opens": {"people": 2, "machines": 1},
    "clicks": {"people": 2, "machines": 1},
    "links": [
        {"index": 0, "url": LINKS[0], "clicks": 3, "machine_clicks": 1, "people": 1, **NO_ENTRY},
        {"index": 1, "url": LINKS[1], "clicks": 1, "machine_clicks": 0, "people": 1, **NO_ENTRY},
        {"index": 2, "url": LINKS[2], "clicks": 0, "machine_clicks": 0, "people": 0, **NO_ENTRY},
    ],
    # The crafted links sit in no entry: one group, whose people are counted once.
    "entries": [{"title": None, "category": None, "clicks": 4, "machine_clicks": 1, "people": 2}],
    "categories": [],
    # Rows queued, uncertain and failed temporarily remain.
    "state": "incomplete",
    "timeline": [
        {"hour": 0, "start": "2026-11-30T08:00:00Z", "opens": 1, "clicks": 1, "machine_opens": 2, "machine_clicks": 1},
        {"hour": 1, "start": "2026-11-30T09:00:00Z", "opens": 1, "clicks": 1, "machine_opens": 0, "machine_clicks": 0},
        {"hour": 2, "start": "2026-11-30T10:00:00Z", "opens": 1, "clicks": 1, "machine_opens": 0, "machine_clicks": 0},
    ],
}


def test_the_numbers_of_a_crafted_ledger_are_exact(store):
    craft(store)
    assert issue_stats(store, SLUG).as_json() == EXPECTED


def test_an_issue_nobody_has_opened_has_an_empty_timeline_and_zero_shares(store):
    ledger = CraftedLedger(store)
    issue = ledger.issue("2026-12-07", link_urls=LINKS[:1])
    ledger.delivery(issue, ledger.subscriber("quiet@example.org"))
    stats = issue_stats(store, "2026-12-07")
    assert (stats.recipients, stats.sent, stats.opens.total, stats.timeline) == (1, 1, 0, ())
    assert stats.share_of_sent(stats.opens.people) == 0.0
    assert [(link.clicks, link.people) for link in stats.links] == [(0, 0)]


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """For the presentation tests: the numbers themselves are checked on both databases
    above (and the JSON command below), the pages and tables need only one."""
    return f"sqlite:///{tmp_path / 'presented.db'}"


@pytest.fixture
def sqlite_store(sqlite_url):
    from newsletter.store import Store

    with Store.open(sqlite_url) as opened:
        yield opened


# ---- the command ----


def write_config(tmp_path, database_url: str, monkeypatch) -> str:
    for name in ("NEWSLETTER_DATABASE_URL", "NEWSLETTER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "newsletter.toml"
    path.write_text(f"[newsletter]\ndatabase = {json.dumps(database_url)}\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def config(tmp_path, database_url, monkeypatch) -> str:
    return write_config(tmp_path, database_url, monkeypatch)


@pytest.fixture
def sqlite_config(tmp_path, sqlite_url, monkeypatch) -> str:
    return write_config(tmp_path, sqlite_url, monkeypatch)


def run(config: str, *args: str):
    return CliRunner().invoke(main, ["--config", config, *args], catch_exceptions=False)


def test_stats_command_prints_every_number(sqlite_store, sqlite_config):
    craft(sqlite_store)
    result = run(sqlite_config, "stats", SLUG)
    assert result.exit_code == 0, result.output
    text = result.output
    for label, number, share in [
        ("recipients", 12, None),
        ("sent", 8, None),
        ("failed \\(temporary\\)", 1, None),
        ("failed \\(permanent\\)", 1, None),
        ("delivered", 4, "50.0%"),
        ("bounced \\(hard\\)", 1, "12.5%"),
        ("bounced \\(soft\\)", 1, "12.5%"),
        ("complained", 1, "12.5%"),
        ("unsubscribed", 2, "25.0%"),
        ("opened \\(people\\)", 2, "25.0%"),
        ("opened \\(machines\\)", 1, "12.5%"),
        ("clicked \\(people\\)", 2, "25.0%"),
    ]:
        pattern = rf"^\s*{label}\s+{number}" + (rf"\s+{re.escape(share)}" if share else r"\s*$")
        assert re.search(pattern, text, re.MULTILINE), f"{label}: {number} {share}\n{text}"
    link_row = r"^\s*0\s+https://news\.example\.com/edge-ll\S*\s+\(template\)\s+3\s+1\s+1\s*$"
    assert re.search(link_row, text, re.MULTILINE), text
    assert re.search(r"^\s*1\s+2026-11-30 09:00\s+1\s+0\s+1\s+0\s*$", text, re.MULTILINE), text


def test_stats_command_json_is_the_same_numbers(store, config):
    craft(store)
    result = run(config, "stats", SLUG, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == EXPECTED


def test_stats_command_takes_the_issue_file_too(sqlite_store, sqlite_config):
    craft(sqlite_store)
    result = run(sqlite_config, "stats", str(REPO / "issues" / f"{SLUG}.md"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["recipients"] == 12


@pytest.mark.parametrize(
    "argument, message",
    [
        ("2027-01-01", "error: no issue '2027-01-01' in the database (issues: 2026-11-30)\n"),
        ("issues/missing.md", "error: issues/missing.md: no such issue file\n"),
    ],
)
def test_stats_command_for_an_unknown_issue_is_one_line_and_exit_1(sqlite_store, sqlite_config, argument, message):
    craft(sqlite_store)
    result = CliRunner().invoke(main, ["--config", sqlite_config, "stats", argument])
    assert (result.exit_code, result.output) == (1, message)


# ---- the web pages ----


class StatsSite:
    def __init__(self, base_url: str, client: httpx.Client) -> None:
        self.base_url = base_url
        self.client = client

    def get(self, path: str, password: str | None = PASSWORD) -> httpx.Response:
        auth = ("editor", password) if password is not None else None
        return self.client.get(self.base_url + path, auth=auth)


def site_for(store, serve_asgi, *, password: str) -> StatsSite:
    settings = replace(
        Settings(), web={"admin_password": password}, newsletter={"language": "en", "secret": "stats-tests-" + "x" * 32}
    )
    base_url = serve_asgi(create_app(WebContext.create(settings, store)))
    return StatsSite(base_url, httpx.Client(timeout=10))


@pytest.fixture
def site(sqlite_store, serve_asgi):
    craft(sqlite_store)
    site = site_for(sqlite_store, serve_asgi, password=PASSWORD)
    yield site
    site.client.close()


def test_stats_pages_need_the_admin_password(site):
    for number, path in enumerate(("/stats/", f"/stats/{SLUG}")):
        # Each path from an address of its own: wrong passwords from one address slow it
        # down (test_wrong_passwords_slow_down_that_client_address_only).
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{10 + number}")
        with httpx.Client(timeout=10, transport=transport) as client:
            address = StatsSite(site.base_url, client)
            for password in (None, "wrong", PASSWORD.upper(), ""):
                answer = address.get(path, password=password)
                assert answer.status_code == 401, (path, password)
                assert answer.headers["www-authenticate"] == 'Basic realm="newsletter stats", charset="UTF-8"'
                assert "Recipients" not in answer.text and "<svg" not in answer.text
    assert site.get(f"/stats/{SLUG}").status_code == 200


def test_the_stats_page_shows_the_numbers_and_an_accessible_svg_chart(site):
    answer = site.get(f"/stats/{SLUG}")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    page = answer.text
    assert re.search(r"<th scope=\"row\">Recipients</th><td class=\"num\">12</td>", page)
    # Queued, uncertain and failed temporarily rows are left, and no send is running: the
    # state the ledger gives (sending/state.py), not "still sending".
    assert "incomplete: 2 not delivered yet" in page
    assert re.search(r"<th scope=\"row\">Delivered</th><td class=\"num\">4</td><td class=\"num\">50.0%</td>", page)
    assert re.search(r"<th scope=\"row\">Opened \(people\)</th><td class=\"num\">2</td>", page)
    svg = re.search(r"<svg class=\"chart\".*?</svg>", page, re.DOTALL).group(0)
    assert 'role="img"' in svg and 'aria-labelledby="chart-title chart-desc"' in svg
    assert '<title id="chart-title">Opens and clicks per hour since sending</title>' in svg
    assert "5 opens and 4 clicks" in svg  # the <desc>: every open and click, machines included
    # One group per bin and one bar per non-zero series: hour 0 has people and machines for
    # both opens and clicks (4 bars), hours 1 and 2 people only (2 bars each).
    assert len(re.findall(r'<rect class="(?:opens|clicks)(?: machine)?" x=', svg)) == 4 + 2 + 2 + 4  # + legend
    assert "<script" not in page and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    assert LINKS[0] in page


def test_the_stats_index_lists_the_issues(site):
    answer = site.get("/stats/")
    assert answer.status_code == 200
    assert f'href="{SLUG}"' in answer.text and "AI行业速递 - 2026年11月30日" in answer.text


def test_an_unknown_issue_is_a_404_page(site):
    answer = site.get("/stats/1999-01-01")
    assert answer.status_code == 404
    assert "1999-01-01" in answer.text


def test_the_stats_pages_are_closed_without_a_configured_password(sqlite_store, serve_asgi):
    site = site_for(sqlite_store, serve_asgi, password="")
    for password in (None, ""):
        answer = site.get(f"/stats/{SLUG}", password=password)
        assert answer.status_code == 403
        assert "NEWSLETTER_ADMIN_PASSWORD" in answer.text
    site.client.close()


def test_text_from_the_issue_is_escaped_on_the_stats_pages(sqlite_store, serve_asgi):
    store = sqlite_store
    ledger = CraftedLedger(store)
    ledger.issue("2026-12-07", title='<script>alert("t")</script>', link_urls=("https://x.example.com/?a=1&b=<i>",))
    site = site_for(store, serve_asgi, password=PASSWORD)
    for path in ("/stats/", "/stats/2026-12-07"):
        page = site.get(path).text
        assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "b=<i>" not in site.get("/stats/2026-12-07").text
    site.client.close()


@pytest.mark.browser
def test_the_stats_page_renders_in_chromium(site, new_page):
    from browser import blocked_requests, screenshot

    for width, name in ((680, "stats-page-desktop"), (375, "stats-page-phone")):
        page = new_page(width=width, http_credentials={"username": "editor", "password": PASSWORD})
        page.goto(f"{site.base_url}/stats/{SLUG}")
        chart = page.locator("svg.chart")
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        assert page.locator("th", has_text="Recipients").count() == 1
        # The chart fits the page: nothing wider than the viewport.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert blocked_requests(page) == []
        screenshot(page, name)


def test_wrong_passwords_slow_down_that_client_address_only(sqlite_store, serve_asgi):
    craft(sqlite_store)
    settings = replace(
        Settings(), web={"admin_password": PASSWORD}, newsletter={"language": "en", "secret": "stats-tests-" + "x" * 32}
    )
    base_url = serve_asgi(create_app(WebContext.create(settings, sqlite_store)))
    # Two client addresses on loopback: 127.0.0.1 guesses, 127.0.0.2 is the editor.
    guesser = httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.1"))
    editor = httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with guesser, editor:
        answers = [guesser.get(base_url + "/stats/", auth=("x", f"guess{n}")).status_code for n in range(8)]
        assert answers[:5] == [401] * 5 and answers[5:] == [429] * 3, answers
        # The right password does not help the guesser now: nothing is compared.
        assert guesser.get(base_url + "/stats/", auth=("x", PASSWORD)).status_code == 429
        assert editor.get(base_url + "/stats/", auth=("x", PASSWORD)).status_code == 200
        # Asking for the login prompt (no credentials) is not a guess.
        for _ in range(8):
            assert editor.get(base_url + "/stats/").status_code == 401
        assert editor.get(base_url + "/stats/", auth=("x", PASSWORD)).status_code == 200
