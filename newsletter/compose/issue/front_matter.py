"""The front matter of an issue file and the issue's date: the part of the file that is not
Markdown.  Pure.

    front, body, offset = split_front_matter(source, error)
    date = issue_date(front, title, title_line, source=source, stem=path.stem, error=error)

`error(message, line)` makes the IssueError that names the file; `offset` is how many lines
of the file come before `body`, so the Markdown parser's lines can be given in the file's.
The date is the front matter's `date:`, else one in the title (2026年01月22日, 2026-01-22 or
2026/01/22), else one in the file's name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from newsletter.errors import IssueError

FRONT_MATTER_KEYS = ("subject", "preheader", "date", "language", "list")
DATE_PATTERNS = (
    re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日"),
    re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"),
    re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})"),
)

ErrorAt = Callable[[str, int | None], IssueError]


def split_front_matter(source: str, error: ErrorAt) -> tuple[dict, str, int]:
    """(the front matter's keys, the Markdown after it, the lines before that Markdown)."""
    # Most issues have none: the first line decides before the whole file is split.
    first_end = source.find("\n")
    if (source if first_end < 0 else source[:first_end]).strip() != "---":
        return {}, source, 0
    lines = source.split("\n")
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            break
    else:
        raise error("front matter opened with '---' is never closed; add a '---' line after it", 1)
    import yaml  # here, not at the top: most issues have no front matter

    text = "\n".join(lines[1:index])
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise error(f"front matter is not valid YAML ({problem}); write 'key: value' lines", line) from None
    except RecursionError:
        # PyYAML composes nested sequences and mappings recursively.
        raise error("front matter nests too deeply; write 'key: value' lines", 2) from None
    except ValueError as err:
        # PyYAML reads `2026-13-01` as a timestamp and raises a bare ValueError, without a
        # position: find the impossible date's line (date_in raises for it).
        for number, line_text in enumerate(lines[1:index], start=2):
            date_in(line_text, number, error)
        raise error(f"front matter has an impossible value ({err})", 1) from None
    if not isinstance(data, dict):
        raise error("front matter must be 'key: value' lines", 2)
    for key, value in data.items():
        line = _line_of_key(lines[1:index], str(key)) + 1
        if key not in FRONT_MATTER_KEYS:
            raise error(f"unknown front matter key {key!r}; known keys: {', '.join(FRONT_MATTER_KEYS)}", line)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise error(f"front matter key {key!r} is empty; give it a value or remove the line", line)
        if not isinstance(value, (str, int, float, dt.date)):
            raise error(f"front matter key {key!r} must be a single value", line)
    return data, "\n".join(lines[index + 1 :]), index + 1


def issue_date(front: dict, title: str, title_line: int, *, source: str, stem: str, error: ErrorAt) -> dt.date:
    value = front.get("date")
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if value is not None:
        line = _line_of_key(source.split("\n"), "date")  # already 1-based in the whole file
        found = date_in(str(value), line, error)
        if found is None:
            raise error(f"front matter date {value!r} is not a date like 2026-01-22", line)
        return found
    found = date_in(title, title_line, error) or date_in(stem, title_line, error)
    if found is None:
        raise error(
            "no issue date; put it in the title (2026年01月22日 or 2026-01-22) or as 'date:' in the front matter",
            title_line,
        )
    return found


def date_in(text: str, line: int, error: ErrorAt) -> dt.date | None:
    for pattern in DATE_PATTERNS:
        match = pattern.search(text)
        if match:
            try:
                return dt.date(*(int(part) for part in match.groups()))
            except ValueError:
                raise error(f"{match.group(0)!r} is not a real date", line) from None
    return None


def _line_of_key(lines: list[str], key: str) -> int:
    for index, line in enumerate(lines):
        if line.split(":", 1)[0].strip() == key:
            return index + 1
    return 1
