"""Applying SES events to the store (newsletter.feedback.apply), on SQLite and PostgreSQL.

Records are the AWS documentation's examples (tests/fixtures/ses) pointed at rows of a
crafted ledger; what is asserted is what the database holds afterwards.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from crafted_ledger import SEND_START, CraftedLedger
from ses_records import ses_record

from newsletter.feedback.apply import Applied, apply_feedback_event
from newsletter.feedback.suppression import SuppressionPolicy
from newsletter.store import schema
from newsletter.transports.ses.events import parse_ses_event

POLICY = SuppressionPolicy(transient_bounce_limit=3, transient_bounce_window=timedelta(days=30))
LINKS = ("https://news.example.com/a", "https://devices.example.org/b")


@pytest.fixture
def crafted(store) -> CraftedLedger:
    return CraftedLedger(store)


@pytest.fixture
def sent(crafted: CraftedLedger):
    """One issue sent to reader@example.org, SES message id "ses-1"."""
    issue_id = crafted.issue(link_urls=LINKS)
    subscriber_id = crafted.subscriber("reader@example.org")
    delivery_id = crafted.delivery(
        issue_id, subscriber_id, provider_id="ses-1", message_id=f"<{issue_id}.{subscriber_id}.abcdef@example.com>"
    )
    return issue_id, subscriber_id, delivery_id


def apply(store, record, policy: SuppressionPolicy = POLICY):
    event = parse_ses_event(record)
    with store.begin() as conn:
        return apply_feedback_event(conn, event, policy)


def test_a_permanent_bounce_marks_the_subscriber_bounced_and_is_recorded_on_the_ledger_row(store, crafted, sent):
    issue_id, subscriber_id, delivery_id = sent
    result = apply(store, ses_record("Bounce", message_id="ses-1", recipient="reader@example.org"))

    assert result.applied is Applied.RECORDED
    assert result.suppressed == ((subscriber_id, schema.BOUNCED),)
    assert crafted.status_of(subscriber_id) == schema.BOUNCED
    [event] = crafted.events()
    assert (event["kind"], event["issue_id"], event["subscriber_id"], event["delivery_id"]) == (
        schema.BOUNCE,
        issue_id,
        subscriber_id,
        delivery_id,
    )
    assert event["detail"]["permanent"] is True and event["detail"]["soft"] is False
    assert event["detail"]["bounce_type"] == "Permanent"
    assert event["occurred_at"].isoformat() == "2017-08-05T00:41:02.669000+00:00"


def test_a_complaint_marks_the_subscriber_complained(store, crafted, sent):
    _, subscriber_id, _ = sent
    apply(store, ses_record("Complaint", message_id="ses-1", recipient="reader@example.org"))
    assert crafted.status_of(subscriber_id) == schema.COMPLAINED
    assert [e["kind"] for e in crafted.events()] == [schema.COMPLAINT]


def test_a_not_spam_feedback_report_is_recorded_but_suppresses_nobody(store, crafted, sent):
    _, subscriber_id, _ = sent
    apply(
        store,
        ses_record("Complaint", message_id="ses-1", recipient="reader@example.org", complaintFeedbackType="not-spam"),
    )
    assert crafted.status_of(subscriber_id) == schema.ACTIVE
    assert [e["kind"] for e in crafted.events()] == [schema.COMPLAINT]


def test_the_same_event_applied_twice_is_recorded_once_and_changes_nothing_the_second_time(store, crafted, sent):
    record = ses_record("Bounce", message_id="ses-1", recipient="reader@example.org")
    first, second = apply(store, record), apply(store, record)
    assert (first.applied, second.applied) == (Applied.RECORDED, Applied.DUPLICATE)
    assert second.suppressed == ()
    assert len(crafted.events()) == 1


def soft_bounce(at, *, message_id: str = "ses-1", subtype: str = "MailboxFull"):
    return ses_record(
        "Bounce",
        message_id=message_id,
        recipient="reader@example.org",
        at=at,
        bounceType="Transient",
        bounceSubType=subtype,
    )


def test_three_soft_bounces_within_thirty_days_suppress_and_two_do_not(store, crafted, sent):
    _, subscriber_id, _ = sent
    apply(store, soft_bounce(SEND_START))
    apply(store, soft_bounce(SEND_START + timedelta(days=10)))
    assert crafted.status_of(subscriber_id) == schema.ACTIVE
    third = apply(store, soft_bounce(SEND_START + timedelta(days=29)))
    assert third.suppressed == ((subscriber_id, schema.BOUNCED),)
    assert crafted.status_of(subscriber_id) == schema.BOUNCED


def test_three_soft_bounces_spread_over_more_than_thirty_days_do_not_suppress(store, crafted, sent):
    _, subscriber_id, _ = sent
    for days in (0, 20, 40):
        apply(store, soft_bounce(SEND_START + timedelta(days=days)))
    assert crafted.status_of(subscriber_id) == schema.ACTIVE
    assert len(crafted.events(kind=schema.BOUNCE)) == 3


def test_soft_bounces_arriving_out_of_order_suppress_as_if_they_came_in_order(store, crafted, sent):
    _, subscriber_id, _ = sent
    # The latest first (an SQS backlog read late): the last to arrive is the earliest, and
    # the window that holds all three ends at a bounce that arrived before it.
    for days in (20, 10, 0):
        apply(store, soft_bounce(SEND_START + timedelta(days=days)))
    assert crafted.status_of(subscriber_id) == schema.BOUNCED


def test_content_bounces_do_not_count_towards_soft_bounce_suppression(store, crafted, sent):
    _, subscriber_id, _ = sent
    for days in (0, 1, 2):
        apply(store, soft_bounce(SEND_START + timedelta(days=days), subtype="MessageTooLarge"))
    assert crafted.status_of(subscriber_id) == schema.ACTIVE


def test_every_other_kind_is_recorded_on_the_row_and_leaves_the_subscriber_active(store, crafted, sent):
    issue_id, subscriber_id, delivery_id = sent
    kinds = {
        "Send": schema.SES_SEND,
        "Delivery": schema.DELIVERY,
        "Reject": schema.REJECT,
        "DeliveryDelay": schema.DELIVERY_DELAY,
        "Open": schema.SES_OPEN,
        "Click": schema.SES_CLICK,
    }
    for event_type in kinds:
        record = ses_record(event_type, message_id="ses-1", recipient="reader@example.org")
        assert apply(store, record).applied is Applied.RECORDED, event_type
    recorded = crafted.events()
    assert [event["kind"] for event in recorded] == list(kinds.values())
    assert {(e["issue_id"], e["subscriber_id"], e["delivery_id"]) for e in recorded} == {
        (issue_id, subscriber_id, delivery_id)
    }
    assert crafted.status_of(subscriber_id) == schema.ACTIVE


def test_an_ses_click_is_recorded_with_the_index_of_its_link(store, crafted, sent):
    apply(store, ses_record("Click", message_id="ses-1", recipient="reader@example.org", link=LINKS[1]))
    [event] = crafted.events()
    assert (event["kind"], event["link_idx"]) == (schema.SES_CLICK, 1)
    assert event["user_agent"].startswith("Mozilla/5.0 (Windows NT 10.0")


def test_an_event_that_overtakes_the_senders_bookkeeping_is_found_by_our_message_id(store, crafted):
    # The row is `sending` with its Message-ID, but the SES id is not recorded yet.
    issue_id = crafted.issue()
    subscriber_id = crafted.subscriber("early@example.org")
    header = f"<{issue_id}.{subscriber_id}.0123456789abcdef@example.com>"
    delivery_id = crafted.delivery(issue_id, subscriber_id, status=schema.SENDING, message_id=header)
    result = apply(
        store,
        ses_record(
            "Delivery", message_id="ses-not-yet-recorded", recipient="early@example.org", message_id_header=header
        ),
    )
    assert result.applied is Applied.RECORDED
    assert crafted.events()[0]["delivery_id"] == delivery_id


def test_a_message_id_header_naming_a_row_with_another_message_id_is_not_trusted(store, crafted, sent):
    issue_id, subscriber_id, _ = sent
    forged = f"<{issue_id}.{subscriber_id}.ffffffffffffffff@example.com>"
    record = ses_record("Delivery", message_id="ses-other", recipient="reader@example.org", message_id_header=forged)
    result = apply(store, record)
    assert result.applied is Applied.IGNORED
    assert crafted.events() == []


def test_a_bounce_of_mail_outside_the_ledger_still_suppresses_the_address(store, crafted):
    # A double opt-in confirmation or a --test send: no ledger row, but our subscriber.
    subscriber_id = crafted.subscriber("Reader@Example.org")
    result = apply(store, ses_record("Bounce", message_id="ses-confirmation", recipient="reader@example.org"))
    assert result.applied is Applied.RECORDED
    assert crafted.status_of(subscriber_id) == schema.BOUNCED
    [event] = crafted.events()
    assert (event["issue_id"], event["delivery_id"], event["subscriber_id"]) == (None, None, subscriber_id)


def test_other_events_about_mail_outside_the_ledger_are_ignored(store, crafted):
    crafted.subscriber("reader@example.org")
    result = apply(store, ses_record("Delivery", message_id="ses-unknown", recipient="reader@example.org"))
    assert result.applied is Applied.IGNORED and "no ledger row" in result.reason
    assert crafted.events() == []


def test_a_bounce_for_an_address_we_do_not_know_is_ignored(store, crafted):
    result = apply(store, ses_record("Bounce", message_id="ses-unknown", recipient="stranger@example.net"))
    assert result.applied is Applied.IGNORED
    assert crafted.events() == []


def test_an_ses_list_management_unsubscribe_unsubscribes(store, crafted, sent):
    issue_id, subscriber_id, _ = sent
    apply(store, ses_record("Subscription", message_id="ses-1", recipient="reader@example.org"))
    assert crafted.status_of(subscriber_id) == schema.UNSUBSCRIBED
    [event] = crafted.events()
    assert (event["kind"], event["issue_id"]) == (schema.UNSUBSCRIBE, issue_id)


def test_an_ses_opt_in_changes_nothing(store, crafted, sent):
    _, subscriber_id, _ = sent
    opt_in = {
        "unsubscribeAll": False,
        "topicSubscriptionStatus": [{"topicName": "News", "subscriptionStatus": "OptIn"}],
    }
    apply(
        store,
        ses_record("Subscription", message_id="ses-1", recipient="reader@example.org", newTopicPreferences=opt_in),
    )
    assert crafted.status_of(subscriber_id) == schema.ACTIVE


def test_a_suppression_only_ever_gets_stronger(store, crafted):
    issue_id = crafted.issue()
    left = crafted.subscriber("left@example.org", status=schema.UNSUBSCRIBED)
    angry = crafted.subscriber("angry@example.org", status=schema.COMPLAINED)
    crafted.delivery(issue_id, left, provider_id="ses-left")
    crafted.delivery(issue_id, angry, provider_id="ses-angry")
    apply(store, ses_record("Bounce", message_id="ses-left", recipient="left@example.org"))
    apply(store, ses_record("Bounce", message_id="ses-angry", recipient="angry@example.org"))
    # Unsubscribed then bounced: bounced, so no "resubscribe" can revive a dead address.
    assert crafted.status_of(left) == schema.BOUNCED
    # Complained then bounced: still complained.
    assert crafted.status_of(angry) == schema.COMPLAINED


def test_ses_opens_and_clicks_are_judged_people_or_machines_like_our_own(store, crafted, sent):
    # Apple Mail Privacy Protection fetches images with the bare "Mozilla/5.0" agent; the
    # documentation's click comes from a desktop Chrome, well after sending.
    apply(store, ses_record("Open", message_id="ses-1", recipient="reader@example.org", userAgent="Mozilla/5.0"))
    apply(store, ses_record("Click", message_id="ses-1", recipient="reader@example.org", link=LINKS[0]))
    opened, clicked = crafted.events()
    assert (opened["kind"], opened["machine"]) == (schema.SES_OPEN, True)
    assert "Apple" in opened["detail"]["machine"]
    assert (clicked["kind"], clicked["machine"]) == (schema.SES_CLICK, False)


# ---- settling rows a crash left uncertain (issue 9, item 6) ----


@pytest.fixture
def in_flight(crafted: CraftedLedger):
    """A row left `sending` by a crash: claimed, Message-ID written, no SES id recorded."""
    issue_id = crafted.issue(link_urls=LINKS)
    subscriber_id = crafted.subscriber("reader@example.org")
    message_id = f"<{issue_id}.{subscriber_id}.abcdef@example.com>"
    delivery_id = crafted.delivery(issue_id, subscriber_id, status=schema.SENDING, message_id=message_id, sent_at=None)
    return issue_id, delivery_id, message_id


def row(store, delivery_id: int) -> dict:
    import sqlalchemy as sa

    with store.read() as conn:
        query = sa.select(schema.deliveries).where(schema.deliveries.c.id == delivery_id)
        return dict(conn.execute(query).mappings().one())


@pytest.mark.parametrize("event_type", ["Send", "Delivery"])
def test_a_send_or_delivery_event_settles_an_uncertain_row_as_sent(store, in_flight, event_type):
    _, delivery_id, message_id = in_flight
    record = ses_record(
        event_type, message_id="ses-77", recipient="reader@example.org", at=SEND_START, message_id_header=message_id
    )

    result = apply(store, record)

    assert result.settled == schema.SENT and "the uncertain ledger row is now sent" in result.describe()
    settled = row(store, delivery_id)
    assert (settled["status"], settled["provider_message_id"]) == (schema.SENT, "ses-77")
    assert settled["sent_at"] == SEND_START


@pytest.mark.parametrize(
    ("event_type", "changes", "error"),
    [
        ("Reject", {}, "rejected by SES: Bad content"),
        ("Bounce", {}, "Permanent bounce"),
        ("Bounce", {"bounceType": "Transient", "bounceSubType": "MailboxFull"}, "Transient bounce"),
    ],
)
def test_a_reject_or_bounce_settles_an_uncertain_row_as_failed_permanently(
    store, in_flight, event_type, changes, error
):
    _, delivery_id, message_id = in_flight
    record = ses_record(
        event_type, message_id="ses-77", recipient="reader@example.org", message_id_header=message_id, **changes
    )

    result = apply(store, record)

    assert result.settled == schema.FAILED
    settled = row(store, delivery_id)
    assert (settled["status"], settled["failure"]) == (schema.FAILED, schema.PERMANENT)
    assert settled["error"].startswith(error)


def test_an_event_never_changes_a_row_the_sender_already_recorded(store, crafted, sent):
    _, _, delivery_id = sent
    before = row(store, delivery_id)
    result = apply(store, ses_record("Bounce", message_id="ses-1", recipient="reader@example.org"))
    assert result.settled is None
    assert row(store, delivery_id) == before


def test_opens_and_delays_leave_an_uncertain_row_uncertain(store, in_flight):
    _, delivery_id, message_id = in_flight
    for event_type in ("DeliveryDelay", "Open"):
        apply(
            store,
            ses_record(event_type, message_id="ses-77", recipient="reader@example.org", message_id_header=message_id),
        )
    assert row(store, delivery_id)["status"] == schema.SENDING
