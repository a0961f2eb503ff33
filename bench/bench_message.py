"""Per-recipient cost of a personal message for the seed issue (or, where ../shared/seeds is
not beside the clone, our full-size fixture tests/fixtures/digest/2026-01-22.md).

Side by side in one run, on one core (one thread; not pinned, so that the scheduler can
move it away from the other work on this 2-core machine):

- MessageFactory.build: slots filled per recipient, base64 re-encoded only around slots;
- from scratch: what a sender without the slot design does for every recipient: Jinja ->
  MJML -> CSS inlining (Renderer.render), then an `email.message.EmailMessage` with the same
  headers and both parts base64, serialised with `as_bytes`.

Then MERGE_MARGIN_LINES (message.py) swept, and where the time of one build goes.
Goals (issue 15): >= 15,000 messages per CPU-second, the from-scratch ratio beside it.

    .venv/bin/python bench/bench_message.py [--messages 20000] [--scratch 40]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import struct
import sys
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.compose.issue.parse import load_issue
from newsletter.compose.render import Renderer
from newsletter.config import Settings, replace
from newsletter.mail import message as message_module
from newsletter.mail.message import MessageFactory, Recipient
from newsletter.tokens import Links, Purpose, Tokens

SEED = REPO.parent / "shared" / "seeds" / "000_31559cfeefac81fc.txt"
# Our own issue of the same size and format, for a clone with no shared/ beside it.
DIGEST = REPO / "tests" / "fixtures" / "digest" / "2026-01-22.md"
ISSUE_ID, ISSUE_UID = 3, "0123456789abcdef"


def settings() -> Settings:
    return replace(
        Settings(root=REPO),
        newsletter={
            "name": "AI行业速递",
            "from_": "AI行业速递 <digest@example.com>",
            "reply_to": "editors@example.com",
            "base_url": "https://news.example.com",
            "secret": hashlib.sha256(b"bench").hexdigest(),
            "address": "示例传媒 · 北京市海淀区示例路 1 号",
        },
    )


def recipients(count: int, start: int = 1) -> list[Recipient]:
    return [Recipient(n, f"reader{n}@example.org", f"读者{n}") for n in range(start, start + count)]


def factory_for(config: Settings, rendered) -> MessageFactory:
    links = Links(config.base_url, Tokens(config.newsletter.secret))
    return MessageFactory(config, rendered, issue_id=ISSUE_ID, issue_uid=ISSUE_UID, list_slug="default", links=links)


def rate_of(build, people: list[Recipient], rounds: int = 5) -> dict[str, float]:
    """Messages per CPU-second of this process and per wall-second, best and median, over
    `rounds` passes through `people`."""
    cpu_rates, wall_rates = [], []
    for _ in range(rounds):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for person in people:
            build(person)
        cpu_rates.append(len(people) / (time.process_time() - cpu_start))
        wall_rates.append(len(people) / (time.perf_counter() - wall_start))
    return {
        "cpu_best": max(cpu_rates),
        "cpu_median": statistics.median(cpu_rates),
        "wall_best": max(wall_rates),
        "wall_median": statistics.median(wall_rates),
    }


def from_scratch(config: Settings, renderer: Renderer, issue, person: Recipient) -> bytes:
    """One recipient's message the straightforward way, with the same headers and values."""
    rendered = renderer.render(issue)
    links = Links(config.base_url, Tokens(config.newsletter.secret))
    unsubscribe = links.unsubscribe(ISSUE_ID, person.subscriber_id)
    html_values, text_values = rendered.slot_values(
        unsubscribe_url=unsubscribe,
        view_url=links.issue_page(issue.slug),
        link_urls=[links.click(ISSUE_ID, person.subscriber_id, n) for n in range(len(rendered.links))],
        open_pixel_url=links.open_pixel(ISSUE_ID, person.subscriber_id),
    )
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = config.newsletter.from_
    message["Reply-To"] = config.newsletter.reply_to
    message["To"] = f"{person.name} <{person.email}>"
    message["Subject"] = issue.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{ISSUE_ID}.{person.subscriber_id}.{ISSUE_UID}@example.com>"
    message["List-Unsubscribe"] = f"<{unsubscribe}>, <mailto:digest@example.com?subject=unsubscribe>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["List-Id"] = f"{config.newsletter.name} <default.example.com>"
    message["Feedback-ID"] = f"{issue.slug}:default:newsletter:example.com"
    message.set_content(rendered.text.fill(text_values), cte="base64")
    message.add_alternative(rendered.html.fill(html_values), subtype="html", cte="base64")
    return message.as_bytes()


def per_call(function, repeat: int = 300) -> float:
    """Microseconds per call, best of 20 rounds."""
    best = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        best = min(best, (time.perf_counter() - started) / repeat)
    return best * 1e6


