"""Subscribing with double opt-in through `newsletter serve`: the form, the confirmation
email that lands in the outbox, its link, and what the answer must not reveal."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from newsletter.audience.erasure import address_digests, erase_subscriber
from newsletter.audience.lists import set_list
from newsletter.audience.subscribers import add_subscriber, unsubscribe
from newsletter.config import ListSettings, replace
from newsletter.store.schema import (
    ACTIVE,
    BOUNCED,
    CONFIRM,
    PENDING,
    UNSUBSCRIBED,
    confirmations,
    lists,
    memberships,
    subscribers,
    utcnow,
)
from newsletter.tokens import Purpose

pytest.register_assert_rewrite("tests.web_site")
from tests.send_world import parse_message
from tests.web_site import BROWSER, Site, form_token

pytest_plugins = ["tests.web_site"]

SENT_PAGE = "请查收确认邮件"


@pytest.fixture(scope="module")
def shop(site: Site) -> Site:
    """The module's site, with one member of each standing already in the database."""
    store = site.world.store
    add_subscriber(store, "member@example.net", name="Member", list_slug="default")
    add_subscriber(store, "left@example.net", list_slug="default")
    unsubscribe(store, "left@example.net")
    add_subscriber(store, "bounced@example.net", list_slug="default")
    with store.begin() as conn:
        conn.execute(sa.update(subscribers).where(subscribers.c.email == "bounced@example.net").values(status=BOUNCED))
    return site


# Each test posts from an address of its own, as behind a proxy (uvicorn believes
# X-Forwarded-For from 127.0.0.1), so the per-address rate limit counts each test apart.
_client_numbers = iter(range(1, 250))


def subscribe(site: Site, email: str, *, name: str = "", client_ip: str | None = None, **extra):
    ip = client_ip or f"198.51.100.{next(_client_numbers)}"
    with site.client(headers={"User-Agent": BROWSER, "X-Forwarded-For": ip}) as browser:
        form = browser.get("/subscribe")
        if form.status_code == 200:
            token = form_token(form.text)
        else:  # no public default list, so no form here: the cookie of an earlier page, as a browser keeps it
            token = "t" * 43
            browser.cookies.set("nl_form", token)
        data = {"email": email, "name": name, "list": "default", "form_token": token, **extra}
        return browser.post("/subscribe", data=data)


def confirmations_to(site: Site, email: str) -> list[EmailMessage]:
    # Case-blind: a request as EAGER@example.org is mailed to that spelling.
    return [m for m in site.messages() if m["To"].addresses[0].addr_spec.lower() == email.lower()]


def wait_for_confirmation(site: Site, email: str, count: int = 1, timeout: float = 10) -> EmailMessage:
    deadline = time.monotonic() + timeout
    while len(found := confirmations_to(site, email)) < count:
        assert time.monotonic() < deadline, f"no confirmation email to {email}"
        time.sleep(0.02)
    assert len(found) == count
    return found[-1]


def no_new_mail_after_the_requests_finished(site: Site, email: str, before: int) -> None:
    # The email would leave from the form's deferred work, queued by the request's background
    # task: once no call is running and that queue is empty, any email it sent is in the
    # outbox.  Counted per address: the site is shared by the module.
    site.wait_idle()
    assert len(confirmations_to(site, email)) == before


def confirm_link(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"(http://\S+/confirm/[A-Za-z0-9_-]{43})\s", body).group(1)


def allow_another_email(site: Site, email: str) -> None:
    """Move the address's last confirmation email back past the hourly limit."""
    sent_at = site.subscriber(email)["confirmation_sent_at"]
    with site.world.store.begin() as conn:
        conn.execute(
            sa.update(subscribers)
            .where(subscribers.c.email == email)
            .values(confirmation_sent_at=sent_at - timedelta(hours=1, seconds=1))
        )


def test_the_form_is_labelled_and_in_the_newsletters_language(shop: Site):
    with shop.client() as browser:
        page = browser.get("/subscribe")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text
    assert '<label for="email">邮箱地址</label>' in page.text
    assert 'id="email" name="email"' in page.text and 'autocomplete="email"' in page.text
    assert '<label for="name">' in page.text
    assert "nl_form" in page.headers["set-cookie"] and "samesite=strict" in page.headers["set-cookie"].lower()


