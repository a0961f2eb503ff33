"""`newsletter issues`: every issue file and stored issue with its state, newest first."""

from __future__ import annotations

import json
import shutil

import pytest
import sqlalchemy as sa

from newsletter.issue_states import issue_states
from newsletter.store.schema import FAILED, SENDING, TEMPORARY, deliveries

pytest.register_assert_rewrite("tests.send_world")
from tests.send_world import EXAMPLE_ISSUE, World

pytest_plugins = ["tests.send_world"]


def states_of(world: World) -> dict[str, object]:
    return {state.slug: state for state in issue_states(world.settings, world.store)}


def test_a_file_never_sent_is_a_draft_and_a_complete_send_is_sent_with_its_count(world: World):
    later = world.root / "issues" / "2026-12-07.md"
    shutil.copyfile(EXAMPLE_ISSUE, later)
    later.write_text(later.read_text(encoding="utf-8").replace("2026年11月30日", "2026年12月07日"), encoding="utf-8")
    world.add_subscribers(3)
    assert world.send().complete
    states = issue_states(world.settings, world.store)
    # Newest first.
    assert [state.slug for state in states] == ["2026-12-07", "2026-11-30"]
    draft, sent = states
    assert (draft.state, draft.file, draft.sent) == ("draft", str(later), 0)
    assert (sent.state, sent.sent, sent.recipients) == ("sent", 3, 3) and sent.completed_at is not None


def test_rows_failed_temporarily_or_uncertain_make_an_issue_incomplete_with_how_many(world: World):
    world.add_subscribers(4)
    world.send()
    with world.store.begin() as conn:
        ids = [row.id for row in conn.execute(sa.select(deliveries.c.id).order_by(deliveries.c.id))]
        conn.execute(sa.update(deliveries).where(deliveries.c.id == ids[0]).values(status=FAILED, failure=TEMPORARY))
        conn.execute(sa.update(deliveries).where(deliveries.c.id == ids[1]).values(status=SENDING))
    state = states_of(world)["2026-11-30"]
    assert (state.state, state.sent, state.failed_temporary, state.uncertain, state.left) == ("incomplete", 2, 1, 1, 2)
    assert "2 of 4 not delivered yet" in state.note


def test_a_file_that_does_not_parse_is_listed_as_a_draft_saying_why(world: World):
    (world.root / "issues" / "broken.md").write_text("no title here\n", encoding="utf-8")
    state = states_of(world)["broken"]
    assert state.state == "draft" and state.note.startswith("does not parse: ") and ":1: " in state.note


def test_issues_json_lists_slug_state_scheduled_at_and_sent(world: World):
    world.add_subscribers(2)
    world.send()
    result = world.cli("issues", "--json")
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert {key: entry[key] for key in ("slug", "state", "scheduled_at", "sent")} == {
        "slug": "2026-11-30",
        "state": "sent",
        "scheduled_at": None,
        "sent": 2,
    }
    text = world.cli("issues").stdout
    assert "2026-11-30" in text and "sent" in text