def breakdown(factory: MessageFactory, person: Recipient) -> list[tuple[str, float]]:
    """Where one build's time goes (private parts of MessageFactory, timed one by one)."""
    tokens = factory.links.tokens
    html_values, text_values = factory._slot_values(person.subscriber_id)
    count = len(factory.rendered.links)
    legacy = tokens._legacy_macs
    head = struct.Struct(">BBIQH").pack

    def version_1_tokens() -> None:
        # What every message paid before one MAC per message: an HMAC-SHA256 per token.
        for purpose, link in [(Purpose.UNSUBSCRIBE, 0), (Purpose.OPEN, 0)] + [(Purpose.CLICK, n) for n in range(count)]:
            claim = head(1, purpose, ISSUE_ID, person.subscriber_id, link)
            legacy[purpose](claim)

    rows = [
        ("whole build", per_call(lambda: factory.build(person))),
        (
            f"  all tokens: 1 MAC for 2 + {count} (sign_message)",
            per_call(lambda: tokens.sign_message(ISSUE_ID, person.subscriber_id, count)),
        ),
        ("  all slot values (tokens, URLs, pixel)", per_call(lambda: factory._slot_values(person.subscriber_id))),
        ("  HTML part: fill + base64 around slots", per_call(lambda: factory._html.encode(html_values))),
        ("    of which fill_bytes (join ~80 KB)", per_call(lambda: factory._html.slotted.fill_bytes(html_values))),
        ("  text part", per_call(lambda: factory._text.encode(text_values))),
        (f"old scheme: {count + 2} HMAC-SHA256 MACs alone", per_call(version_1_tokens)),
        ("one SHA-256 of 16 bytes", per_call(lambda: hashlib.sha256(b"0123456789abcdef").digest(), 5000)),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per factory pass")
    parser.add_argument("--scratch", type=int, default=40, help="messages built from scratch")
    args = parser.parse_args()

    config = settings()
    renderer = Renderer(config)
    path = SEED if SEED.is_file() else DIGEST
    issue = load_issue(path, default_language="zh-CN")
    started = time.perf_counter()
    rendered = renderer.render(issue)
    render_ms = (time.perf_counter() - started) * 1000
    factory = factory_for(config, rendered)
    people = recipients(args.messages)
    sample = factory.build(people[0]).data

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; one thread")
    print(
        f"{path.name}: {len(rendered.links)} tracked links, HTML {len(rendered.html.marked().encode()) / 1024:.1f} KB,"
        f" one message {len(sample) / 1024:.1f} KB; one render (Jinja+MJML+inline+text+web) {render_ms:.1f} ms"
    )

    # Sanity: both ways make the same HTML for a recipient (the tests hold this byte for byte).
    fast, slow = (
        BytesParser(policy=policy.default)
        .parsebytes(data)
        .get_body(("html",))
        .get_content()
        .replace("\r\n", "\n")
        .rstrip("\n")
        for data in (factory.build(people[3]).data, from_scratch(config, renderer, issue, people[3]))
    )
    assert fast == slow, "the two ways disagree"

    fast_rate = rate_of(lambda p: factory.build(p), people)
    scratch_people = recipients(args.scratch, start=10_000_000)
    scratch_rate = rate_of(lambda p: from_scratch(config, renderer, issue, p), scratch_people, rounds=3)
    print()
    print(f"{'':34s}{'CPU best':>12s}{'CPU median':>12s}{'wall best':>12s}{'wall median':>12s}")
    for label, rate in (
        ("MessageFactory.build  (msgs/s)", fast_rate),
        ("from scratch          (msgs/s)", scratch_rate),
    ):
        print(
            f"{label:34s}{rate['cpu_best']:12,.1f}{rate['cpu_median']:12,.1f}"
            f"{rate['wall_best']:12,.1f}{rate['wall_median']:12,.1f}"
        )
    ratio = fast_rate["cpu_median"] / scratch_rate["cpu_median"]
    print(f"{'speed-up (CPU medians)':34s}{ratio:11,.0f}x")
    print(
        f"goal >= 15,000 messages per CPU-second: {'met' if fast_rate['cpu_median'] >= 15_000 else 'MISSED'}"
        f" ({fast_rate['cpu_median']:,.0f}); from scratch {ratio:,.0f}x slower;"
        f" load average now {os.getloadavg()[0]:.1f}"
    )

    print()
    print("MERGE_MARGIN_LINES (dynamic runs closer than this many base64 lines are encoded as one);")
    print("time to encode both parts of one message, best of 25 rounds interleaved across margins:")
    html_values, text_values = factory._slot_values(people[7].subscriber_id)
    sample_html, sample_text = factory._slot_values(0)
    html_text = message_module._canonical(rendered.html)
    text_text = message_module._canonical(rendered.text)
    margins = (0, 1, 2, 3, 4, 6, 8, 12)
    layouts = {
        margin: (
            message_module._Base64Layout(html_text, sample_html, margin=margin),
            message_module._Base64Layout(text_text, sample_text, margin=margin),
        )
        for margin in margins
    }
    best = {margin: float("inf") for margin in margins}
    for _ in range(25):
        # Interleaved, so a burst of other work on the machine does not land on one margin.
        for margin, (html_layout, text_layout) in layouts.items():
            assert html_layout.encode(html_values) == factory._html.encode(html_values)
            started = time.perf_counter()
            for _ in range(200):
                html_layout.encoded_pieces(html_values)
                text_layout.encoded_pieces(text_values)
            best[margin] = min(best[margin], (time.perf_counter() - started) / 200 * 1e6)
    for margin, (html_layout, _) in layouts.items():
        dynamic = sum(piece[1] - piece[0] for piece in html_layout.pieces if type(piece) is tuple)
        runs = sum(type(piece) is tuple for piece in html_layout.pieces)
        marker = " (current)" if margin == message_module.MERGE_MARGIN_LINES else ""
        print(
            f"  margin {margin:2d}: {runs:3d} HTML runs, {dynamic / 1024:5.1f} KB re-encoded, {best[margin]:6.1f} us{marker}"
        )
    winner = min(best, key=best.get)
    print(f"  best: {winner}")

    print()
    print("where one build goes (microseconds of wall time, best of 20 rounds):")
    for label, micros in breakdown(factory, people[7]):
        print(f"  {label:44s}{micros:8.1f}")


if __name__ == "__main__":
    main()