def test_a_new_address_gets_one_confirmation_email_and_its_link_confirms(shop: Site):
    answer = subscribe(shop, "new.reader@example.org", name="新读者")
    assert answer.status_code == 200
    assert SENT_PAGE in answer.text
    message = wait_for_confirmation(shop, "new.reader@example.org")
    row = shop.subscriber("new.reader@example.org")
    assert shop.status("new.reader@example.org") == PENDING and row["source"] == "web"
    # The name typed on the form waits for the confirmation; nobody is named by a stranger.
    assert row["name"] == "" and row["confirmed_at"] is None

    assert str(message["Subject"]) == "请确认订阅「AI行业速递」"
    assert message["From"].addresses[0].addr_spec == "digest@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] and message["Date"]
    assert "List-Unsubscribe" not in message
    body = message.get_body(preferencelist=("plain",))
    assert body["Content-Transfer-Encoding"] == "base64"
    # Nothing typed into the form but the address reaches the email.
    assert "新读者" not in body.get_content()

    link = confirm_link(message)
    assert link.startswith(f"{shop.url}/confirm/")
    with shop.client() as browser:
        page = browser.get(link)
        again = browser.get(link)
    assert page.status_code == again.status_code == 200
    assert "订阅成功" in page.text and "new.reader@example.org" in page.text
    row = shop.subscriber("new.reader@example.org")
    assert shop.status("new.reader@example.org") == ACTIVE and row["confirmed_at"] is not None
    assert row["name"] == "新读者"
    with shop.world.store.read() as conn:
        member_of = (
            conn.execute(sa.select(lists.c.slug).join(memberships).where(memberships.c.subscriber_id == row["id"]))
            .scalars()
            .all()
        )
    assert member_of == ["default"]
    (event,) = shop.events(CONFIRM, "new.reader@example.org")
    assert event["detail"] == {"list": "default", "was": PENDING}
    with shop.world.store.read() as conn:
        (stored,) = conn.execute(sa.select(confirmations).where(confirmations.c.subscriber_id == row["id"])).all()
    # Used once, and the typed name is not kept beside the subscriber's own.
    assert stored.used_at is not None and stored.name is None
    assert link.rsplit("/", 1)[1] not in stored.digest


def test_the_forms_work_waits_for_the_answer_and_a_shutdown_still_sends_what_was_asked(shop: Site):
    deferred = shop.app.state.deferred
    saved_delay, deferred.delay = deferred.delay, 30.0
    try:
        subscribe(shop, "late.reader@example.org")
        shop.in_flight.wait_idle()
        # Answered and queued, not yet run: nothing written, no email.
        with shop.world.store.read() as conn:
            stored = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email == "late.reader@example.org"))
            assert stored.first() is None
        assert confirmations_to(shop, "late.reader@example.org") == []
        # What the app's shutdown does: run what is queued without waiting for its delay.
        deferred.stop()
        assert len(confirmations_to(shop, "late.reader@example.org")) == 1
        assert shop.status("late.reader@example.org") == PENDING
    finally:
        deferred.delay = saved_delay


def test_the_confirmation_email_is_crlf_canonical_in_its_headers_and_its_text(shop: Site):
    subscribe(shop, "crlf.reader@example.org")
    wait_for_confirmation(shop, "crlf.reader@example.org")
    (raw,) = [
        path.read_bytes()
        for path in shop.world.outbox_files()
        if parse_message(path.read_bytes())["To"].addresses[0].addr_spec == "crlf.reader@example.org"
    ]
    head, separator, _ = raw.partition(b"\r\n\r\n")
    assert separator and b"\n" not in head.replace(b"\r\n", b"") and b"\r" not in head.replace(b"\r\n", b"")
    # RFC 2046 section 4.1.1: CRLF is the line break of text/*, and RFC 2045 section 6.8
    # base64-encodes that canonical form; a bare LF inside the base64 is a different text.
    text = parse_message(raw).get_body(preferencelist=("plain",)).get_payload(decode=True)
    assert text.count(b"\r\n") >= 4, text
    assert b"\n" not in text.replace(b"\r\n", b""), "a bare LF in the decoded text part"
    assert b"\r" not in text.replace(b"\r\n", b""), "a bare CR in the decoded text part"


