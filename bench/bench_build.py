"""Benchmark: build the seed issue in-process, with a per-stage breakdown and the HTML size.

    .venv/bin/python bench/bench_build.py                 # the seed, 200 runs
    (without ../shared/seeds beside the clone: our full-size fixture tests/fixtures/digest/2026-01-22.md)
    .venv/bin/python bench/bench_build.py --runs 50 issues/2026-11-30.md

"Full build" is what `newsletter build` does between reading the file and writing the three
files: parse -> render (email HTML via Jinja2 -> MJML -> css-inline, text, web) -> fill the
slots with preview values.  It is timed as a whole; the stages are then timed one by one
with the renderer's own stage methods (private, used here on purpose) so their medians can
be compared with the whole.  The first build in the process (template compilation, lazy
imports) is reported apart from the steady state.  Goals: full build <= 5 ms of CPU (median), seed email
HTML <= 85 KB.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = REPO.parent / "shared" / "seeds" / "000_31559cfeefac81fc.txt"
# Our own issue of the same size and format, for a clone with no shared/ beside it.
DIGEST = REPO / "tests" / "fixtures" / "digest" / "2026-01-22.md"
GOAL_MS = 5.0  # issue 15
# The stages are timed with one fixed slot nonce (Renderer.render draws a random one).
NONCE = "0123456789abcdef"
GOAL_KB = 85.0


def median_ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"{statistics.median(samples) * 1000:7.2f} ms  (p90 {p90 * 1000:6.2f}, min {ordered[0] * 1000:6.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "issue",
        nargs="?",
        type=Path,
        default=SEED if SEED.is_file() else DIGEST,
        help="issue file (default: the seed, or tests/fixtures/digest/2026-01-22.md where it is absent)",
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--config", type=Path, default=REPO / "newsletter.toml")
    args = parser.parse_args()

    started = time.perf_counter()
    from newsletter.compose.checks import sized_html
    from newsletter.compose.issue.parse import load_issue
    from newsletter.compose.render import (
        EMAIL_TEMPLATE,
        TEXT_TEMPLATE,
        WEB_TEMPLATE,
        Renderer,
        _LinkRegistry,
    )
    from newsletter.config import load_settings

    imported = time.perf_counter()
    settings = load_settings(args.config, environ={})
    renderer = Renderer(settings)

    def full_build():
        issue = load_issue(args.issue, default_language=settings.newsletter.language)
        rendered = renderer.render(issue)
        rendered.preview(settings)
        return rendered

    first_start = time.perf_counter()
    rendered = full_build()
    first = time.perf_counter() - first_start

    names = ("parse", "jinja email", "mjml", "css inline", "text", "web", "fill")
    # Wall time, and this thread's CPU time: on a shared machine the CPU time is the figure
    # that other processes' load does not inflate (it still counts cache misses they cause).
    stages = {name: [] for name in names}
    stages_cpu = {name: [] for name in names}
    whole: list[float] = []
    whole_cpu: list[float] = []
    for _ in range(args.runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        full_build()
        whole.append(time.perf_counter() - t0)
        whole_cpu.append(time.thread_time() - c0)

        marks = [(time.perf_counter(), time.thread_time())]
        issue = load_issue(args.issue, default_language=settings.newsletter.language)
        marks.append((time.perf_counter(), time.thread_time()))
        mjml_source = renderer._template(EMAIL_TEMPLATE, issue, _LinkRegistry(track=True, nonce=NONCE), NONCE)
        marks.append((time.perf_counter(), time.thread_time()))
        compiled = renderer._mjml(mjml_source)
        marks.append((time.perf_counter(), time.thread_time()))
        renderer._inline(compiled)
        marks.append((time.perf_counter(), time.thread_time()))
        renderer._template(TEXT_TEMPLATE, issue, _LinkRegistry(track=False, nonce=NONCE), NONCE)
        marks.append((time.perf_counter(), time.thread_time()))
        renderer._template(WEB_TEMPLATE, issue, _LinkRegistry(track=False, nonce=NONCE), NONCE)
        marks.append((time.perf_counter(), time.thread_time()))
        rendered.preview(settings)
        marks.append((time.perf_counter(), time.thread_time()))
        for index, name in enumerate(names):
            stages[name].append(marks[index + 1][0] - marks[index][0])
            stages_cpu[name].append(marks[index + 1][1] - marks[index][1])

    email_html, email_text = rendered.preview(settings)
    html_kb = len(email_html.encode()) / 1024
    received_kb = len(sized_html(rendered, settings).encode()) / 1024
    print(f"issue: {args.issue} ({len(rendered.issue.entries)} entries, {len(rendered.links)} tracked links)")
    print(
        f"runs: {args.runs}; imports {1000 * (imported - started):.0f} ms; first build {first * 1000:.1f} ms (templates compiled, lazy imports)"
    )
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (wall times include waiting for a core)")
    print(f"full build (parse -> html + text + web -> preview fill)   goal <= {GOAL_MS:.0f} ms")
    print(f"  wall {median_ms(whole)}")
    print(f"  cpu  {median_ms(whole_cpu)}")
    print(f"  {'stage':<12} {'wall':<42} cpu")
    for name in names:
        print(f"  {name:<12} {median_ms(stages[name])}   {statistics.median(stages_cpu[name]) * 1000:6.2f} ms")
    print(
        f"  sum of stage medians: wall {sum(statistics.median(s) for s in stages.values()) * 1000:.2f} ms, "
        f"cpu {sum(statistics.median(s) for s in stages_cpu.values()) * 1000:.2f} ms"
    )
    print(
        f"email.html {html_kb:.1f} KB with preview values, {received_kb:.1f} KB as received (tracked links, pixel)"
        f"   goal <= {GOAL_KB:.0f} KB"
    )
    print(
        f"email.txt {len(email_text.encode()) / 1024:.1f} KB; web.html {len(rendered.web_html.encode()) / 1024:.1f} KB"
    )


if __name__ == "__main__":
    main()
