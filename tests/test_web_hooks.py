"""`POST /hooks/ses` over real HTTP: the serve app under uvicorn, SNS messages signed exactly
as SNS signs them (both signature versions) with a self-made certificate served from
127.0.0.1, which only the test's verifier is told to trust.

The ledger comes from a real send through the outbox; the SES records are the AWS
documentation's, aimed at the SES message ids that send recorded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser

import httpx
import pytest
import sqlalchemy as sa
from http_server import run_asgi_in_thread
from ses_records import CERT_PATH, TOPIC, fixture, iso, ses_record, sns_notification
from sns_signing import (
    LOCAL_SNS_ORIGIN_PATTERN,
    LocalHttpServer,
    make_signing_identity,
    sign_sns_message,
)

from newsletter.config import Settings, replace
from newsletter.sending.campaign import run_send
from newsletter.sending.plan import SendOptions, plan_send
from newsletter.store import schema
from newsletter.transports.ses.sns import SNS_ORIGIN_PATTERN, SnsVerifier
from newsletter.web.app import create_app
from newsletter.web.context import WebContext

pytest.register_assert_rewrite("tests.send_world")
from tests.send_world import World

pytest_plugins = ["http_server"]


class Hook:
    """The app serving one World's database, and a way to post SNS messages to it."""

    def __init__(
        self, world: World, base_url: str, cert_server: LocalHttpServer, identity, client: httpx.Client
    ) -> None:
        self.world = world
        self.url = base_url + "/hooks/ses"
        self.cert_server = cert_server
        self.identity = identity
        self.client = client

    def post(self, body: dict | str | bytes) -> httpx.Response:
        content = body if isinstance(body, (str, bytes)) else json.dumps(body)
        kind = body.get("Type", "Notification") if isinstance(body, dict) else "Notification"
        # What SNS sends: a JSON body labelled text/plain, and the type in a header.
        headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": kind}
        return self.client.post(self.url, content=content, headers=headers)

    def notify(self, record: dict, *, version: str = "1", **options) -> httpx.Response:
        options.setdefault("cert_url", self.cert_server.url(CERT_PATH))
        return self.post(sns_notification(record, key=self.identity.private_key, version=version, **options))

    # ---- reading the database ----

    def status(self, subscriber_id: int) -> str:
        with self.world.store.read() as conn:
            query = sa.select(schema.subscribers.c.status).where(schema.subscribers.c.id == subscriber_id)
            return conn.execute(query).scalar_one()

    def events(self) -> list[dict]:
        with self.world.store.read() as conn:
            return [dict(row) for row in conn.execute(sa.select(schema.events).order_by(schema.events.c.id)).mappings()]


def sent_world(root, database_url: str) -> World:
    """Three readers and the example issue sent to them through the outbox."""
    world = World(root, database_url)
    world.add_subscribers(3)
    world.send()
    return world


@pytest.fixture
def readers(tmp_path, database_url):
    """The sent world on each database: for what the store does with an event."""
    world = sent_world(tmp_path, database_url)
    try:
        yield world, sorted(world.emails())
    finally:
        world.close()


@pytest.fixture(scope="module")
def http_client():
    with httpx.Client(timeout=10) as client:
        yield client


def serve_hook(world: World, base_url_of, cert_server, identity, client) -> Hook:
    settings = replace(world.settings, events={"topic_arns": (TOPIC,)})
    verifier = SnsVerifier([TOPIC], sns_origin_pattern=LOCAL_SNS_ORIGIN_PATTERN)
    app = create_app(WebContext.create(settings, world.store, sns_verifier=verifier))
    return Hook(world, base_url_of(app), cert_server, identity, client)


@pytest.fixture
def hook(readers, serve_asgi, sns_certificate_server, sns_signing_identity, http_client) -> Hook:
    return serve_hook(readers[0], serve_asgi, sns_certificate_server, sns_signing_identity, http_client)


