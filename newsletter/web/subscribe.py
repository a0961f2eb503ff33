"""`/subscribe` (the form) and `/confirm/TOKEN` (the double opt-in link).

The form's answer is the same page, status and work whoever the address belongs to; the
database work and the confirmation email, when one is due, run a moment after the answer
has been sent (newsletter.web.deferred), so the time to answer does not depend on them either.  The rules on who gets an
email and who may come back are in newsletter.audience.self_service.

`GET /confirm/TOKEN` confirms, as the link in the email promises, except when the request
looks like a link scanner's (corporate mail gateways open every link of a message on
arrival): then it shows a button, and only the POST from that button confirms.
"""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.audience.double_opt_in import (
    ALREADY_CONFIRMED,
    CONFIRMED,
    ConfirmOutcome,
    confirmation_reader,
    form_address,
    open_confirmation_link,
    open_legacy_confirmation_link,
    request_subscription,
    send_confirmation,
)
from newsletter.audience.erasure import address_digests
from newsletter.audience.lists import public_list
from newsletter.audience.self_service import find_reader
from newsletter.errors import InputError, NewsletterError, TokenError
from newsletter.feedback.machines import judge
from newsletter.store.schema import CLICK
from newsletter.tokens import TOKEN_LENGTH, Purpose
from newsletter.web.context import WebContext
from newsletter.web.deferred import DeferredWork
from newsletter.web.log_lines import web_logger
from newsletter.web.pages import Pages
from newsletter.web.security import (
    FormGuard,
    FormTooLarge,
    RateLimiter,
    client_address,
    read_form,
)

MAX_NAME_CHARACTERS = 200

log = web_logger("newsletter.web")


