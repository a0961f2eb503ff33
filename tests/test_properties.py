"""Properties over what users hand us (Hypothesis): whatever the bytes of an issue file, a
subscriber CSV or a newsletter.toml, the outcome is a result or a NewsletterError (one line
for the CLI), never another exception.

The examples are built from the pieces each format is made of, so most of them get deep
into the parsers.  CI runs the `ci` profile: derandomised (the same examples on every run),
bounded, no example database; HYPOTHESIS_PROFILE=explore searches further and at random.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from newsletter.audience.csv_import import import_csv
from newsletter.compose.checks import check_rendered
from newsletter.compose.issue.parse import load_issue
from newsletter.compose.render import Renderer
from newsletter.config import Settings, load_settings, replace
from newsletter.errors import NewsletterError
from newsletter.store import Store

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("explore", deadline=None, max_examples=5000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nl-properties-") as directory:
        yield Path(directory)


# ---- issue files ---------------------------------------------------------------------------

MARKDOWN_PIECES = [
    "# ",
    "## ",
    "### ",
    "\n",
    "\n\n",
    "[",
    "]",
    "(",
    ")",
    "`",
    "``",
    "```\n",
    "*",
    "**",
    "_",
    "!",
    "> ",
    "- ",
    "  - ",
    "1. ",
    "---\n",
    "***",
    "&#37;",
    "&amp;",
    "&percnt;",
    "&#0;",
    "\\",
    "%%nl:",
    "%",
    "<",
    ">",
    "<b>",
    "https://example.com/a",
    "mailto:x@example.com",
    "](https://example.org/b)",
    "![",
    "](",
    "\t",
    "    ",
    "\r",
    "\r\n",
    " ",
    "|",
    "、",
    "，",
    "：",
    ":",
    "中文",
    "x",
    "2026年11月30日",
    "2026-13-45",
    "{{ x }}",
    "{%",
    "**分类：** ",
    "**来源：** ",
    "**核心洞察：** ",
    "**内容简介：**",
    "> **Category:** ",
    "其他相关资讯",
    "\u200b",
    "\ufeff",
    "\x00",
    "😀",
    "[^1]",
    "[a]: https://example.net/c",
    "<https://example.com>",
]
FRONT_MATTER_PIECES = [
    "subject: ",
    "preheader: ",
    "date: ",
    "language: ",
    "list: ",
    "title: ",
    "x",
    "2026-11-30",
    "'",
    '"',
    "[",
    "]",
    "{",
    "}",
    "- ",
    "\n",
    ": ",
    "&a ",
    "*a",
    "!!python/object:os.system ",
    "|\n  ",
    "en",
    "zh-CN",
    "daily",
    "1",
    "null",
    "%%nl:x%%",
    "\t",
]

markdown = st.lists(st.sampled_from(MARKDOWN_PIECES) | st.text(max_size=4), max_size=40).map("".join)
front_matter = st.lists(st.sampled_from(FRONT_MATTER_PIECES), max_size=12).map("".join)
skeleton = st.sampled_from(["", "# 速递 2026年11月30日\n\n## 一条\n\n", "# Weekly 2026-11-30\n\n## One\n\n"])
issue_texts = st.tuples(st.booleans(), front_matter, skeleton, markdown).map(
    lambda parts: (f"---\n{parts[1]}\n---\n" if parts[0] else "") + parts[2] + parts[3]
)

SETTINGS = replace(Settings(), newsletter={"secret": "properties-" + "s" * 32})
RENDERER = Renderer(SETTINGS)


@given(text=issue_texts)
# Found by fuzzing: markdown-it-pyrs panics on a link bracket before an unclosed code span.
@example(text="# T 2026-11-30\n\n## E\n\n[a `b")
# PyYAML composes recursively.
@example(text="---\nsubject: " + "[" * 5000 + "\n---\n# T 2026-11-30\n\n## E\n\nx")
def test_any_issue_file_parses_or_is_an_issue_error(scratch: Path, text: str):
    path = scratch / "2026-11-30.md"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_issue(path)
    except NewsletterError:
        pass


@settings(max_examples=80)
@given(text=issue_texts)
def test_any_issue_that_parses_renders_and_checks(scratch: Path, text: str):
    path = scratch / "2026-11-30.md"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        issue = load_issue(path)
        rendered = RENDERER.render(issue)
        check_rendered(rendered, SETTINGS)
        rendered.preview(SETTINGS)
    except NewsletterError:
        pass


# ---- subscriber CSV files ------------------------------------------------------------------

CSV_PIECES = [
    b"email",
    b"name",
    b"lists",
    b"tags",
    b"status",
    b"list:daily",
    b"list:",
    b"extra",
    b",",
    b";",
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b'"',
    b'""',
    b"a@example.com",
    b"B@Example.ORG",
    b"x@",
    b"@",
    b"\xe4\xb8\xad",
    b"\xff",
    b"\xfe",
    b"\x00",
    b"\xef\xbb\xbf",
    b"active",
    b"unsubscribed",
    b"bounced",
    b"pending",
    b"daily,weekly",
    b"=1+2",
    b"'=",
    b" ",
    "中文".encode("gbk"),
    b"a" * 70,
    b"\xe2\x80\xa8",
    b"a\rb",
]
csv_cells = st.lists(st.sampled_from(CSV_PIECES) | st.binary(max_size=2), max_size=3).map(b"".join)
csv_rows = st.tuples(
    st.lists(csv_cells, min_size=1, max_size=4).map(b",".join), st.sampled_from([b"\n", b"\r\n", b"\r", b""])
).map(b"".join)
csv_bytes = st.tuples(
    st.sampled_from([b"", b"email\n", b"email,name,lists,status\n", b"\xef\xbb\xbfemail,name,list:daily\n"]),
    st.lists(csv_rows, max_size=8).map(b"".join),
).map(b"".join)


@pytest.fixture(scope="module")
def csv_store(scratch: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{scratch / 'properties.db'}") as store:
        yield store


@given(body=csv_bytes, encoding=st.sampled_from(["utf-8", "gbk", "latin-1", "utf-16", "no-such-codec"]))
# Found by fuzzing: a bare CR in an unquoted cell, then a byte that is not UTF-8.
@example(body=b"email,name\na@example.com,A\rB\nb@example.com,\xff\n", encoding="utf-8")
def test_any_csv_imports_or_is_an_input_error(scratch: Path, csv_store: Store, body: bytes, encoding: str):
    path = scratch / "readers.csv"
    path.write_bytes(body)
    try:
        import_csv(csv_store, path, encoding=encoding)
    except NewsletterError:
        pass


# ---- newsletter.toml -----------------------------------------------------------------------

TOML_SECTIONS = [
    "[newsletter]\n", "[transport]\n", "[transport.smtp]\n", "[lists.daily]\n", "[lists]\n", "[web]\n", "[events]\n",
    "[sending]\n", "[doctor]\n", "[[newsletter]]\n", "[x]\n",
]  # fmt: skip
TOML_KEYS = [
    "name", "from", "base_url", "kind", "secret", "list", "port", "rate", "warmup", "timezone", "topic_arns", "public",
    "nameservers", "admin_password", "x", '"quoted key"', "a.b",
]  # fmt: skip
TOML_VALUES = [
    '"x"', '"smtp"', '"ses"', "1", "-1", "1e999", "nan", "true", "[1, 2]", '["a", "b"]', "{a = 1}",
    '"a <a@example.com>"', '"https://example.com"', '"Asia/Shanghai"', '"Mars/Olympus"', '"daily\\n"', "'''\nx\n'''",
    "1979-05-27", "[" * 3000 + "]" * 3000, "{a = " * 1500 + "1" + "}" * 1500, "[[[", "{", '"', "中文", "\x00", "",
]  # fmt: skip
toml_lines = (
    st.sampled_from(TOML_SECTIONS)
    | st.tuples(st.sampled_from(TOML_KEYS), st.sampled_from(TOML_VALUES)).map(lambda kv: f"{kv[0]} = {kv[1]}\n")
    | st.text(max_size=4)
)
toml_texts = st.lists(toml_lines, max_size=12).map("".join)
ENVIRONMENT = ["NEWSLETTER_SECRET", "NEWSLETTER_BASE_URL", "NEWSLETTER_DATABASE_URL", "NEWSLETTER_ADMIN_PASSWORD"]
environments = st.dictionaries(st.sampled_from(ENVIRONMENT), st.sampled_from(["", "x", "https://e.example.com", "\n"]))


@given(text=toml_texts, environ=environments)
# Found by fuzzing: tomllib recurses once per nesting level.
@example(text="x = " + "[" * 5000 + "]" * 5000 + "\n", environ={})
def test_any_configuration_loads_or_is_a_config_error(scratch: Path, text: str, environ: dict[str, str]):
    path = scratch / "newsletter.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_settings(path, environ=environ)
    except NewsletterError:
        pass
