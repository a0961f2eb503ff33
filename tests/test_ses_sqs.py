"""`newsletter events pull` against moto's SQS in server mode (the LocalSes server, which
answers every AWS service moto has on one endpoint), with a real boto3 client.

Messages go into the queue as SES and SNS put them there: the SES record itself ("raw
message delivery") or wrapped in an SNS envelope signed as SNS signs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
from cli_in_process import run_newsletter
from crafted_ledger import CraftedLedger
from ses_records import CERT_PATH, TOPIC, ses_record, sns_notification
from sns_signing import (
    LOCAL_SNS_ORIGIN_PATTERN,
)

from newsletter.config import SesSettings, Settings, replace
from newsletter.store import schema
from newsletter.transports.ses.sns import SnsVerifier
from newsletter.transports.ses.sqs import QueueError, pull_events

pytest.register_assert_rewrite("tests.transport_servers")
from tests.transport_servers import LocalSes

pytest_plugins = ["tests.transport_servers"]


class Queue:
    """One fresh SQS queue on the moto server."""

    def __init__(self, server: LocalSes) -> None:
        import boto3

        self.client = boto3.session.Session().client(
            "sqs",
            region_name=server.region,
            endpoint_url=server.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        # Visibility 30 s (SQS's default): a message received and not deleted stays in flight
        # for the rest of the test, where it can be counted.
        self.url = self.client.create_queue(QueueName=f"ses-events-{uuid.uuid4().hex[:8]}")["QueueUrl"]

    def send(self, body: dict | str) -> None:
        self.client.send_message(QueueUrl=self.url, MessageBody=body if isinstance(body, str) else json.dumps(body))

    def counts(self) -> tuple[int, int]:
        """(waiting, in flight): messages not yet received, and received but not deleted."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def queue(local_ses: LocalSes) -> Queue:
    return Queue(local_ses)


@pytest.fixture
def settings(local_ses: LocalSes) -> Settings:
    return replace(
        Settings(), transport={"ses": SesSettings(region=local_ses.region, endpoint_url=local_ses.endpoint_url)}
    )


@pytest.fixture
def sqlite_store(tmp_path):
    """For what the queue does (the store's side runs on both databases in the first test
    and in test_feedback.py)."""
    from newsletter.store import Store

    with Store.open(f"sqlite:///{tmp_path / 'newsletter.db'}") as opened:
        yield opened


def crafted_ledger(store):
    crafted = CraftedLedger(store)
    issue_id = crafted.issue()
    a = crafted.subscriber("a@example.org")
    b = crafted.subscriber("b@example.org")
    crafted.delivery(issue_id, a, provider_id="ses-a")
    crafted.delivery(issue_id, b, provider_id="ses-b")
    return crafted, a, b


@pytest.fixture
def ledger(store):
    """Two readers who were sent an issue, SES message ids ses-a and ses-b, on each database."""
    return crafted_ledger(store)


@pytest.fixture
def sqlite_ledger(sqlite_store):
    return crafted_ledger(sqlite_store)


def test_raw_and_enveloped_events_are_applied_and_then_deleted(
    store, queue, settings, ledger, sns_certificate_server, sns_signing_identity
):
    crafted, a, b = ledger
    queue.send(ses_record("Bounce", message_id="ses-a", recipient="a@example.org"))
    queue.send(
        sns_notification(
            ses_record("Complaint", message_id="ses-b", recipient="b@example.org"),
            cert_url=sns_certificate_server.url(CERT_PATH),
            key=sns_signing_identity.private_key,
            version="2",
        )
    )
    verifier = SnsVerifier([TOPIC], sns_origin_pattern=LOCAL_SNS_ORIGIN_PATTERN, max_age=None)
    lines: list[str] = []

    summary = pull_events(settings, store, queue.url, once=True, wait_seconds=0, verifier=verifier, report=lines.append)

    assert (summary.received, summary.recorded, summary.deleted, summary.poison) == (2, 2, 2, 0)
    assert crafted.status_of(a) == schema.BOUNCED
    assert crafted.status_of(b) == schema.COMPLAINED
    assert queue.counts() == (0, 0)
    assert sorted(e["kind"] for e in crafted.events()) == [schema.BOUNCE, schema.COMPLAINT]
    assert len([line for line in lines if "recorded" in line]) == 2


def test_a_redelivered_message_is_deleted_and_counted_once(sqlite_store, queue, settings, sqlite_ledger):
    crafted, _a, _ = sqlite_ledger
    record = ses_record("Delivery", message_id="ses-a", recipient="a@example.org")
    queue.send(record)
    queue.send(record)  # what SQS does after a crash between our commit and our delete
    summary = pull_events(settings, sqlite_store, queue.url, once=True, wait_seconds=0)
    assert (summary.recorded, summary.duplicates, summary.deleted) == (1, 1, 2)
    assert [e["kind"] for e in crafted.events()] == [schema.DELIVERY]
    assert queue.counts() == (0, 0)


