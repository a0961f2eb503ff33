"""Conditional GET for the public archive: `ETag` and `Last-Modified` on every answer, and
`304 Not Modified` when the reader already holds the current version.

Feed readers poll `/feed.xml` every few minutes; with validators they get 304 and no body
until an issue goes out (RFC 9110, section 13: If-None-Match is evaluated first and, when it
is present, If-Modified-Since is ignored; section 8.8.3 for entity tags).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response


def conditional(
    request: Request,
    body: bytes,
    *,
    media_type: str,
    last_modified: datetime | None,
    headers: dict[str, str],
) -> Response:
    """`body` with its validators, or an empty 304 when the request's validators match it."""
    tag = entity_tag(body)
    validators = {"ETag": tag}
    if last_modified is not None:
        # HTTP dates have whole seconds (RFC 9110, section 5.6.7).
        validators["Last-Modified"] = format_datetime(last_modified.astimezone(UTC).replace(microsecond=0), usegmt=True)
    answer_headers = {**headers, **validators}
    if _not_modified(request, tag, last_modified):
        return Response(status_code=304, headers=answer_headers)
    return Response(body, media_type=media_type, headers=answer_headers)


def entity_tag(body: bytes) -> str:
    """A strong entity tag: the same bytes always get the same tag, other bytes another."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _not_modified(request: Request, tag: str, last_modified: datetime | None) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        # Weak comparison (section 13.1.2): a W/ prefix added by a proxy still matches.
        offered = {candidate.strip().removeprefix("W/") for candidate in if_none_match.split(",")}
        return "*" in offered or tag in offered
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None or last_modified is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # section 13.1.3: an invalid date is ignored
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return last_modified.astimezone(UTC).replace(microsecond=0) <= since