@pytest.fixture(scope="module")
def shared_hooks(tmp_path_factory, sns_signing_identity, http_client):
    """For tests after which the database must be as it was (refusals, messages that carry
    no event of ours), one server each on SQLite, shared by the module to keep it quick:
    `sent` over three readers and a sent issue, `bare` over an empty database.  Each test
    asserts that nothing changed, so sharing cannot hide a change."""
    with contextlib.ExitStack() as stack:
        cert_server = stack.enter_context(LocalHttpServer())
        cert_server.serve(CERT_PATH, sns_signing_identity.certificate_pem)
        hooks = {}
        for name in ("sent", "bare"):
            root = tmp_path_factory.mktemp(name)
            url = f"sqlite:///{root / 'newsletter.db'}"
            world = sent_world(root, url) if name == "sent" else World(root, url)
            stack.callback(world.close)
            serve = lambda app: stack.enter_context(run_asgi_in_thread(app))
            hooks[name] = serve_hook(world, serve, cert_server, sns_signing_identity, http_client)
        yield hooks


@pytest.fixture
def sqlite_hook(shared_hooks) -> Hook:
    return shared_hooks["sent"]


@pytest.fixture
def bare_hook(shared_hooks) -> Hook:
    return shared_hooks["bare"]


def ses_id(world: World, subscriber_id: int) -> str:
    """The provider message id the send recorded for this subscriber (the outbox's key)."""
    provider_id = world.deliveries()[subscriber_id].provider_message_id
    assert provider_id
    return provider_id


def address(world: World, subscriber_id: int) -> str:
    return world.emails()[subscriber_id]


def test_a_signed_permanent_bounce_marks_the_subscriber_bounced_and_a_later_send_skips_them(hook, readers):
    world, (bounced, kept, _) = readers
    record = ses_record("Bounce", message_id=ses_id(world, bounced), recipient=address(world, bounced))

    answer = hook.notify(record, version="1")

    assert answer.status_code == 200
    assert hook.status(bounced) == schema.BOUNCED
    assert hook.status(kept) == schema.ACTIVE
    [event] = hook.events()
    assert (event["kind"], event["subscriber_id"]) == (schema.BOUNCE, bounced)

    # The next issue goes to everyone but the bounced address.
    next_issue = world.root / "issues" / "2026-12-07.md"
    shutil.copyfile(world.issue_file, next_issue)
    before = set(world.outbox_files())
    run_send(plan_send(world.settings, world.store, next_issue, SendOptions()))
    new_recipients = sorted(addressee(path) for path in world.outbox_files() if path not in before)
    assert new_recipients == sorted(address(world, sid) for sid in readers[1] if sid != bounced)


def addressee(path) -> str:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes(), headersonly=True)
    return message["To"].addresses[0].addr_spec


def test_a_complaint_signed_with_signature_version_2_marks_the_subscriber_complained(hook, readers):
    world, (angry, _, _) = readers
    answer = hook.notify(
        ses_record("Complaint", message_id=ses_id(world, angry), recipient=address(world, angry)), version="2"
    )
    assert answer.status_code == 200
    assert hook.status(angry) == schema.COMPLAINED


def test_the_same_notification_delivered_twice_counts_once(hook, readers):
    world, (reader, _, _) = readers
    body = sns_notification(
        ses_record("Delivery", message_id=ses_id(world, reader), recipient=address(world, reader)),
        cert_url=hook.cert_server.url(CERT_PATH),
        key=hook.identity.private_key,
    )
    assert [hook.post(body).status_code for _ in range(2)] == [200, 200]
    # SNS's retry of the same event arrives as a new SNS message with a new MessageId.
    retry = sns_notification(
        json.loads(body["Message"]), cert_url=body["SigningCertURL"], key=hook.identity.private_key
    )
    assert hook.post(retry).status_code == 200
    assert [event["kind"] for event in hook.events()] == [schema.DELIVERY]