def test_the_answer_is_the_same_whoever_the_address_belongs_to(shop: Site):
    answers = {
        email: subscribe(shop, email)
        for email in ("member@example.net", "left@example.net", "bounced@example.net", "stranger@example.org")
    }
    statuses = {answer.status_code for answer in answers.values()}
    bodies = {answer.text for answer in answers.values()}
    assert statuses == {200} and len(bodies) == 1
    assert SENT_PAGE in bodies.pop()


def test_an_active_member_gets_no_email(shop: Site):
    before = len(confirmations_to(shop, "member@example.net"))
    row = shop.subscriber("member@example.net")
    assert subscribe(shop, "member@example.net", name="Someone Else").status_code == 200
    no_new_mail_after_the_requests_finished(shop, "member@example.net", before)
    after = shop.subscriber("member@example.net")
    assert after["status"] == ACTIVE and after["name"] == "Member"
    assert after["confirmation_sent_at"] == row["confirmation_sent_at"]


def test_at_most_one_confirmation_email_an_hour_per_address(shop: Site):
    subscribe(shop, "eager@example.org")
    wait_for_confirmation(shop, "eager@example.org")
    for _ in range(3):
        assert subscribe(shop, "EAGER@example.org").status_code == 200
    no_new_mail_after_the_requests_finished(shop, "eager@example.org", 1)
    assert len(confirmations_to(shop, "eager@example.org")) == 1

    # An hour later the next request mails again.
    allow_another_email(shop, "eager@example.org")
    subscribe(shop, "eager@example.org")
    wait_for_confirmation(shop, "eager@example.org", count=2)


def test_each_email_has_a_link_of_its_own_and_only_the_newest_confirms(shop: Site):
    subscribe(shop, "twice@example.org", name="First Try")
    old = confirm_link(wait_for_confirmation(shop, "twice@example.org"))
    allow_another_email(shop, "twice@example.org")
    subscribe(shop, "twice@example.org", name="Second Try")
    new = confirm_link(wait_for_confirmation(shop, "twice@example.org", count=2))
    assert old != new
    with shop.client() as browser:
        stale = browser.get(old)
        assert stale.status_code == 404 and "链接无效" in stale.text
        assert shop.status("twice@example.org") == PENDING
        assert browser.get(new).status_code == 200
    assert shop.status("twice@example.org") == ACTIVE
    assert shop.subscriber("twice@example.org")["name"] == "Second Try"


