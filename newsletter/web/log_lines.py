"""Log lines of the web app: one line each, and never a capability.

    log = web_logger(__name__)

Request data reaches log messages (a path, a TopicArn, an error naming either).  A CR or
LF in it would start a line of the attacker's choosing in the log, so both are written as
`\\r` and `\\n`.  The unsubscribe, confirmation, pixel and click URLs carry tokens that act
for a reader (README, "The web side"); a log line keeps their route and drops the token.
"""

from __future__ import annotations

import logging
import re

# /u/TOKEN, /confirm/TOKEN, /o/TOKEN.gif, /c/TOKEN: whatever follows the route up to the next
# separator is the token.
_TOKEN_IN_PATH = re.compile(r"(/(?:u|o|c|confirm)/)[^\s/?#\"']+")


def one_line(text: str) -> str:
    """`text` with CR and LF escaped and tokens in our URLs cut out."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return _TOKEN_IN_PATH.sub(r"\1[token]", text)


class OneLineWithoutTokens(logging.Filter):
    """Rewrites each record's message with `one_line` (the traceback of exc_info, which is
    ours, is left as it is)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = one_line(message)
        if safe != message:
            record.msg, record.args = safe, None
        return True


def web_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)` with the filter (a logger's filters apply to the records it
    creates, not to its children's, so each module asks for its own)."""
    logger = logging.getLogger(name)
    if not any(isinstance(existing, OneLineWithoutTokens) for existing in logger.filters):
        logger.addFilter(OneLineWithoutTokens())
    return logger