def test_three_soft_bounces_within_thirty_days_suppress(hook, readers):
    world, (reader, _, _) = readers
    start = datetime(2026, 11, 30, 8, tzinfo=UTC)
    statuses = []
    for days in (0, 12, 25):
        record = ses_record(
            "Bounce",
            message_id=ses_id(world, reader),
            recipient=address(world, reader),
            at=start + timedelta(days=days),
            bounceType="Transient",
            bounceSubType="MailboxFull",
        )
        assert hook.notify(record).status_code == 200
        statuses.append(hook.status(reader))
    assert statuses == [schema.ACTIVE, schema.ACTIVE, schema.BOUNCED]


def test_a_forged_signature_is_refused_and_changes_nothing(sqlite_hook):
    hook = sqlite_hook
    world, (reader, _, _) = hook.world, sorted(hook.world.emails())
    impostor = make_signing_identity()
    record = ses_record("Bounce", message_id=ses_id(world, reader), recipient=address(world, reader))
    body = sns_notification(record, cert_url=hook.cert_server.url(CERT_PATH), key=impostor.private_key)
    answer = hook.post(body)
    assert answer.status_code == 403
    assert hook.status(reader) == schema.ACTIVE and hook.events() == []


def test_a_message_changed_after_signing_is_refused(sqlite_hook):
    hook = sqlite_hook
    world, (reader, other, _) = hook.world, sorted(hook.world.emails())
    record = ses_record("Bounce", message_id=ses_id(world, reader), recipient=address(world, reader))
    body = sns_notification(record, cert_url=hook.cert_server.url(CERT_PATH), key=hook.identity.private_key)
    body["Message"] = body["Message"].replace(ses_id(world, reader), ses_id(world, other))
    assert hook.post(body).status_code == 403
    assert hook.status(other) == schema.ACTIVE


def test_a_topic_outside_the_allow_list_is_refused(sqlite_hook):
    hook = sqlite_hook
    world, (reader, _, _) = hook.world, sorted(hook.world.emails())
    record = ses_record("Bounce", message_id=ses_id(world, reader), recipient=address(world, reader))
    answer = hook.notify(record, topic="arn:aws:sns:us-east-1:999999999999:someone-elses")
    assert answer.status_code == 403
    assert hook.status(reader) == schema.ACTIVE


def test_a_certificate_on_another_host_is_refused_without_fetching_it(sqlite_hook):
    hook = sqlite_hook
    world, (reader, _, _) = hook.world, sorted(hook.world.emails())
    record = ses_record("Bounce", message_id=ses_id(world, reader), recipient=address(world, reader))
    # The same server, named differently: the verifier trusts only http://127.0.0.1:PORT.
    elsewhere = hook.cert_server.url(CERT_PATH).replace("127.0.0.1", "localhost")
    fetched = len(hook.cert_server.requests)
    answer = hook.notify(record, cert_url=elsewhere)
    assert answer.status_code == 403
    assert len(hook.cert_server.requests) == fetched
    assert hook.status(reader) == schema.ACTIVE


def test_a_body_that_is_not_an_sns_message_is_refused(bare_hook):
    # Not JSON, or not an object: malformed, a bad request.  JSON without what SNS signs:
    # not verifiable.
    for body in ("", "not json", "[]"):
        assert bare_hook.post(body).status_code == 400, body
    for body in ('{"Type": "Notification"}', '{"Type": "Other"}'):
        assert bare_hook.post(body).status_code == 403, body


def test_a_subscription_confirmation_visits_its_subscribe_url(bare_hook):
    hook = bare_hook
    subscribe_path = "/confirm-subscription"
    hook.cert_server.serve(subscribe_path, b"<ConfirmSubscriptionResponse/>")
    body = fixture("sns_subscription_confirmation.json")
    body.update(
        TopicArn=TOPIC,
        Timestamp=iso(datetime.now(UTC)),
        SigningCertURL=hook.cert_server.url(CERT_PATH),
        SubscribeURL=hook.cert_server.url(subscribe_path) + "?Action=ConfirmSubscription&Token=abc",
    )
    answer = hook.post(sign_sns_message(body, hook.identity.private_key, "2"))
    assert answer.status_code == 200
    assert hook.cert_server.requests_for(subscribe_path) == [f"{subscribe_path}?Action=ConfirmSubscription&Token=abc"]


