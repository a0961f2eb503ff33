"""Unattended sends tell the truth: one state per issue (complete only when every row is
sent, skipped or failed permanently), the exit status a cron job reads (0 / 75 / 1 / 2),
and what a rerun says, through real SMTP servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from ports import free_port

from newsletter.store.schema import subscribers

pytest.register_assert_rewrite("tests.send_world", "tests.transport_servers")
from tests.send_world import SENDER, World, recipients_of
from tests.transport_servers import LocalSes, LocalSmtp

pytest_plugins = ["tests.transport_servers", "tests.send_world"]


def issue_state(world: World) -> dict:
    listed = world.cli("issues", "--json")
    assert listed.returncode == 0, listed.stderr
    (state,) = [s for s in json.loads(listed.stdout) if s["slug"] == "2026-11-30"]
    return state


def received_by(server: LocalSmtp) -> Counter[str]:
    return Counter(rcpt for delivery in server.received for rcpt in delivery.rcpt_tos)


def test_smtp_down_then_up_first_run_is_incomplete_75_and_the_second_delivers_everyone_once(world: World):
    world.add_subscribers(8)
    world.configure("transport", kind="smtp")
    world.configure("transport.smtp", host="127.0.0.1", port=free_port(), security="none", timeout=5)

    first = world.cli("send", str(world.issue_file), "--yes")
    assert first.returncode == 75, first.stdout + first.stderr
    assert "2026-11-30: incomplete" in first.stdout and "sent completely" not in first.stdout
    assert "cannot connect to SMTP server" in first.stderr
    # Every command says so: issues, stats (terminal and JSON).
    assert issue_state(world)["state"] == "incomplete"
    stats = world.cli("stats", "2026-11-30", "--json")
    assert json.loads(stats.stdout)["state"] == "incomplete"
    assert "incomplete: 8 not delivered yet" in world.cli("stats", "2026-11-30").stdout
    assert world.issue_row()["completed_at"] is None

    with LocalSmtp() as server:
        world.use_smtp(server)
        second = world.cli("send", str(world.issue_file), "--yes")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "2026-11-30: sent completely (8 in all)" in second.stdout
        assert received_by(server) == Counter({f"reader{n}@example.org": 1 for n in range(8)})
    assert issue_state(world)["state"] == "sent"
    assert json.loads(world.cli("stats", "2026-11-30", "--json").stdout)["state"] == "complete"


def test_a_rerun_with_uncertain_rows_is_incomplete_and_never_says_nothing_to_do(world: World, local_smtp: LocalSmtp):
    world.use_smtp(local_smtp)
    world.add_subscribers(4)
    # The server takes the first message and hangs up before saying so: that row is uncertain.
    local_smtp.hang_up_in_data(1)
    first = world.cli("send", str(world.issue_file), "--yes", "--workers", "1")
    assert first.returncode == 75, first.stdout + first.stderr

    again = world.cli("send", str(world.issue_file), "--yes")
    assert again.returncode == 75
    assert "nothing to do" not in again.stdout and "sent completely" not in again.stdout
    assert "(3 sent, 1 not yet: 0 queued, 0 failed temporarily, 1 uncertain)" in again.stdout
    assert again.stderr.count("may or may not have gone out") == 1
    assert issue_state(world)["state"] == "incomplete"


def test_a_rerun_after_permanent_failures_names_them_instead_of_sent_completely(world: World, local_smtp: LocalSmtp):
    world.use_smtp(local_smtp)
    world.add_subscribers(5)
    local_smtp.rcpt_replies["reader1@example.org"] = "550 5.7.1 Message refused by policy"
    local_smtp.rcpt_replies["reader3@example.org"] = "554 5.7.1 Rejected"
    first = world.cli("send", str(world.issue_file), "--yes")
    # Complete: every row is settled for good, though two of them failed.
    assert first.returncode == 0, first.stdout + first.stderr

    again = world.cli("send", str(world.issue_file), "--yes")
    assert again.returncode == 0
    assert "already sent completely" not in again.stdout
    assert "2026-11-30: complete: 3 sent, 2 failed permanently, 0 skipped" in again.stdout
    named = [line for line in again.stdout.splitlines() if "failed permanently:" in line]
    assert len(named) == 2
    assert "reader1@example.org" in named[0] and "550 5.7.1" in named[0]
    assert "reader3@example.org" in named[1] and "554 5.7.1" in named[1]
    assert issue_state(world)["state"] == "sent"


def test_send_help_documents_the_exit_statuses(world: World):
    shown = world.cli("send", "--help")
    assert shown.returncode == 0
    for line in ("0   complete", "75  incomplete", "1   an error", "2   a usage error"):
        assert line in shown.stdout


def test_a_rerun_before_a_retry_is_due_says_when_and_retry_failed_sends_at_once(world: World, local_smtp: LocalSmtp):
    world.use_smtp(local_smtp)
    world.add_subscribers(3)
    local_smtp.rcpt_replies["reader1@example.org"] = "451 4.7.1 Greylisted, try again later"
    first = world.cli("send", str(world.issue_file), "--yes")
    assert first.returncode == 75
    assert "1 failed temporarily: the next run of the same command retries them from" in first.stderr

    again = world.cli("send", str(world.issue_file), "--yes")
    assert again.returncode == 75 and "nothing to do" not in again.stdout
    assert "(2 sent, 1 not yet: 0 queued, 1 failed temporarily, 0 uncertain)" in again.stdout
    state = issue_state(world)
    assert state["state"] == "incomplete" and state["next_retry_at"].endswith("Z")
    assert "the next run retries 1 from" in state["note"]

    local_smtp.rcpt_replies.clear()
    retried = world.cli("send", str(world.issue_file), "--yes", "--retry-failed")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert received_by(local_smtp) == Counter({f"reader{n}@example.org": 1 for n in range(3)})


def subscriber_statuses(world: World) -> dict[str, str]:
    with world.store.read() as conn:
        return {row.email: row.status for row in conn.execute(sa.select(subscribers.c.email, subscribers.c.status))}


def test_smtp_hard_bounces_are_suppressed_policy_refusals_are_not_and_451s_go_out_on_a_rerun(
    world: World, local_smtp: LocalSmtp
):
    world.use_smtp(local_smtp)
    world.add_subscribers(16)
    dead = {
        "reader1@example.org": "550 5.1.1 <reader1@example.org>: Recipient address rejected: User unknown",
        "reader2@example.org": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found",
        "reader3@example.org": "550 5.2.1 The email account that you tried to reach is disabled",
        "reader4@example.org": "550 5.1.2 Host or domain name not found",
    }
    refused = {
        "reader5@example.org": "550 5.7.1 Message rejected as spam by content filter",
        "reader6@example.org": "554 5.7.1 Client host rejected: access denied",
    }
    later = {
        "reader7@example.org": "451 4.7.1 Greylisted, try again later",
        "reader8@example.org": "452 4.2.2 Mailbox full",
    }
    local_smtp.rcpt_replies.update({**dead, **refused, **later})
    # The connection drops mid-DATA for the first two messages that get that far.
    local_smtp.hang_up_in_data(2)
    start = datetime.now(UTC)
    first = world.send(clock=lambda: start, workers=1)

    statuses = subscriber_statuses(world)
    assert {address: statuses[address] for address in dead} == dict.fromkeys(dead, "bounced")
    assert first.suppressed == 4 and not first.complete
    assert {address: statuses[address] for address in [*refused, *later]} == dict.fromkeys([*refused, *later], "active")
    rows = {row.email: row for row in world.deliveries().values()}
    for address, reply in dead.items():
        # The reply is kept, on the row and with the bounce.
        assert rows[address].failure == "permanent" and reply in rows[address].error
    assert {rows[a].failure for a in refused} == {"permanent"}
    uncertain = sorted(a for a, row in rows.items() if row.status == "sending")
    assert len(uncertain) == 2
    stats = json.loads(world.cli("stats", "2026-11-30", "--json").stdout)
    assert stats["bounced_hard"] == 4

    # The servers change their minds; a run once the retries are due delivers the 451s.
    local_smtp.rcpt_replies.clear()
    second = world.send(clock=lambda: start + timedelta(minutes=1))
    assert second.sent == 2
    counted = received_by(local_smtp)
    everyone = {f"reader{n}@example.org" for n in range(16)}
    assert set(counted) == everyone - set(dead) - set(refused)
    assert set(counted.values()) == {1}, counted
    # The uncertain rows reached the server before it hung up, and were not resent.
    assert all(counted[address] == 1 for address in uncertain)

    # The next issue goes to nobody whose address bounced.
    with world.store.read() as conn:
        from newsletter.store.ledger import count_audience
        from newsletter.store.lists import find_list_id

        assert count_audience(conn, find_list_id(conn, "default")) == 16 - len(dead)


def test_ses_refusing_an_address_at_send_time_suppresses_it_and_a_rejected_message_does_not(
    world: World, local_ses: LocalSes
):
    local_ses.verify(SENDER)
    local_ses.set_quota(max_send_rate=500)
    world.use_ses(local_ses)
    world.add_subscribers(4)
    local_ses.fail_next(1, "BadRequestException", "Illegal address", 400)
    local_ses.fail_next(1, "MessageRejected", "Email rejected: content", 400)
    summary = world.send(workers=1)

    bad, rejected = (request.body["Destination"]["ToAddresses"][0] for request in local_ses.requests[:2])
    statuses = subscriber_statuses(world)
    assert statuses[bad] == "bounced" and statuses[rejected] == "active"
    assert summary.failed_permanent == 2 and summary.suppressed == 1 and summary.sent == 2


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_paused_ses_account_is_refused_in_one_line_before_anything_is_sent(world: World, local_ses: LocalSes):
    local_ses.verify(SENDER)
    local_ses.set_quota(sending_enabled=False)
    world.use_ses(local_ses)
    world.add_subscribers(3)
    result = world.cli("send", str(world.issue_file), "--yes")

    assert result.returncode == 1
    paused = (
        "error: sending is paused for this SES account: every send is refused; read the message from AWS "
        "in the SES console (Reputation metrics) and ask to resume sending"
    )
    assert error_lines(result.stderr) == [paused]
    assert "Traceback" not in result.stderr
    assert local_ses.requests == [] and world.deliveries() == {}


def test_a_sandboxed_ses_account_warns_and_counts_the_unverified_addresses(world: World, local_ses: LocalSes):
    local_ses.verify(SENDER, "reader0@example.org", "example.net")
    local_ses.set_quota(production_access=False, max_send_rate=100)
    world.use_ses(local_ses)
    world.add_subscribers(4)
    world.add_subscribers(2, prefix="friend", domain="example.net")
    # No --yes and no terminal: the question is the error, so it shows what it would ask.
    asked = world.cli("send", str(world.issue_file))

    assert (
        "note: the SES account is in the sandbox: only verified addresses and domains receive mail: "
        "3 of the 6 addresses to send to are not verified and will be refused" in asked.stderr
    )
    assert world.deliveries() == {}


def test_the_confirmation_shows_the_daily_quota_left(world: World, local_ses: LocalSes):
    local_ses.verify(SENDER)
    local_ses.set_quota(max_24_hour_send=1_000, sent_last_24_hours=200)
    world.use_ses(local_ses)
    world.add_subscribers(3)
    asked = world.cli("send", str(world.issue_file))

    (line,) = error_lines(asked.stderr)
    assert "to 3 subscribers of 'default'" in line and "SES allows 800 more in the current 24 hours" in line
    assert "confirm with --yes" in line


def test_without_a_terminal_send_prints_progress_lines_and_a_final_summary(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    from newsletter.cli import send_report

    # Every 0.3 s instead of 10 s: the interval is the only thing changed.
    monkeypatch.setattr(send_report, "PROGRESS_EVERY", 0.3)
    world.add_subscribers(20)
    result = world.cli("send", str(world.issue_file), "--yes", "--rate", "10")

    assert result.returncode == 0, result.stderr
    lines = re.findall(
        r"^2026-11-30: (\d+) sent, 0 failed, (\d+) pending, [\d.]+/s, ETA [^(]+\(\d+ s elapsed\)$",
        result.stderr,
        re.MULTILINE,
    )
    assert len(lines) >= 3, result.stderr
    sent = [int(s) for s, _ in lines]
    assert sent == sorted(sent) and all(int(s) + int(p) == 20 for s, p in lines)
    assert "sent 20, failed 0 permanently and 0 temporarily, skipped 0" in result.stdout
    assert "2026-11-30: sent completely (20 in all)" in result.stdout


def test_json_prints_one_summary_object_on_stdout_under_a_pipe(world: World, local_smtp: LocalSmtp):
    world.use_smtp(local_smtp)
    world.add_subscribers(6)
    local_smtp.rcpt_replies["reader1@example.org"] = "550 5.7.1 Rejected by policy"
    local_smtp.rcpt_replies["reader2@example.org"] = "451 4.7.1 Greylisted, try again later"
    local_smtp.rcpt_replies["reader3@example.org"] = "451 4.7.1 Greylisted, try again later"
    # A process of its own, its stdout a pipe, as cron or CI runs it.
    result = world.newsletter("send", str(world.issue_file), "--yes", "--json")

    assert result.returncode == 75, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "incomplete" and summary["exit_status"] == 75
    assert summary["this_run"] == {
        "sent": 3,
        "failed_permanent": 1,
        "failed_temporary": 2,
        "skipped": 0,
        "suppressed": 0,
    }
    assert summary["ledger"]["pending"] == 2 and summary["ledger"]["total"] == 6
    reasons = summary["reasons"]
    assert sum(reasons.values()) == 3
    assert [n for reason, n in reasons.items() if "451 4.7.1" in reason] == [2]
    assert summary["permanent_failures"][0]["address"] == "reader1@example.org"
    assert summary["next_retry_at"].endswith("Z") and summary["elapsed_seconds"] > 0
    assert summary["rate_per_second"] > 0
    # The words went to stderr.
    assert "2026-11-30: incomplete" in result.stderr


def test_json_on_an_error_still_prints_one_object_with_the_error(world: World):
    world.add_subscribers(2)
    # The issue file does not parse: the send cannot start.
    broken = world.root / "issues" / "2026-12-24.md"
    broken.write_text("---\nsubject: [unclosed\n---\n# Title\n", encoding="utf-8")

    result = world.newsletter("send", str(broken), "--yes", "--json")

    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["state"] == "error" and answer["exit_status"] == 1 and answer["issue"] == str(broken)
    assert answer["error"] and answer["error"] in result.stderr
    assert "Traceback" not in result.stderr


def test_ses_5xx_for_a_share_of_sends_are_retried_by_a_later_run_and_everyone_gets_one(
    world: World, local_ses: LocalSes
):
    local_ses.verify(SENDER)
    local_ses.set_quota(max_send_rate=500)
    world.use_ses(local_ses)
    world.add_subscribers(30)
    local_ses.fail_share(0.3, "InternalFailure", "We encountered an internal error. Try again.", 500, seed=3)
    start = datetime.now(UTC)
    first = world.send(clock=lambda: start)
    assert first.failed_temporary >= 3 and first.failed_permanent == 0 and not first.complete

    local_ses.fail_share(0.0, "InternalFailure", "", 500)
    # A run once the retries are due (cron ten minutes later) finishes the issue.
    later = world.send(clock=lambda: start + timedelta(minutes=10))
    assert later.complete and later.sent == first.failed_temporary
    counted = Counter(recipients_of(d.message for d in local_ses.received()).values())
    assert counted == Counter({1: 30})


def test_max_attempts_below_one_is_one_line_naming_the_key(world: World):
    world.add_subscribers(1)
    world.configure("sending", max_attempts=0)
    result = world.cli("send", str(world.issue_file), "--yes")
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert "sending.max_attempts" in line and "must be 1 or more" in line
    assert world.deliveries() == {}