def subscribe_routes(
    context: WebContext, pages: Pages, guard: FormGuard, limiter: RateLimiter, deferred: DeferredWork
) -> list[Route]:
    def settings():
        # Read per request, not captured: see FormGuard.
        return context.settings

    def show_form(
        request: Request,
        *,
        status: int = 200,
        error: str | None = None,
        email: str = "",
        name: str = "",
        list_slug: str | None = None,
    ) -> Response:
        words = pages.words()
        slug = list_slug or request.query_params.get("list") or settings().newsletter.list
        info = public_list(context.store, settings(), slug)
        if info is None:
            return no_such_list()
        form_token = guard.token_for(request)
        response = pages.render(
            "web/subscribe.html.j2",
            status=status,
            page_title=words["subscribe_title"].format(name=info.title),
            description=info.description,
            form_token=form_token,
            action_url="/subscribe",
            list_slug=info.slug,
            email=email,
            subscriber_name=name,
            error=error,
        )
        guard.set_cookie(response, form_token)
        return response

    def no_such_list() -> Response:
        # One answer for a private list and for one that does not exist, so that list
        # names cannot be found by trying them.
        words = pages.words()
        return pages.message(words["subscribe_no_list_title"], words["subscribe_no_list_body"], status=404)

    def handle(request: Request, email: str, name: str, list_slug: str) -> Response:
        """The answer to a filled-in form.  Everything that depends on whether the address
        is known (the database work and the email) happens after the answer has gone, as
        deferred work, so that neither the answer nor its timing tells."""
        words = pages.words()
        info = public_list(context.store, settings(), list_slug or settings().newsletter.list)
        if info is None:
            return no_such_list()
        try:
            form_address(email)
        except InputError:
            # The validator's explanation is English and technical; the address itself,
            # echoed back, is what the person can check and correct.
            return show_form(
                request,
                status=400,
                error=words["subscribe_invalid"].format(reason=email or "—"),
                email=email,
                name=name,
                list_slug=info.slug,
            )
        # Queued once the answer has gone, and run a moment later (newsletter.web.deferred).
        background = BackgroundTask(deferred.later, subscribe_and_mail, email, name[:MAX_NAME_CHARACTERS], info.slug)
        return pages.message(
            words["subscribe_sent_title"], words["subscribe_sent_body"], role="status", background=background
        )

    def subscribe_and_mail(email: str, name: str, list_slug: str) -> None:
        try:
            pending = request_subscription(
                context.store, email=email, name=name, list_slug=list_slug, digests=address_digests(context.settings)
            )
            if pending is None:
                return
            url = context.links.confirm(pending.token)
            with context.open_transport() as transport:
                send_confirmation(context.settings, context.store, transport, pending, url)
        except NewsletterError as err:
            # After the answer there is nobody to tell; the log is where it shows.
            log.warning("subscription request for list %s not completed: %s", list_slug, err)

    async def subscribe(request: Request) -> Response:
        if request.method != "POST":
            return await run_in_threadpool(show_form, request)
        if not limiter.allow(client_address(request)):
            words = pages.words()
            return await run_in_threadpool(
                lambda: pages.message(
                    words["too_many_requests_title"],
                    words["too_many_requests"],
                    status=429,
                    role="alert",
                    headers={"Retry-After": "60", "Cache-Control": "no-store"},
                )
            )
        try:
            form = await read_form(request)
        except FormTooLarge as refused:
            return await run_in_threadpool(pages.too_large, None, refused.status)
        if not guard.check(request, form):
            return await run_in_threadpool(pages.form_expired)
        fields = {key: form.get(key, "") for key in ("email", "name", "list")}
        email, name, list_slug = (str(fields[key]).strip() for key in ("email", "name", "list"))
        return await run_in_threadpool(handle, request, email, name, list_slug)

    def confirm_page(token: str, user_agent: str | None) -> Response:
        done = _open_link(token, user_agent)
        if done.outcome not in (CONFIRMED, ALREADY_CONFIRMED) or done.reader is None:
            return pages.invalid_link()
        words = pages.words()
        return pages.message(
            words["confirmed_title"],
            words["confirmed_body"].format(email=done.reader.email, name=pages.name),
            role="status",
            link=(pages.url("/"), words["archive"]),
        )

    def _open_link(token: str, user_agent: str | None) -> ConfirmOutcome:
        legacy = _legacy_claim(token)
        if legacy is not None:
            return open_legacy_confirmation_link(
                context.store, list_id=legacy.issue_id, subscriber_id=legacy.subscriber_id, user_agent=user_agent
            )
        return open_confirmation_link(context.store, token=token, user_agent=user_agent)

    def _legacy_claim(token: str):
        # Links mailed before migration 0004 are signed tokens of TOKEN_LENGTH characters;
        # new ones are 43-character random tokens (newsletter.audience.double_opt_in).
        if len(token) != TOKEN_LENGTH:
            return None
        try:
            return context.tokens.verify(token, Purpose.CONFIRM)
        except TokenError:
            return None

    def _reader_of(token: str):
        legacy = _legacy_claim(token)
        if legacy is not None:
            return find_reader(context.store, legacy.subscriber_id)
        return confirmation_reader(context.store, token)

    def ask_person(request: Request, token: str, subscriber_email: str | None) -> Response:
        words = pages.words()
        form_token = guard.token_for(request)
        response = pages.render(
            "web/confirm.html.j2",
            page_title=words["confirm_title"].format(name=pages.name),
            message=words["confirm_ask"].format(name=pages.name, email=subscriber_email or ""),
            action_url=f"/confirm/{token}",
            form_token=form_token,
        )
        guard.set_cookie(response, form_token)
        return response

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        if not _looks_like_a_token(token):
            return await run_in_threadpool(pages.invalid_link)
        user_agent = request.headers.get("user-agent")
        if request.method == "POST":
            try:
                form = await read_form(request)
            except FormTooLarge as refused:
                return await run_in_threadpool(pages.too_large, None, refused.status)
            if not guard.check(request, form):
                return await run_in_threadpool(pages.form_expired)
        elif judge(kind=CLICK, user_agent=user_agent, method=request.method).machine:
            reader = await run_in_threadpool(_reader_of, token)
            if reader is None:
                return await run_in_threadpool(pages.invalid_link)
            return await run_in_threadpool(ask_person, request, token, reader.email)
        return await run_in_threadpool(confirm_page, token, user_agent)

    return [
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm, methods=["GET", "POST"]),
    ]


def _looks_like_a_token(token: str) -> bool:
    """URL-safe base64 of a sane length: anything else is refused before the database."""
    return 32 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum() and token.isascii()