def test_an_unsubscribe_confirmation_is_acknowledged_without_visiting_anything(bare_hook):
    hook = bare_hook
    body = fixture("sns_unsubscribe_confirmation.json")
    body.update(
        TopicArn=TOPIC,
        Timestamp=iso(datetime.now(UTC)),
        SigningCertURL=hook.cert_server.url(CERT_PATH),
        SubscribeURL=hook.cert_server.url("/resubscribe"),
    )
    assert hook.post(sign_sns_message(body, hook.identity.private_key)).status_code == 200
    assert hook.cert_server.requests_for("/resubscribe") == []


def test_an_authentic_message_that_is_not_an_ses_event_is_a_client_error_not_a_retry(bare_hook):
    hook = bare_hook
    answer = hook.notify({"eventType": "SomethingNew", "mail": {"messageId": "x"}})
    assert answer.status_code == 400


def test_ses_setup_notice_is_acknowledged(bare_hook):
    hook = bare_hook
    assert hook.notify("Successfully validated SNS topic for Amazon SES event publishing.").status_code == 200
    assert hook.events() == []


def test_an_event_about_mail_outside_the_ledger_is_acknowledged_and_ignored(bare_hook):
    hook = bare_hook
    record = ses_record("Delivery", message_id="not-one-of-ours", recipient="stranger@example.net")
    assert hook.notify(record).status_code == 200
    assert hook.events() == []


def test_a_database_failure_answers_503_so_that_sns_retries(
    tmp_path, serve_asgi, sns_certificate_server, sns_signing_identity, http_client
):
    from newsletter.store import Store
    from newsletter.store.database import create_engine

    # A database that cannot be opened: SQLite in a directory that does not exist.
    broken = Store(create_engine(f"sqlite:///{tmp_path / 'missing' / 'newsletter.db'}"))
    settings = replace(Settings(), newsletter={"secret": "hook-tests-" + "x" * 32}, events={"topic_arns": (TOPIC,)})
    verifier = SnsVerifier([TOPIC], sns_origin_pattern=LOCAL_SNS_ORIGIN_PATTERN)
    base_url = serve_asgi(create_app(WebContext.create(settings, broken, sns_verifier=verifier)))
    hook = Hook(None, base_url, sns_certificate_server, sns_signing_identity, http_client)
    answer = hook.notify(ses_record("Delivery", message_id="ses-1", recipient="reader@example.org"))
    assert answer.status_code == 503


# ---- the SNS origin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("https://sns.us-east-1.amazonaws.com", True),
        ("https://sns.eu-central-2.amazonaws.com", True),
        ("https://sns.us-gov-west-1.amazonaws.com", True),
        ("https://sns.cn-north-1.amazonaws.com.cn", True),
        ("https://sns.s3.amazonaws.com", False),
        ("https://sns.my-bucket.amazonaws.com", False),
        ("https://sns.us-east-1.amazonaws.com.cn", False),
        ("https://sns.cn-north-1.amazonaws.com", False),
        ("https://sns.amazonaws.com", False),
        ("http://sns.us-east-1.amazonaws.com", False),
    ],
)
def test_the_sns_origin_is_sns_in_a_region(origin: str, accepted: bool):
    assert bool(re.fullmatch(SNS_ORIGIN_PATTERN, origin)) is accepted


