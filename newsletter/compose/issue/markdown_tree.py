"""The Rust Markdown parser's tree, with its panics turned into a located error.

    tree = markdown_tree(parser, text)      # MarkdownPanic(line) instead of a PanicException

markdown-it-pyrs 0.4 (markdown-it 0.6) panics on some inputs, found by fuzzing: a link
bracket followed by a code span that never closes (`[a `b`) indexes past the end of its
delimiter list (generics/inline/code_pair.rs).  PyO3 raises the panic as `PanicException`,
a BaseException, which no `except Exception` catches, and the Rust panic hook writes its
message (and with RUST_BACKTRACE a backtrace) straight to file descriptor 2.  So the call
runs with descriptor 2 pointed at a scratch file: after a panic what Rust wrote is dropped
and the caller gets the line; otherwise whatever was written there goes on to stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from typing import Any

_LOCK = threading.Lock()
_scratch: Any = None


class MarkdownPanic(Exception):
    """The parser failed on this text; `line` (1-based, in the text) is the first line at
    which it does."""

    def __init__(self, line: int) -> None:
        self.line = line
        super().__init__(f"the Markdown parser fails at line {line}")


def markdown_tree(parser: Any, text: str) -> Any:
    tree, failed = _tree_quietly(parser, text)
    if failed:
        raise MarkdownPanic(_first_failing_line(parser, text))
    return tree


def _tree_quietly(parser: Any, text: str) -> tuple[Any, bool]:
    """`parser.tree(text)` and whether it panicked."""
    global _scratch
    with _LOCK:
        if _scratch is None:
            _scratch = tempfile.TemporaryFile()  # noqa: SIM115 - open for the process, reused by every parse
        sys.stderr.flush()
        saved = os.dup(2)
        _scratch.seek(0)
        _scratch.truncate()
        os.dup2(_scratch.fileno(), 2)
        tree, failed = None, False
        try:
            tree = parser.tree(text)
        except BaseException as err:
            if type(err).__name__ != "PanicException":
                raise
            failed = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if not failed and _scratch.tell():
            _scratch.seek(0)
            os.write(2, _scratch.read())
        return tree, failed


def _first_failing_line(parser: Any, text: str) -> int:
    """The shortest prefix of whole lines that still fails, by bisection."""
    lines = text.split("\n")
    low, high = 1, len(lines)
    while low < high:
        middle = (low + high) // 2
        if _tree_quietly(parser, "\n".join(lines[:middle]))[1]:
            high = middle
        else:
            low = middle + 1
    return low
