"""SES events settle the rows a crash left uncertain (issue 9, item 6).

A real `newsletter send` through SES (moto behind LocalSes) is SIGKILLed while four messages
SES has taken are still waiting for their answers (and possibly more rows are claimed
behind them): every one of those rows is left `sending`, uncertain.  SES then publishes what it knows of
the messages it took: Send and Delivery events (and a Bounce), signed as SNS signs them and
posted over HTTP to `/hooks/ses` of the app `newsletter serve` runs, under uvicorn.  The
rows those events name are settled; the next `send` reports only the rest as uncertain, and
`--resend-uncertain` resends exactly the rest.

The app runs in this process because its SNS verifier accepts signing certificates only
from https://sns.<region>.amazonaws.com; here it is told to trust the test's certificate
server on 127.0.0.1 instead (as tests/test_web_hooks.py does).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from email import policy
from email.parser import BytesParser

import httpx
import pytest
from ses_records import CERT_PATH, TOPIC, ses_record, sns_notification

from newsletter.config import replace
from newsletter.store import schema
from newsletter.transports.ses.sns import SnsVerifier
from newsletter.web.app import create_app
from newsletter.web.context import WebContext

pytest.register_assert_rewrite("tests.send_world", "tests.transport_servers")
from sns_signing import LOCAL_SNS_ORIGIN_PATTERN

from tests.send_world import SENDER, World
from tests.transport_servers import LocalSes

pytest_plugins = ["tests.transport_servers", "tests.send_world", "http_server"]

READERS = 60
WORKERS = 4
ANSWERED_BEFORE_THE_HOLD = 20


def wait_until(condition, *, process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the send ended (exit {process.returncode}) before the kill point:\n{out}\n{err}")
        assert time.monotonic() < deadline, "timed out waiting for the kill point"
        time.sleep(0.01)


def message_ids_of(requests) -> list[str]:
    parser = BytesParser(policy=policy.default)
    return [str(parser.parsebytes(request.raw, headersonly=True)["Message-ID"]) for request in requests]


def test_send_events_after_a_sigkill_settle_those_rows_and_resend_uncertain_resends_exactly_the_rest(
    world: World, local_ses: LocalSes, serve_asgi, sns_certificate_server, sns_signing_identity
):
    local_ses.verify(SENDER)
    local_ses.set_quota(max_send_rate=500)
    world.use_ses(local_ses, configuration_set="newsletter-events")
    world.configure("events", topic_arns=[TOPIC])
    world.add_subscribers(READERS)
    issue = str(world.issue_file)

    # The send: killed with WORKERS messages taken by SES but unanswered, the rest of the
    # claim window claimed behind them.
    local_ses.hold_answers_after(ANSWERED_BEFORE_THE_HOLD)
    sender = world.start_newsletter("send", issue, "--yes", "--workers", str(WORKERS), env=local_ses.environ)
    try:
        wait_until(lambda: local_ses.held >= WORKERS, process=sender)
        world.kill(sender)
    finally:
        local_ses.release()

    rows = world.deliveries()
    uncertain = {row.message_id: row for row in rows.values() if row.status == schema.SENDING}
    taken = {
        message_id: delivery.message_id
        for delivery in local_ses.received()
        if (message_id := str(delivery.message["Message-ID"])) in uncertain
    }
    assert len(taken) >= WORKERS, (len(uncertain), len(taken))
    # Rows claimed behind the held ones, if the claim came before the kill, are uncertain
    # too: SES never saw them, so no event will ever settle them.

    # What SES publishes for the messages it took: a Send for one, a Delivery for another, a
    # Bounce for a third; nothing yet for the fourth (its events are still on their way).
    settings = replace(world.settings, events={"topic_arns": (TOPIC,)})
    verifier = SnsVerifier([TOPIC], sns_origin_pattern=LOCAL_SNS_ORIGIN_PATTERN)
    base_url = serve_asgi(create_app(WebContext.create(settings, world.store, sns_verifier=verifier)))
    own_ids = sorted(taken)
    plan = dict(zip(own_ids, ["Send", "Delivery", "Bounce"], strict=False))
    with httpx.Client(timeout=10) as client:
        for own_id, event_type in plan.items():
            record = ses_record(
                event_type,
                message_id=taken[own_id],
                recipient=uncertain[own_id].email,
                message_id_header=own_id,
            )
            body = sns_notification(
                record, cert_url=sns_certificate_server.url(CERT_PATH), key=sns_signing_identity.private_key
            )
            answer = client.post(
                base_url + "/hooks/ses",
                content=json.dumps(body),
                headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"},
            )
            assert answer.status_code == 200, answer.text

    after_events = {row.message_id: row for row in world.deliveries().values()}
    settled = {own_id: after_events[own_id] for own_id in plan}
    assert [(row.status, row.failure) for row in settled.values()] == [
        (schema.SENT, None),
        (schema.SENT, None),
        (schema.FAILED, schema.PERMANENT),
    ]
    assert [row.provider_message_id for row in settled.values()][:2] == [taken[own_id] for own_id in own_ids[:2]]
    still_unknown = {own_id: row for own_id, row in uncertain.items() if own_id not in plan}
    assert {own_id for own_id, row in after_events.items() if row.status == schema.SENDING} == set(still_unknown)

    # `issues` and a plain rerun report only the rows still unknown, and resend none of them.
    states = json.loads(world.cli("issues", "--json").stdout)
    assert [state["uncertain"] for state in states] == [len(still_unknown)]
    before_rerun = len(local_ses.requests)
    rerun = world.cli("send", issue, "--yes", "--workers", str(WORKERS))
    assert rerun.returncode == 75, rerun.stdout + rerun.stderr
    assert f"{len(still_unknown)} messages may or may not have gone out" in rerun.stderr
    rerun_sent = Counter(message_ids_of(local_ses.requests[before_rerun:]))
    assert not set(rerun_sent) & set(uncertain), "a plain rerun resends no uncertain row"

    # --resend-uncertain resends exactly the rows no event settled, once each.
    before_resend = len(local_ses.requests)
    resent = world.cli("send", issue, "--yes", "--resend-uncertain")
    assert resent.returncode == 0, resent.stdout + resent.stderr
    assert Counter(message_ids_of(local_ses.requests[before_resend:])) == Counter(set(still_unknown))
    final = world.deliveries()
    assert {row.message_id for row in final.values() if row.status != schema.SENT} == {own_ids[2]}
