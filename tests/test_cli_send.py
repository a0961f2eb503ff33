"""`newsletter send` as the editor runs it, without a terminal, in a directory with its own
newsletter.toml, reading back the outbox, the servers and the database.

`world.cli(...)` runs the click command in this process (and coverage sees cli/);
`world.newsletter(...)` starts the real command in a subprocess, for what only a process of
its own shows: here, that without a terminal it refuses to send unasked.
"""

from __future__ import annotations

import re

import pytest

from newsletter.config import DEMO_SECRET
from newsletter.tokens import Purpose, Tokens

pytest.register_assert_rewrite("tests.send_world", "tests.transport_servers")
from tests.send_world import SECRET, SENDER, World, parse_message, recipients_of
from tests.transport_servers import LocalSes

pytest_plugins = ["tests.transport_servers", "tests.send_world"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_without_a_terminal_or_yes_it_refuses_in_one_line_and_sends_nothing(world: World):
    world.add_subscribers(3)
    result = world.newsletter("send", str(world.issue_file))

    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "--yes" in errors[0] and "3 subscribers" in errors[0]
    assert "Traceback" not in result.stderr
    assert world.outbox_count() == 0 and world.deliveries() == {}


def test_yes_sends_and_ends_with_a_summary(world: World):
    world.add_subscribers(5)
    result = world.cli("send", str(world.issue_file), "--yes")

    assert result.returncode == 0, result.stderr
    assert "sent 5, failed 0 permanently and 0 temporarily, skipped 0" in result.stdout
    assert "2026-11-30: sent completely (5 in all)" in result.stdout
    assert f"messages are in the Maildir {world.outbox}/new/" in result.stdout
    assert world.outbox_count() == 5


def test_an_issue_sent_completely_says_so_and_sends_nothing(world: World):
    world.add_subscribers(3)
    assert world.cli("send", str(world.issue_file), "--yes").returncode == 0
    before = sorted(path.name for path in world.outbox_files())

    again = world.cli("send", str(world.issue_file), "--yes")
    assert again.returncode == 0
    assert "2026-11-30: already sent completely (3 sent) — nothing to do" in again.stdout
    assert sorted(path.name for path in world.outbox_files()) == before


def test_test_send_goes_only_to_the_given_addresses_marked_test_without_ledger_rows(world: World):
    world.add_subscribers(4)
    result = world.cli("send", str(world.issue_file), "--test", "editor@example.net", "--test", "Proof@Example.NET")

    assert result.returncode == 0, result.stderr
    messages = [parse_message(path.read_bytes()) for path in world.outbox_files()]
    assert recipients_of(messages) == {"editor@example.net": 1, "Proof@example.net": 1}
    for message in messages:
        assert message["Subject"].startswith("[TEST] ")
        token = re.search(r"/u/([A-Za-z0-9_-]{44})>", str(message["List-Unsubscribe"])).group(1)
        # Subscriber 0: the web side treats it as a test reader, not a real unsubscribe.
        assert Tokens(SECRET).verify(token, Purpose.UNSUBSCRIBE).subscriber_id == 0
    assert world.deliveries() == {}
    assert world.issue_row()["snapshot_at"] is None


def test_dry_run_builds_every_message_and_changes_nothing(world: World):
    world.add_subscribers(25)
    world.add_subscribers(1, prefix="读者", domain="example.org")  # cannot be sent: SMTPUTF8
    result = world.cli("send", str(world.issue_file), "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "building 26 messages" in result.stdout and "nothing will be sent" in result.stdout
    assert re.search(r"built 25 messages \(\d+\.\d KB each\)", result.stdout)
    assert "1 cannot be sent" in result.stdout and "读者0@example.org" in result.stderr
    assert world.outbox_count() == 0 and world.deliveries() == {}
    assert world.issue_row()["snapshot_at"] is None


def test_dry_run_of_a_send_in_progress_leaves_the_ledger_as_it_was(world: World):
    from tests.test_send import interrupt_after

    world.add_subscribers(12)
    world.send(progress=interrupt_after(3))
    before = world.deliveries()
    queued = sum(row.status == "queued" for row in before.values())

    result = world.cli("send", str(world.issue_file), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"built {queued} messages" in result.stdout
    assert world.deliveries() == before


ISSUE_WITHOUT_ALT = "![](https://img.example.com/chart.png)"


def test_failing_checks_refuse_the_send_unless_forced(world: World):
    world.add_subscribers(2)
    text = world.issue_file.read_text(encoding="utf-8")
    world.issue_file.write_text(
        text.replace("**核心洞察：** ", f"**核心洞察：** {ISSUE_WITHOUT_ALT} ", 1), encoding="utf-8"
    )

    refused = world.cli("send", str(world.issue_file), "--yes")
    assert refused.returncode == 1
    assert "has no alt text" in refused.stderr and "checks failed: nothing sent" in refused.stderr
    assert world.outbox_count() == 0 and world.deliveries() == {}

    forced = world.cli("send", str(world.issue_file), "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert world.outbox_count() == 2


@pytest.mark.parametrize("kind", ["smtp", "ses"])
@pytest.mark.parametrize(
    ("secret", "said"), [(DEMO_SECRET, "demo secret"), ("only-twenty-five-bytes-ok", "at least 32 bytes")]
)
def test_a_weak_secret_is_refused_for_real_transports_before_anything_is_sent(
    world: World, kind: str, secret: str, said: str
):
    world.add_subscribers(1)
    world.configure("newsletter", secret=secret)
    world.configure("transport", kind=kind)
    # Nothing listens here; the refusal must come before any connection.
    world.configure("transport.smtp", host="127.0.0.1", port=9, security="none")
    world.configure("transport.ses", endpoint_url="http://127.0.0.1:9")
    result = world.cli("send", str(world.issue_file), "--yes")

    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "newsletter.secret" in errors[0] and said in errors[0]
    assert world.deliveries() == {}


def test_the_demo_secret_is_fine_for_the_outbox(world: World):
    world.add_subscribers(1)
    world.configure("newsletter", secret=DEMO_SECRET)
    assert world.cli("send", str(world.issue_file), "--yes").returncode == 0


def test_no_secret_is_refused_naming_the_key(world: World):
    world.add_subscribers(1)
    world.configure("newsletter", secret="")
    result = world.cli("send", str(world.issue_file), "--yes")

    assert result.returncode == 1
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "newsletter.secret" in errors[0] and "NEWSLETTER_SECRET" in errors[0]
    assert world.outbox_count() == 0 and world.deliveries() == {}

    # The environment variable is the other way to give it.
    with_env = world.cli("send", str(world.issue_file), "--yes", env={"NEWSLETTER_SECRET": SECRET})
    assert with_env.returncode == 0, with_env.stderr


def test_a_list_that_does_not_exist_is_one_clear_error(world: World):
    world.add_subscribers(1)
    result = world.cli("send", str(world.issue_file), "--yes", "--list", "nope")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        "error: there is no list 'nope'; import subscribers into it first (newsletter subscribers import FILE --list nope)"
    ]


def test_send_through_ses_reaches_every_subscriber_once(world: World, local_ses: LocalSes):
    local_ses.verify(SENDER)
    local_ses.set_quota(max_send_rate=200)
    world.use_ses(local_ses, configuration_set="newsletter-events")
    world.add_subscribers(30)
    # AWS credentials and region come from the environment the fixture set, as in production.
    result = world.cli("send", str(world.issue_file), "--yes")

    assert result.returncode == 0, result.stderr
    assert "sent 30," in result.stdout and "sent completely (30 in all)" in result.stdout
    messages = [delivery.message for delivery in local_ses.received()]
    assert recipients_of(messages) == {f"reader{n}@example.org": 1 for n in range(30)}
    assert all(message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for message in messages)
    for request in local_ses.requests:
        assert request.body["ConfigurationSetName"] == "newsletter-events"
        assert request.body["EmailTags"] == [
            {"Name": "issue", "Value": "2026-11-30"},
            {"Name": "list", "Value": "default"},
        ]
    assert world.statuses() == {"sent": 30}


def test_dry_run_builds_what_a_retry_would_send_and_no_more(world: World, local_smtp, monkeypatch: pytest.MonkeyPatch):
    from newsletter.sending import pacing

    monkeypatch.setattr(pacing, "BASE_BACKOFF", 0.005)
    monkeypatch.setattr(pacing, "MAX_BACKOFF", 0.02)
    world.use_smtp(local_smtp)
    world.add_subscribers(6)
    local_smtp.rcpt_replies["reader1@example.org"] = "452 4.2.2 Mailbox full"
    local_smtp.rcpt_replies["reader2@example.org"] = "550 5.1.1 No such user"
    world.send()
    assert world.statuses() == {"sent": 4, "failed(temporary)": 1, "failed(permanent)": 1}

    result = world.cli("send", str(world.issue_file), "--dry-run", "--retry-failed")
    assert result.returncode == 0, result.stderr
    # --retry-failed retries temporary failures only; a permanent one is never sent again.
    assert "building 1 messages" in result.stdout and "built 1 messages" in result.stdout


def test_a_test_send_works_in_a_fresh_database_with_no_list(world: World):
    # No subscriber was ever imported: there is no list yet.
    result = world.cli("send", str(world.issue_file), "--test", "me@example.com")
    assert result.returncode == 0, result.stderr
    (message,) = [parse_message(path.read_bytes()) for path in world.outbox_files()]
    assert message["To"].addresses[0].addr_spec == "me@example.com" and message["Subject"].startswith("[TEST] ")
    assert world.deliveries() == {}


def test_test_alone_goes_to_the_configured_test_recipients(world: World):
    world.configure("newsletter", test_recipients=["first@example.com", "second@example.net"])
    result = world.cli("send", str(world.issue_file), "--test")
    assert result.returncode == 0, result.stderr
    assert recipients_of(world.outbox_headers()) == {"first@example.com": 1, "second@example.net": 1}


def test_test_alone_without_configured_recipients_is_a_usage_error(world: World):
    result = world.cli("send", str(world.issue_file), "--test")
    assert result.returncode == 2 and "test_recipients" in result.stderr and world.outbox_count() == 0


def test_send_takes_the_issue_slug_too(world: World):
    world.add_subscribers(2)
    result = world.cli("send", "2026-11-30", "--yes")
    assert result.returncode == 0, result.stderr
    assert world.outbox_count() == 2