def test_a_link_older_than_seven_days_no_longer_confirms(shop: Site):
    subscribe(shop, "slow@example.org")
    link = confirm_link(wait_for_confirmation(shop, "slow@example.org"))
    with shop.world.store.begin() as conn:
        conn.execute(
            sa.update(confirmations)
            .where(confirmations.c.subscriber_id == shop.subscriber("slow@example.org")["id"])
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    with shop.client() as browser:
        assert browser.get(link).status_code == 404
    assert shop.status("slow@example.org") == PENDING


def test_a_link_mailed_before_this_version_still_confirms_until_a_new_one_is_sent(shop: Site):
    # Links mailed before migration 0004 were signed (list, subscriber) claims.
    add_subscriber(shop.world.store, "early@example.org", status=PENDING)
    row = shop.subscriber("early@example.org")
    with shop.world.store.begin() as conn:
        conn.execute(
            sa.update(subscribers).where(subscribers.c.id == row["id"]).values(confirmation_sent_at=sa.func.now())
        )
        list_id = conn.execute(sa.select(lists.c.id).where(lists.c.slug == "default")).scalar_one()
    legacy = f"{shop.url}/confirm/{shop.context.tokens.sign(Purpose.CONFIRM, list_id, row['id'])}"
    with shop.client() as browser:
        assert browser.get(legacy).status_code == 200
    assert shop.status("early@example.org") == ACTIVE

    # Someone else whose old link is superseded by a new email: only the new link works.
    add_subscriber(shop.world.store, "later@example.org", status=PENDING)
    later = shop.subscriber("later@example.org")
    subscribe(shop, "later@example.org")
    new = confirm_link(wait_for_confirmation(shop, "later@example.org"))
    old = f"{shop.url}/confirm/{shop.context.tokens.sign(Purpose.CONFIRM, list_id, later['id'])}"
    with shop.client() as browser:
        assert browser.get(old).status_code == 404
        assert browser.get(new).status_code == 200


def test_someone_who_unsubscribed_comes_back_only_by_confirming(shop: Site):
    subscribe(shop, "left@example.net")
    link = confirm_link(wait_for_confirmation(shop, "left@example.net"))
    assert shop.status("left@example.net") == UNSUBSCRIBED
    with shop.client() as browser:
        assert browser.get(link).status_code == 200
    assert shop.status("left@example.net") == ACTIVE


def test_a_bounced_address_comes_back_only_by_confirming(shop: Site):
    subscribe(shop, "bounced@example.net")
    link = confirm_link(wait_for_confirmation(shop, "bounced@example.net"))
    assert shop.status("bounced@example.net") == BOUNCED
    with shop.client() as browser:
        assert browser.get(link).status_code == 200
    assert shop.status("bounced@example.net") == ACTIVE


def test_a_confirmation_link_mailed_before_an_unsubscribe_no_longer_confirms(shop: Site):
    subscribe(shop, "fickle@example.org")
    link = confirm_link(wait_for_confirmation(shop, "fickle@example.org"))
    with shop.client() as browser:
        assert browser.get(link).status_code == 200
    unsubscribe(shop.world.store, "fickle@example.org")
    with shop.client() as browser:
        page = browser.get(link)
    assert page.status_code == 404
    assert "链接无效" in page.text
    assert shop.status("fickle@example.org") == UNSUBSCRIBED


def test_a_link_scanner_gets_a_button_and_confirms_nothing(shop: Site):
    subscribe(shop, "guarded@example.org")
    link = confirm_link(wait_for_confirmation(shop, "guarded@example.org"))
    with shop.client(headers={"User-Agent": "Mozilla/5.0"}) as scanner:
        page = scanner.get(link)
    assert page.status_code == 200
    assert "确认订阅</button>" in page.text
    assert shop.status("guarded@example.org") == PENDING
    # A person pressing that button confirms.
    with shop.client() as browser:
        button_page = browser.get(link, headers={"User-Agent": "python-requests/2.32"})
        answer = browser.post(link, data={"form_token": form_token(button_page.text)})
    assert answer.status_code == 200
    assert shop.status("guarded@example.org") == ACTIVE


def test_a_tampered_confirmation_link_is_refused(shop: Site):
    subscribe(shop, "careful@example.org")
    link = confirm_link(wait_for_confirmation(shop, "careful@example.org"))
    forged = link[:-5] + ("AAAAA" if not link.endswith("AAAAA") else "BBBBB")
    with shop.client() as browser:
        assert browser.get(forged).status_code == 404
    assert shop.status("careful@example.org") == PENDING


@pytest.mark.parametrize("address", ["not-an-address", "two@@example.org", "", "x@localhost"])
def test_an_invalid_address_gets_the_form_back_and_nothing_is_stored(shop: Site, address: str):
    answer = subscribe(shop, address)
    assert answer.status_code == 400
    assert 'role="alert"' in answer.text and 'aria-invalid="true"' in answer.text
    with shop.world.store.read() as conn:
        assert conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email == address)).first() is None


def test_a_private_list_and_a_list_that_does_not_exist_get_one_and_the_same_answer(shop: Site):
    store = shop.world.store
    add_subscriber(store, "insider@example.net", list_slug="insiders")  # a list the editor made: private
    answers = {slug: subscribe(shop, f"prober.{slug}@example.org", list=slug) for slug in ("insiders", "nope")}
    assert {answer.status_code for answer in answers.values()} == {404}
    assert answers["insiders"].text == answers["nope"].text
    assert "没有可以公开订阅的这个列表" in answers["nope"].text
    with shop.client() as browser:
        forms = [browser.get("/subscribe", params={"list": slug}) for slug in ("insiders", "nope")]
    assert forms[0].status_code == forms[1].status_code == 404 and forms[0].text == forms[1].text
    no_new_mail_after_the_requests_finished(shop, "prober.insiders@example.org", 0)
    with store.read() as conn:
        assert conn.execute(sa.select(lists.c.id).where(lists.c.slug == "nope")).first() is None
        probers = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email.like("prober.%"))).all()
    assert probers == []


