"""Benchmark: build the seed issue in-process, with a per-stage breakdown and the HTML size.

    .venv/bin/python bench/bench_build.py                 # the seed, 200 runs
    .venv/bin/python bench/bench_build.py --runs 50 issues/2026-11-30.md

"Full build" is what `newsletter build` does between reading the file and writing the three
files: parse -> render (email HTML via Jinja2 -> MJML -> css-inline, text, web) -> fill the
slots with preview values.  It is timed as a whole; the stages are then timed one by one
with the renderer's own stage methods (private, used here on purpose) so their medians can
be compared with the whole.  The first build in the process (template compilation, lazy
imports) is reported apart from the steady state.  Goals: full build <= 10 ms, seed email
HTML <= 85 KB.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED = REPO.parent / "shared" / "seeds" / "000_31559cfeefac81fc.txt"
GOAL_MS = 10.0
GOAL_KB = 85.0


def median_ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"{statistics.median(samples) * 1000:7.2f} ms  (p90 {p90 * 1000:6.2f}, min {ordered[0] * 1000:6.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("issue", nargs="?", type=Path, default=SEED, help="issue file (default: the seed)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--config", type=Path, default=REPO / "newsletter.toml")
    args = parser.parse_args()

    started = time.perf_counter()
    from newsletter.checks import sized_html
    from newsletter.config import load_settings
    from newsletter.issue import load_issue
    from newsletter.render import EMAIL_TEMPLATE, TEXT_TEMPLATE, WEB_TEMPLATE, Renderer, _LinkRegistry

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

    stages: dict[str, list[float]] = {name: [] for name in ("parse", "jinja email", "mjml", "css inline", "text", "web", "fill")}
    whole: list[float] = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        full_build()
        whole.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        issue = load_issue(args.issue, default_language=settings.newsletter.language)
        t1 = time.perf_counter()
        mjml_source = renderer._template(EMAIL_TEMPLATE, issue, _LinkRegistry(track=True))
        t2 = time.perf_counter()
        compiled = renderer._mjml(mjml_source)
        t3 = time.perf_counter()
        renderer._inline(compiled)
        t4 = time.perf_counter()
        renderer._template(TEXT_TEMPLATE, issue, _LinkRegistry(track=False))
        t5 = time.perf_counter()
        renderer._template(WEB_TEMPLATE, issue, _LinkRegistry(track=False))
        t6 = time.perf_counter()
        rendered.preview(settings)
        t7 = time.perf_counter()
        for name, (a, b) in zip(stages, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6), (t6, t7)]):
            stages[name].append(b - a)

    email_html, email_text = rendered.preview(settings)
    html_kb = len(email_html.encode()) / 1024
    received_kb = len(sized_html(rendered, settings).encode()) / 1024
    print(f"issue: {args.issue} ({len(rendered.issue.entries)} entries, {len(rendered.links)} tracked links)")
    print(f"runs: {args.runs}; imports {1000 * (imported - started):.0f} ms; first build {first * 1000:.1f} ms (templates compiled, lazy imports)")
    print(f"full build (parse -> html + text + web -> preview fill): {median_ms(whole)}   goal <= {GOAL_MS:.0f} ms")
    for name, samples in stages.items():
        print(f"  {name:<12} {median_ms(samples)}")
    print(f"  sum of stage medians {sum(statistics.median(s) for s in stages.values()) * 1000:.2f} ms")
    print(f"email.html {html_kb:.1f} KB with preview values, {received_kb:.1f} KB as received (tracked links, pixel)"
          f"   goal <= {GOAL_KB:.0f} KB")
    print(f"email.txt {len(email_text.encode()) / 1024:.1f} KB; web.html {len(rendered.web_html.encode()) / 1024:.1f} KB")


if __name__ == "__main__":
    main()
