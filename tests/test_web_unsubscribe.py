"""Unsubscribing through `newsletter serve`: the whole loop from a sent message to the
database, with a real HTTP client against uvicorn on 127.0.0.1.

The module sends the example issue once, to 20 subscribers; each test uses its own."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from newsletter.audience.erasure import erase_subscriber
from newsletter.store.schema import (
    ACTIVE,
    BOUNCED,
    RESUBSCRIBE,
    UNSUBSCRIBE,
    UNSUBSCRIBED,
    subscribers,
)
from newsletter.tokens import AddressDigests

pytest.register_assert_rewrite("tests.web_site")
from tests.web_site import Site, form_token, http_client, unsubscribe_url  # noqa: I001 - registers rewriting first

from tests.send_world import SECRET

pytest_plugins = ["tests.web_site"]

ONE_CLICK = b"List-Unsubscribe=One-Click"


def gmail_post(url: str) -> httpx.Response:
    """The request Gmail's servers make when a reader presses Unsubscribe (Gmail's sender
    guidelines; RFC 8058 section 3.2): a form POST with that one field, no cookies, no
    Origin, not following redirects."""
    with http_client() as gmail:
        return gmail.post(
            url,
            content=ONE_CLICK,
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Google-Mail-Unsubscribe"},
        )


@pytest.fixture(scope="module")
def sent(site: Site) -> Site:
    site.world.add_subscribers(20)
    site.send()
    return site


def reader(n: int) -> str:
    return f"reader{n}@example.org"


def url_of(sent: Site, n: int) -> str:
    return unsubscribe_url(sent.message_to(reader(n)))


def test_one_click_post_from_a_sent_message_unsubscribes_at_once(sent: Site):
    message = sent.message_to(reader(0))
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"

    answer = gmail_post(unsubscribe_url(message))

    assert answer.status_code == 200
    assert sent.status(reader(0)) == UNSUBSCRIBED
    (event,) = sent.events(UNSUBSCRIBE, reader(0))
    assert event["issue_id"] == sent.world.issue_row()["id"]
    assert event["delivery_id"] is not None
    assert event["detail"] == {"method": "one-click", "lists": ["default"]}
    assert event["user_agent"] == "Google-Mail-Unsubscribe"


def test_one_click_post_is_idempotent(sent: Site):
    url = url_of(sent, 1)
    assert gmail_post(url).status_code == 200
    assert gmail_post(url).status_code == 200
    assert sent.status(reader(1)) == UNSUBSCRIBED
    assert len(sent.events(UNSUBSCRIBE, reader(1))) == 1


def test_one_click_post_as_multipart_form_data_also_unsubscribes(sent: Site):
    # RFC 8058 section 3.1 allows the body as multipart/form-data too.
    with http_client() as receiver:
        answer = receiver.post(url_of(sent, 2), files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200
    assert sent.status(reader(2)) == UNSUBSCRIBED


def test_a_post_whose_body_is_not_the_one_click_unsubscribes_nobody(sent: Site):
    # RFC 8058 section 3.1: the one-click POST carries exactly `List-Unsubscribe=One-Click`.
    # Any other body (a prefetcher's empty POST, another value) is not a reader's click.
    url = url_of(sent, 19)
    bodies = [b"", b"List-Unsubscribe=", b"List-Unsubscribe=Yes", b"List-Unsubscribe=one-click-please", b"One-Click"]
    with http_client() as receiver:
        for body in bodies:
            answer = receiver.post(url, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert answer.status_code == 400, body
            assert sent.status(reader(19)) == ACTIVE, body
        answer = receiver.post(url, files={"List-Unsubscribe": (None, "Yes")})
        assert answer.status_code == 400
    assert sent.status(reader(19)) == ACTIVE
    assert sent.events(email=reader(19)) == []


def test_get_shows_a_button_and_never_unsubscribes(sent: Site):
    url = url_of(sent, 3)
    with sent.client() as browser:
        for _ in range(3):  # a scanner, a previewer, the reader
            page = browser.get(url)
            assert page.status_code == 200
    assert reader(3) in page.text
    assert '<button type="submit">确认退订</button>' in page.text
    assert 'lang="zh-CN"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert sent.status(reader(3)) == ACTIVE
    assert sent.events(email=reader(3)) == []


def tampered(url: str) -> str:
    token = url.rsplit("/", 1)[1]
    middle = len(token) // 2
    swapped = "A" if token[middle] != "A" else "B"
    return url[: -len(token)] + token[:middle] + swapped + token[middle + 1 :]


def test_a_tampered_token_is_refused_and_changes_nothing(sent: Site):
    url = tampered(url_of(sent, 4))
    assert gmail_post(url).status_code == 404
    with sent.client() as browser:
        page = browser.get(url)
    assert page.status_code == 404
    assert "链接无效" in page.text
    assert sent.status(reader(4)) == ACTIVE
    assert sent.events(email=reader(4)) == []


def test_the_page_button_unsubscribes_and_offers_to_resubscribe(sent: Site):
    url = url_of(sent, 5)
    with sent.client() as browser:
        page = browser.get(url)
        done = browser.post(url, data={"action": "unsubscribe", "form_token": form_token(page.text)})
        assert done.status_code == 200
        assert "已退订" in done.text
        assert sent.status(reader(5)) == UNSUBSCRIBED
        (event,) = sent.events(UNSUBSCRIBE, reader(5))
        assert event["detail"] == {"method": "page", "lists": ["default"]}

        again = browser.post(url, data={"action": "resubscribe", "form_token": form_token(done.text)})
        assert again.status_code == 200
        assert "已重新订阅" in again.text
    assert sent.status(reader(5)) == ACTIVE
    (event,) = sent.events(RESUBSCRIBE, reader(5))
    assert event["issue_id"] == sent.world.issue_row()["id"]


def test_opening_the_page_after_unsubscribing_shows_it_done(sent: Site):
    url = url_of(sent, 6)
    gmail_post(url)
    with sent.client() as browser:
        page = browser.get(url)
    assert page.status_code == 200
    assert "已退订" in page.text and 'value="resubscribe"' in page.text


@pytest.mark.parametrize(
    ("n", "forgery"),
    [(7, "no cookie"), (8, "wrong token"), (9, "other origin"), (10, "cross-site fetch")],
)
def test_the_page_form_refuses_a_cross_site_post(sent: Site, n: int, forgery: str):
    url = url_of(sent, n)
    with sent.client() as browser:
        token = form_token(browser.get(url).text)
        data = {"action": "unsubscribe", "form_token": token}
        headers = {}
        if forgery == "no cookie":
            browser.cookies.clear()
        elif forgery == "wrong token":
            data["form_token"] = "x" * 43
        elif forgery == "other origin":
            headers["Origin"] = "https://attacker.example"
        else:
            headers["Sec-Fetch-Site"] = "cross-site"
        answer = browser.post(url, data=data, headers=headers)
    assert answer.status_code == 403
    assert "表单已失效" in answer.text
    assert sent.status(reader(n)) == ACTIVE
    assert sent.events(email=reader(n)) == []


def test_the_page_form_accepts_its_own_origin(sent: Site):
    url = url_of(sent, 11)
    with sent.client() as browser:
        token = form_token(browser.get(url).text)
        answer = browser.post(
            url,
            data={"action": "unsubscribe", "form_token": token},
            headers={"Origin": sent.url, "Sec-Fetch-Site": "same-origin"},
        )
    assert answer.status_code == 200
    assert sent.status(reader(11)) == UNSUBSCRIBED


def test_resubscribing_needs_the_form_token_too(sent: Site):
    url = url_of(sent, 12)
    gmail_post(url)
    with http_client() as stranger:
        answer = stranger.post(url, data={"action": "resubscribe"})
    assert answer.status_code == 403
    assert sent.status(reader(12)) == UNSUBSCRIBED


def test_a_bounced_subscriber_cannot_resubscribe_from_the_page(sent: Site):
    with sent.world.store.begin() as conn:
        conn.execute(sa.update(subscribers).where(subscribers.c.email == reader(13)).values(status=BOUNCED))
    url = url_of(sent, 13)
    with sent.client() as browser:
        page = browser.get(url)
        assert 'value="resubscribe"' not in page.text
        assert f"{sent.url}/subscribe" in page.text
        # The form is not offered; a hand-made POST with a good form token changes nothing.
        answer = browser.post(url, data={"action": "resubscribe", "form_token": browser.cookies["nl_form"]})
    assert answer.status_code == 200
    assert sent.status(reader(13)) == BOUNCED
    assert sent.events(RESUBSCRIBE, reader(13)) == []


def test_a_test_send_link_says_so_and_changes_nothing(sent: Site):
    before = len(sent.events())
    message = sent.send_test()
    assert str(message["Subject"]).startswith("[TEST]")
    url = unsubscribe_url(message)
    with sent.client() as browser:
        page = browser.get(url)
    assert page.status_code == 200
    assert "测试邮件" in page.text
    assert gmail_post(url).status_code == 200
    assert len(sent.events()) == before


def test_an_erased_subscriber_gets_a_successful_one_click_and_an_invalid_page(sent: Site):
    url = url_of(sent, 14)
    before = len(sent.events())
    erase_subscriber(sent.world.store, AddressDigests(SECRET), email=reader(14), source="cli")
    assert gmail_post(url).status_code == 200
    with sent.client() as browser:
        assert browser.get(url).status_code == 404
    assert len(sent.events()) == before
