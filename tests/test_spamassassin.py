"""Messages as they leave, scored by SpamAssassin with its local rules only (`-L`: no DNS
blocklists, no network), as a receiving server would score them before any reputation.

The rules are the ones Debian's spamassassin package ships (/usr/share/spamassassin; no
`sa-update` channel is reachable offline).  A plain well-formed message scores 0 there;
ours must too, except for what the editor chose: a subject whose only Latin letters are
capitals trips SUBJ_ALL_CAPS, which `newsletter check` warns about instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sample_issues import DIGEST, EXAMPLE

from tests.send_world import World, parse_message

# The three our markup used to trip on every seed message (1.8 points): the preheader
# hidden as white text on a light background, the `</strong>` of each label running straight
# into CJK text, and the CJK subject whose only Latin letters are "AI".
MARKUP_RULES = ("HTML_FONT_LOW_CONTRAST", "HTML_OBFUSCATE")
SUBJECT_RULE = "SUBJ_ALL_CAPS"
LOWERCASE_SUBJECT = "AI行业速递 weekly · 2026年11月30日"


def spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found is None:
        message = "spamassassin is not installed (apt-get install spamassassin)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def scores(messages: list[bytes], home: Path) -> list[tuple[float, dict[str, float]]]:
    """(score, {rule: points}) of each message, from one spamassassin run over an mbox."""
    mbox = b"".join(
        b"From sender@example.com Mon Nov 30 08:00:00 2026\n" + m.replace(b"\r\n", b"\n") + b"\n" for m in messages
    )
    # A HOME of its own: no user preferences, and its Bayes and reputation files (if any
    # plugin wants them) start empty on every run, so the score cannot drift between runs.
    result = subprocess.run(
        [spamassassin(), "-L", "--mbox", "-t", "--cf=use_bayes 0"],
        input=mbox,
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"},
        timeout=300,
        check=True,
    )
    output = result.stdout.decode("utf-8", "replace")
    found = []
    # spamassassin reports the messages of an mbox in an order of its own: find each one's
    # report after its Message-ID.
    for message in messages:
        message_id = parse_message(message)["Message-ID"]
        start = output.index(f"Message-ID: {message_id}")
        block = output[output.index("Content analysis details:", start) :].split("\n\n", 2)[:2]
        report = "\n".join(block)
        total = float(re.search(r"\((-?[\d.]+) points", report).group(1))
        rules = {
            name: float(points)
            for points, name in re.findall(r"^\s*(-?[\d.]+) ([A-Z][A-Z0-9_]+)\s", report, re.MULTILINE)
        }
        found.append((total, rules))
    return found


def with_subject(text: str, subject: str) -> str:
    if text.startswith("---\n"):
        return text.replace("---\n", f"---\nsubject: {subject}\n", 1)
    return f"---\nsubject: {subject}\n---\n{text}"


@pytest.fixture(scope="module")
def received(tmp_path_factory) -> dict[str, bytes]:
    """The example issue and our full-size digest (the seed's shape: ten entries, labels,
    sources) as one subscriber receives each, with their own subjects (all-capital Latin
    letters), and the digest once more with a subject that has a lowercase word."""
    samples = {
        "example": EXAMPLE.read_text(encoding="utf-8"),
        "digest": DIGEST.read_text(encoding="utf-8"),
        "lowercase subject": with_subject(DIGEST.read_text(encoding="utf-8"), LOWERCASE_SUBJECT),
    }
    messages = {}
    for name, text in samples.items():
        root = tmp_path_factory.mktemp(name.replace(" ", "-"))
        world = World(root, f"sqlite:///{root / 'newsletter.db'}")
        try:
            world.issue_file.write_text(text, encoding="utf-8")
            world.add_subscribers(1, names=["刘洋"])
            world.send()
            [path] = world.outbox_files()
            messages[name] = path.read_bytes()
        finally:
            world.close()
    return messages


@pytest.fixture(scope="module")
def scored(received, tmp_path_factory) -> dict[str, tuple[float, dict[str, float]]]:
    names = sorted(received)
    return dict(zip(names, scores([received[n] for n in names], tmp_path_factory.mktemp("sa-home")), strict=True))


def test_message_with_a_lowercase_subject_scores_zero_under_local_rules(scored, received):
    assert parse_message(received["lowercase subject"])["Subject"] == LOWERCASE_SUBJECT
    total, rules = scored["lowercase subject"]
    assert total <= 0.0, f"scored {total}: {rules}"
    assert {name: points for name, points in rules.items() if points} == {}


@pytest.mark.parametrize("name", ["example", "digest"])
def test_no_markup_rule_fires_on_the_messages_as_written(scored, name):
    _total, rules = scored[name]
    tripped = [rule for rule in rules if rule.startswith(MARKUP_RULES)]
    assert tripped == [], f"our markup trips {tripped}"


@pytest.mark.parametrize("name", ["example", "digest"])
def test_the_all_capital_subject_is_the_only_thing_scored_and_it_is_what_check_warns_about(scored, received, name):
    total, rules = scored[name]
    assert parse_message(received[name])["Subject"].startswith("🤖 AI行业速递 - 2026年")
    assert {rule for rule, points in rules.items() if points} == {SUBJECT_RULE}
    assert total == rules[SUBJECT_RULE] == 0.5
