"""Where the sample issues live, and a second, naive reading of the seed format.

`read_plainly` reads an issue written exactly in the seed's regular shape (one field per
line) with nothing but string operations.  The parser tests compare the real parser with
it field by field, so "every field of every entry" is checked without copying pages of
Chinese text into the tests; spot checks against literal values keep this reader honest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures" / "issues"
EXAMPLE = REPO / "issues" / "2026-11-30.md"
EXAMPLE_CONFIG = REPO / "newsletter.toml"
# Our own full-size issue in the seed's format: 10 entries in four categories, 12 sources
# and 18 related links (30 links), about 78 KB of email HTML.  Every full-size test uses it.
DIGEST = TESTS / "fixtures" / "digest" / "2026-01-22.md"
# The project's seed issue, where shared/ lies beside the clone (CI lays a copy there, as it
# is beside the work tree).  Tests of it are an extra, marked `seed`: conftest.py deselects
# them when the file is absent, so a bare clone runs everything else with nothing skipped.
SEED = REPO.parent / "shared" / "seeds" / "000_31559cfeefac81fc.txt"


def seed_case(value: object = SEED) -> object:
    """A parameter (the seed's path, or a name standing for it) marked `seed`: it runs only
    where the seed is."""
    return pytest.param(value, id="seed", marks=pytest.mark.seed)


LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)\)")
SEPARATORS = re.compile(r"[、,，|｜]")


@dataclass
class PlainItem:
    label: str
    text: str
    children: list[PlainItem] = field(default_factory=list)


@dataclass
class PlainEntry:
    title: str
    category: str = ""
    sources: list[tuple[str, str | None]] = field(default_factory=list)
    insight: str = ""
    summary: list[PlainItem] = field(default_factory=list)


@dataclass
class PlainIssue:
    title: str
    entries: list[PlainEntry]
    related: list[tuple[str, str]]


def unmark(text: str) -> str:
    """Inline Markdown to the words it shows: links to their text, no `*` or backticks."""
    return LINK.sub(r"\1", text).replace("**", "").replace("*", "").replace("`", "").strip()


def after_label(line: str) -> str:
    return re.split(r"[:：]\s*(?:\*\*)?\s*", line, maxsplit=1)[1].strip()


def read_plainly(path: Path) -> PlainIssue:
    title = ""
    entries: list[PlainEntry] = []
    related: list[tuple[str, str]] = []
    in_related = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            title = line[2:].strip()
        elif line.startswith("## "):
            in_related = line[3:].strip() == "其他相关资讯"
            if not in_related:
                entries.append(PlainEntry(line[3:].strip()))
        elif in_related and line.startswith("- "):
            text, url = LINK.search(line).groups()
            related.append((text, url))
        elif line.startswith("> **分类"):
            entries[-1].category = after_label(line)
        elif line.startswith("> **来源"):
            rest = after_label(line)
            for match in re.finditer(r"\[([^\]]*)\]\(([^)\s]*)\)|([^\[]+)", rest):
                if match.group(1) is not None:
                    entries[-1].sources.append((match.group(1), match.group(2)))
                else:
                    for word in SEPARATORS.split(match.group(3)):
                        if word.strip():
                            entries[-1].sources.append((word.strip(), None))
        elif line.startswith("**核心洞察"):
            entries[-1].insight = unmark(after_label(line))
        elif re.match(r"\s*- ", line) and entries:
            label, text = re.split(r"[:：]", line.strip()[2:], maxsplit=1)
            item = PlainItem(label.strip(), unmark(text))
            if line.startswith("  "):
                entries[-1].summary[-1].children.append(item)
            else:
                entries[-1].summary.append(item)
    return PlainIssue(title, entries, related)