def test_a_list_made_public_can_be_joined_and_its_form_shows_its_name(shop: Site):
    set_list(shop.world.store, shop.world.settings, "weekly", name="每周精选", description="每周五一封", public=True)
    with shop.client() as browser:
        form = browser.get("/subscribe", params={"list": "weekly"})
    assert form.status_code == 200
    assert "订阅「每周精选」" in form.text and "每周五一封" in form.text
    assert 'name="list" value="weekly"' in form.text
    assert subscribe(shop, "weekly.reader@example.org", list="weekly").status_code == 200
    link = confirm_link(wait_for_confirmation(shop, "weekly.reader@example.org"))
    with shop.client() as browser:
        assert browser.get(link).status_code == 200
    assert shop.status("weekly.reader@example.org", "weekly") == ACTIVE
    assert shop.status("weekly.reader@example.org", "default") is None


def test_a_list_the_configuration_makes_public_can_be_joined_before_it_exists(shop: Site):
    settings = shop.context.settings
    shop.context.settings = replace(settings, lists={"monthly": ListSettings(name="月刊", public=True)})
    try:
        assert subscribe(shop, "monthly.reader@example.org", list="monthly").status_code == 200
        link = confirm_link(wait_for_confirmation(shop, "monthly.reader@example.org"))
        with shop.client() as browser:
            assert browser.get(link).status_code == 200
        assert shop.status("monthly.reader@example.org", "monthly") == ACTIVE
        # ... and the configuration can close the default list too.
        shop.context.settings = replace(settings, lists={"default": ListSettings(public=False)})
        assert subscribe(shop, "closed@example.org").status_code == 404
    finally:
        shop.context.settings = settings


def test_a_cross_site_post_is_refused(shop: Site):
    with shop.client() as browser:
        answer = browser.post("/subscribe", data={"email": "victim@example.org", "list": "default"})
        forged = browser.post(
            "/subscribe",
            data={"email": "victim@example.org", "list": "default", "form_token": "y" * 43},
            headers={"Origin": "https://attacker.example"},
        )
    assert answer.status_code == forged.status_code == 403
    with shop.world.store.read() as conn:
        assert (
            conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email == "victim@example.org")).first() is None
        )


def test_too_many_posts_from_one_address_get_429(shop: Site):
    limit = shop.world.settings.web.subscribe_rate_per_minute
    answers = [subscribe(shop, f"burst{n}@example.org", client_ip="203.0.113.9") for n in range(limit + 2)]
    assert [a.status_code for a in answers[:limit]] == [200] * limit
    refused = answers[limit]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert "请求太频繁" in refused.text
    with shop.world.store.read() as conn:
        assert (
            conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email == f"burst{limit}@example.org")).first()
            is None
        )
    # Another client is not affected.
    assert subscribe(shop, "calm@example.org", client_ip="203.0.113.10").status_code == 200


def test_an_oversized_form_is_refused(shop: Site):
    answer = subscribe(shop, "big@example.org", name="x" * 20_000)
    assert answer.status_code == 413


def test_the_form_never_brings_back_an_erased_address_and_answers_as_for_anyone(shop: Site):
    store = shop.world.store
    digests = address_digests(shop.world.settings)
    add_subscriber(store, "erased@example.org", digests=digests)
    erase_subscriber(store, digests, email="erased@example.org", source="cli")
    erased = subscribe(shop, "erased@example.org", name="Back Again")
    stranger = subscribe(shop, "someone.new@example.org")
    assert erased.status_code == stranger.status_code == 200 and erased.text == stranger.text
    wait_for_confirmation(shop, "someone.new@example.org")
    no_new_mail_after_the_requests_finished(shop, "erased@example.org", 0)
    with store.read() as conn:
        assert (
            conn.execute(sa.select(subscribers.c.id).where(subscribers.c.email == "erased@example.org")).first() is None
        )