def test_a_certificate_on_an_s3_bucket_host_is_refused_before_any_fetch(
    readers, serve_asgi, sns_certificate_server, sns_signing_identity, http_client, caplog
):
    """sns.s3.amazonaws.com is an S3 bucket's name, which anyone can own; the production
    verifier (no test origin) must refuse it by its name, not try it."""
    world, (reader, _, _) = readers
    settings = replace(world.settings, events={"topic_arns": (TOPIC,)})
    app = create_app(WebContext.create(settings, world.store, sns_verifier=SnsVerifier([TOPIC])))
    hook = Hook(world, serve_asgi(app), sns_certificate_server, sns_signing_identity, http_client)
    record = ses_record("Bounce", message_id=ses_id(world, reader), recipient=address(world, reader))
    with caplog.at_level(logging.WARNING, logger="newsletter.web.hooks"):
        answer = hook.notify(record, cert_url="https://sns.s3.amazonaws.com/SimpleNotificationService-x.pem")
    assert answer.status_code == 403
    assert "is not on an Amazon SNS https origin" in caplog.text, caplog.text
    assert hook.status(reader) == schema.ACTIVE


def test_a_message_dated_in_the_future_is_refused(sqlite_hook):
    hook = sqlite_hook
    world, (reader, _, _) = hook.world, sorted(hook.world.emails())
    record = ses_record("Bounce", message_id=ses_id(world, reader), recipient=address(world, reader))
    answer = hook.notify(record, timestamp=datetime.now(UTC) + timedelta(minutes=10))
    assert answer.status_code == 403
    assert hook.status(reader) == schema.ACTIVE and hook.events() == []
    # A few seconds of clock skew are fine.
    delivery = ses_record("Delivery", message_id=ses_id(world, reader), recipient=address(world, reader))
    assert hook.notify(delivery, timestamp=datetime.now(UTC) + timedelta(seconds=30)).status_code == 200


def test_junk_for_an_unknown_topic_fetches_nothing(sqlite_hook):
    hook = sqlite_hook
    path = f"/unknown-topic-{uuid.uuid4()}.pem"
    for _ in range(3):
        answer = hook.notify(
            ses_record("Delivery", message_id="junk", recipient="r@example.org"),
            topic="arn:aws:sns:us-east-1:999999999999:x",
            cert_url=hook.cert_server.url(path),
        )
        assert answer.status_code == 403
    assert hook.cert_server.requests_for(path) == []


def test_a_certificate_that_failed_to_fetch_is_not_fetched_again_for_every_message(sqlite_hook):
    hook = sqlite_hook
    path = f"/missing-{uuid.uuid4()}.pem"
    for _ in range(5):
        assert (
            hook.notify(
                ses_record("Delivery", message_id="junk", recipient="r@example.org"),
                cert_url=hook.cert_server.url(path),
            ).status_code
            == 403
        )
    assert len(hook.cert_server.requests_for(path)) == 1


def test_a_good_certificate_is_fetched_once(sqlite_hook):
    hook = sqlite_hook
    path = f"/good-{uuid.uuid4()}.pem"
    hook.cert_server.serve(path, hook.identity.certificate_pem)
    for _ in range(3):
        assert (
            hook.notify(
                "Successfully validated SNS topic for Amazon SES event publishing.", cert_url=hook.cert_server.url(path)
            ).status_code
            == 200
        )
    assert len(hook.cert_server.requests_for(path)) == 1


@pytest.mark.parametrize(
    "body", ["[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, '{"Type": ' + "[" * 40 + "]" * 40 + "}"]
)
def test_deeply_nested_json_is_a_bad_request_not_a_server_error(bare_hook, body: str):
    assert bare_hook.post(body).status_code == 400


def test_a_topic_arn_with_line_breaks_cannot_forge_log_lines(sqlite_hook, caplog):
    hook = sqlite_hook
    forged = "arn:aws:sns:us-east-1:999999999999:x\nERROR newsletter.web: forged\r\nline"
    with caplog.at_level(logging.INFO):
        answer = hook.notify(ses_record("Delivery", message_id="junk", recipient="r@example.org"), topic=forged)
    assert answer.status_code == 403
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("newsletter")]
    assert any("forged" in line for line in lines), lines
    assert all("\n" not in line and "\r" not in line for line in lines), lines
