"""What keeps the public pages safe: form protection (CSRF), rate limits, response headers,
bounded request bodies.

CSRF.  The pages' own forms (unsubscribe / resubscribe buttons, the subscribe form) carry a
hidden `form_token` that must equal a cookie set with the page: a double-submit cookie
(OWASP CSRF cheat sheet).  Another site can make a browser POST to us but can neither read
nor set our cookie, so it cannot make the two match; the cookie is SameSite=Strict, so a
cross-site POST does not even carry it, and on https it has the `__Host-` prefix, which a
sibling subdomain cannot plant.  A request whose Origin is another site, or that the
browser marks `Sec-Fetch-Site: cross-site`, is refused before that.  No server state and no
secret are needed.

The RFC 8058 one-click POST is the exception by design: Gmail and Yahoo send it from their
servers with no cookie and no page, so it cannot carry a form token.  What protects it is
that the unsubscribe URL is itself the capability: a 44-character HMAC-signed token that
only the mailbox it was sent to has seen (newsletter.tokens), so nobody else can forge the
request, and the worst a holder of the token can do is what the recipient asked for.  The
one-click path does nothing but unsubscribe; resubscribing needs the page's form.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_FIELD = "form_token"
COOKIE_NAME = "nl_form"
# Browsers accept the `__Host-` prefix only on Secure cookies with Path=/ and no Domain
# (RFC 6265bis, section 4.1.3.2), which keeps a subdomain from setting it for us.
SECURE_COOKIE_NAME = "__Host-nl_form"
COOKIE_SECONDS = 24 * 3600

# Our forms hold an address and a name; anything larger is not one of them.
MAX_FORM_BYTES = 16 * 1024
# Our largest form has a handful of fields (the preference page: one per list).
MAX_FORM_FIELDS = 50


class FormTooLarge(Exception):
    """A form we refuse to read: 413 when its body is too large, 400 when it holds more
    fields than any form of ours, or a multipart body that does not parse."""

    def __init__(self, status: int = 413) -> None:
        self.status = status
        super().__init__(status)


# ---- CSRF -----------------------------------------------------------------------------


class FormGuard:
    """Issues and checks the double-submit form token (see the module docstring).

    `base_url` is asked on every use: the public origin is configuration, and a test server
    learns its own address only once it listens.
    """

    def __init__(self, base_url: Callable[[], str]) -> None:
        self.base_url = base_url

    @property
    def secure(self) -> bool:
        return self.base_url().startswith("https://")

    @property
    def cookie_name(self) -> str:
        return SECURE_COOKIE_NAME if self.secure else COOKIE_NAME

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url())
        return f"{parts.scheme}://{parts.netloc}".lower()

    def token_for(self, request: Request) -> str:
        """The token for a page's form: the browser's current one if it has a sound one, so
        two open tabs both keep working."""
        current = request.cookies.get(self.cookie_name, "")
        return current if _well_formed(current) else secrets.token_urlsafe(32)

    def set_cookie(self, response: Response, token: str) -> None:
        response.set_cookie(
            self.cookie_name,
            token,
            max_age=COOKIE_SECONDS,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def check(self, request: Request, form: FormData) -> bool:
        """Whether a POST of one of our forms came from our own page."""
        if not self.same_origin(request):
            return False
        cookie = request.cookies.get(self.cookie_name, "")
        field = form.get(FORM_FIELD, "")
        return _well_formed(cookie) and isinstance(field, str) and hmac.compare_digest(cookie, field)

    def same_origin(self, request: Request) -> bool:
        # Fetch Metadata (sent by every current browser) and Origin (sent with every
        # cross-origin POST) both say where a request came from; either is enough to refuse.
        fetch_site = request.headers.get("sec-fetch-site", "").lower()
        if fetch_site == "cross-site":
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return True
        origin = origin.lower()
        if origin == "null":
            # Browsers send `Origin: null` from privacy-sensitive contexts (a page with a
            # no-referrer policy, a sandboxed frame); believe it only where Fetch Metadata
            # says the request came from our own origin.
            return fetch_site == "same-origin"
        # Our configured public origin, or the host the request was sent to (the same thing
        # behind a correctly configured proxy; the test server's address in tests).
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        return origin in (self.origin, own)


def _well_formed(token: str) -> bool:
    return 32 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()


# ---- bounded forms --------------------------------------------------------------------


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> FormData:
    """The request's form fields, refusing bodies over `limit` bytes (FormTooLarge).

    Reads the body in chunks and stops at the limit, so a client cannot make us buffer an
    unbounded body; Content-Length is checked first where there is one.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise FormTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise FormTooLarge()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        # RFC 8058 allows the one-click POST as multipart/form-data as well.
        return await _multipart(request, bytes(body))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("latin-1")
    try:
        fields: list[tuple[str, str | UploadFile]] = list(
            parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        )
    except ValueError:  # "Max number of fields exceeded"
        raise FormTooLarge(400) from None
    return FormData(fields)


async def _multipart(request: Request, body: bytes) -> FormData:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    try:
        form = await replay.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except (MultiPartException, HTTPException):
        # Too many fields or files, or a body that is not multipart after all.
        raise FormTooLarge(400) from None
    # Only text fields matter here; an upload has nothing to do with us.
    return FormData([(key, value) for key, value in form.multi_items() if isinstance(value, str)])


# ---- rate limits ----------------------------------------------------------------------


class RateLimiter:
    """At most `per_minute` requests per key (a client address) in any minute: a token
    bucket per key, refilled continuously.  In memory, per process: with several server
    processes each has its own, which is what "simple" buys."""

    def __init__(self, per_minute: int, *, max_keys: int = 100_000, clock=time.monotonic) -> None:
        self.capacity = max(1, per_minute)
        self.refill_per_second = self.capacity / 60.0
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def available(self, key: str) -> bool:
        """Whether `allow(key)` would let a request through now, without counting one."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.capacity), now))
            return min(self.capacity, tokens + (now - last) * self.refill_per_second) >= 1.0

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.capacity), now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill_per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            # The least recently seen keys go first; a forgotten key starts with a full
            # bucket, which errs towards letting a person through.
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed


def client_address(request: Request) -> str:
    # Behind a reverse proxy the server (uvicorn --proxy-headers, with the proxy's address
    # in --forwarded-allow-ips) puts the real client here from X-Forwarded-For; docs/deploy.md.
    return request.client.host if request.client else "unknown"


# ---- response headers -----------------------------------------------------------------

# Our pages have no scripts and only inline styles (templates/page.html.j2); issue pages
# may show images from anywhere.  No page may be framed (clickjacking of the buttons).  No
# URL of ours leaks to another site in a Referer (/u/TOKEN and /confirm/TOKEN are
# capabilities); `same-origin` rather than `no-referrer`, because under `no-referrer`
# browsers send our own form POSTs with `Origin: null` (Fetch standard, "serializing a
# request origin"), which the form guard could not tell from a foreign one.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        (
            b"default-src 'none'; style-src 'unsafe-inline'; img-src * data:; form-action 'self'; "
            b"base-uri 'none'; frame-ancestors 'none'"
        ),
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in SECURITY_HEADERS if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