def test_a_poison_message_is_reported_and_left_in_the_queue(sqlite_store, queue, settings, sqlite_ledger):
    crafted, a, _ = sqlite_ledger
    queue.send("this is not an SES event")
    queue.send(ses_record("Bounce", message_id="ses-a", recipient="a@example.org"))
    lines: list[str] = []
    summary = pull_events(settings, sqlite_store, queue.url, once=True, wait_seconds=0, report=lines.append)
    assert (summary.poison, summary.recorded, summary.deleted) == (1, 1, 1)
    assert any("unreadable" in line and "redrive" in line for line in lines)
    # The poison message was received and not deleted: in flight until its visibility
    # timeout ends, then back for the redrive policy to count.
    assert queue.counts() == (0, 1)
    assert crafted.status_of(a) == schema.BOUNCED


def test_an_envelope_that_does_not_verify_is_left_in_the_queue(
    sqlite_store, queue, settings, sqlite_ledger, sns_certificate_server
):
    from sns_signing import make_signing_identity

    crafted, a, _ = sqlite_ledger
    forged = sns_notification(
        ses_record("Bounce", message_id="ses-a", recipient="a@example.org"),
        cert_url=sns_certificate_server.url(CERT_PATH),
        key=make_signing_identity().private_key,
    )
    queue.send(forged)
    verifier = SnsVerifier([TOPIC], sns_origin_pattern=LOCAL_SNS_ORIGIN_PATTERN, max_age=None)
    summary = pull_events(settings, sqlite_store, queue.url, once=True, wait_seconds=0, verifier=verifier)
    assert (summary.poison, summary.deleted) == (1, 0)
    assert crafted.status_of(a) == schema.ACTIVE
    assert queue.counts() == (0, 1)


def test_max_stops_after_that_many_messages(sqlite_store, queue, settings, sqlite_ledger):
    for _ in range(3):
        queue.send(ses_record("Open", message_id="ses-a", recipient="a@example.org"))
    summary = pull_events(settings, sqlite_store, queue.url, max_messages=2, wait_seconds=0)
    assert (summary.received, summary.deleted) == (2, 2)
    assert queue.counts() == (1, 0)


def test_a_queue_that_does_not_exist_is_one_clear_error(sqlite_store, settings, local_ses):
    with pytest.raises(QueueError, match="cannot read .*no-such-queue"):
        pull_events(
            settings, sqlite_store, f"{local_ses.endpoint_url}/123456789012/no-such-queue", once=True, wait_seconds=0
        )


# ---- the command ----


def write_config(tmp_path, database_url: str, server: LocalSes) -> str:
    config = tmp_path / "newsletter.toml"
    config.write_text(
        "[newsletter]\n"
        f'database = "{database_url}"\n'
        "[transport.ses]\n"
        f'region = "{server.region}"\n'
        f'endpoint_url = "{server.endpoint_url}"\n',
        encoding="utf-8",
    )
    return str(config)


def command_environment(server: LocalSes) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "AWS_"))}
    env.update(server.environ)
    return env


def test_events_pull_command_applies_the_queue_and_prints_a_summary(tmp_path, queue, local_ses):
    database_url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    from newsletter.store import Store

    with Store.open(database_url) as store:
        crafted = CraftedLedger(store)
        issue_id = crafted.issue()
        reader = crafted.subscriber("a@example.org")
        crafted.delivery(issue_id, reader, provider_id="ses-a")
    queue.send(ses_record("Bounce", message_id="ses-a", recipient="a@example.org"))
    config = write_config(tmp_path, database_url, local_ses)

    # local_ses put its AWS_* variables in this process's environment.
    done = run_newsletter("--config", config, "events", "pull", "--queue-url", queue.url, "--once", "--wait", "0")

    assert done.returncode == 0, done.stderr
    assert "bounce ses-a: recorded" in done.stdout and "now bounced" in done.stdout
    assert "1 received: 1 recorded" in done.stderr
    with Store.open(database_url) as store:
        assert CraftedLedger(store).status_of(reader) == schema.BOUNCED
    assert queue.counts() == (0, 0)


def test_events_pull_stops_cleanly_on_ctrl_c(tmp_path, queue, local_ses):
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'newsletter.db'}", local_ses)
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", config, "events", "pull", "--queue-url", queue.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=command_environment(local_ses),
    )
    try:
        # The first line says it has started and is about to wait on the queue.
        assert process.stdout.readline().startswith(f"reading {queue.url} (Ctrl-C to stop)")
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped by Ctrl-C" in err
    assert "Traceback" not in err
