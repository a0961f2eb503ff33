"""A bar chart of opens and clicks over time, as inline SVG made on the server.

No JavaScript and no chart library: the stats page must work from a locked-down admin
browser and show the same thing printed.  The SVG carries a <title> and <desc> (referenced
by aria-labelledby, the pattern the W3C's SVG accessibility notes recommend for role="img"),
and each bar a <title> that browsers show on hover; the page puts the numbers in a table too.
Colours come from the page's CSS variables, so the chart follows its light and dark themes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from newsletter.stats import TimelineHour

# Drawn in a 520-unit-wide box and scaled to the page: at phone width (about 340 px of
# content) 13-unit text still shows at 9 px or more, at desktop width at about 15 px.
WIDTH = 520
HEIGHT = 270
FONT_SIZE = 13
MARGIN_LEFT = 54
MARGIN_RIGHT = 10
MARGIN_TOP = 56
MARGIN_BOTTOM = 30
# Enough bars to see the shape of the first day hour by hour, few enough to stay readable
# at phone width; longer spans are grouped into bins of several hours.
MAX_BINS = 48
MIN_SPAN_HOURS = 24


@dataclass(frozen=True)
class Bin:
    first_hour: int
    hours: int
    opens: int
    machine_opens: int
    clicks: int
    machine_clicks: int


def bins(timeline: Sequence[TimelineHour]) -> list[Bin]:
    """The timeline grouped into at most MAX_BINS equal bins covering at least a day."""
    last = max((point.hour for point in timeline), default=0)
    span = max(MIN_SPAN_HOURS, last + 1)
    width = math.ceil(span / MAX_BINS)
    count = math.ceil(span / width)
    sums = [[0, 0, 0, 0] for _ in range(count)]
    for point in timeline:
        cell = sums[max(0, point.hour) // width]
        cell[0] += point.opens
        cell[1] += point.machine_opens
        cell[2] += point.clicks
        cell[3] += point.machine_clicks
    return [Bin(index * width, width, *cell) for index, cell in enumerate(sums)]


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def grid_step(top: int) -> int:
    """A whole-number spacing giving two to five grid lines above zero."""
    for step in (1, 2, 5):
        if top % step == 0 and top // step <= 5:
            return step
    for divisions in (5, 4, 2):
        if top % divisions == 0:
            return top // divisions
    return top  # pragma: no cover - nice_ceiling's values always divide


def timeline_svg(timeline: Sequence[TimelineHour], words: Mapping[str, str]) -> str:
    """The chart as an <svg> element (a string of markup, every text escaped).

    `words` supplies: chart_title, chart_desc (formatted with opens, clicks, hours),
    opens, clicks, people, machines, hour_label (formatted with hour), bar_title
    (formatted with start, end, opens, machine_opens, clicks, machine_clicks).
    """
    grouped = bins(timeline)
    tallest = max((max(b.opens + b.machine_opens, b.clicks + b.machine_clicks) for b in grouped), default=0)
    top = nice_ceiling(tallest)
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    slot = plot_width / len(grouped)
    bar = max(1.0, slot * 0.38)
    baseline = MARGIN_TOP + plot_height

    def y(value: int) -> float:
        return baseline - plot_height * value / top

    total_opens = sum(p.opens + p.machine_opens for p in timeline)
    total_clicks = sum(p.clicks + p.machine_clicks for p in timeline)
    span_hours = grouped[-1].first_hour + grouped[-1].hours
    title = words["chart_title"]
    desc = words["chart_desc"].format(opens=total_opens, clicks=total_clicks, hours=span_hours)

    out = [
        (
            f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="100%" role="img" aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet">'
        ),
        f'<title id="chart-title">{escape(title)}</title>',
        f'<desc id="chart-desc">{escape(desc)}</desc>',
        (
            "<style>"
            f".chart text{{font:{FONT_SIZE}px system-ui,sans-serif;fill:var(--muted,#57606a)}}"
            ".chart .grid{stroke:var(--line,#d0d7de);stroke-width:1}"
            ".chart .opens{fill:var(--accent,#1a56db)}"
            ".chart .clicks{fill:#d97706}"
            ".chart .machine{opacity:.35}"
            "</style>"
        ),
    ]
    # Horizontal grid lines at whole numbers, with their values.
    step = grid_step(top)
    for value in range(0, top + 1, step):
        line_y = y(value)
        out.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{line_y:.1f}" y2="{line_y:.1f}"/>'
        )
        out.append(f'<text x="{MARGIN_LEFT - 6}" y="{line_y + 4:.1f}" text-anchor="end">{value}</text>')

    for index, group in enumerate(grouped):
        left = MARGIN_LEFT + index * slot + (slot - 2 * bar) / 2
        tooltip = words["bar_title"].format(
            start=group.first_hour,
            end=group.first_hour + group.hours,
            opens=group.opens,
            machine_opens=group.machine_opens,
            clicks=group.clicks,
            machine_clicks=group.machine_clicks,
        )
        out.append(f"<g><title>{escape(tooltip)}</title>")
        for offset, kind, people, machines in (
            (0.0, "opens", group.opens, group.machine_opens),
            (bar, "clicks", group.clicks, group.machine_clicks),
        ):
            x = left + offset
            if people:
                out.append(_rect(x, y(people), bar, baseline - y(people), kind))
            if machines:
                out.append(_rect(x, y(people + machines), bar, y(people) - y(people + machines), f"{kind} machine"))
        out.append("</g>")

    # Hour labels under the axis: at most six, on whole bins, so they stay apart at phone
    # width even in Chinese ("12 小时").
    label_every = max(1, math.ceil(len(grouped) / 6))
    for index in range(0, len(grouped), label_every):
        x = MARGIN_LEFT + index * slot
        label = words["hour_label"].format(hour=grouped[index].first_hour)
        out.append(f'<text x="{x:.1f}" y="{baseline + 16}">{escape(label)}</text>')

    # Legend above the plot: opens on the first line, clicks on the second, in two
    # aligned columns (people, machines).
    entries = [
        [(kind, machine, f"{name} · {who}") for machine, who in ((False, words["people"]), (True, words["machines"]))]
        for kind, name in (("opens", words["opens"]), ("clicks", words["clicks"]))
    ]
    second_column = MARGIN_LEFT + 14 + max(_text_width(row[0][2]) for row in entries) + 18
    for row, line in enumerate(entries):
        legend_y = 8 + row * (FONT_SIZE + 6)
        for legend_x, (kind, machine, text) in zip((float(MARGIN_LEFT), second_column), line, strict=False):
            out.append(_rect(legend_x, legend_y, 10, 10, f"{kind} machine" if machine else kind))
            out.append(f'<text x="{legend_x + 14:.1f}" y="{legend_y + 10}">{escape(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def _text_width(text: str) -> float:
    # An estimate: CJK characters are about a full em wide, Latin ones a little over half.
    # Only the legend needs it, to space its entries.
    return sum(FONT_SIZE * (1.0 if ord(character) >= 0x2E80 else 0.6) for character in text)


def _rect(x: float, y: float, width: float, height: float, css: str) -> str:
    return f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}"/>'
