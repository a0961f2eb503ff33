"""`/u/TOKEN`: one-click unsubscribe (RFC 8058) and the unsubscribe page.

- `POST /u/TOKEN` with the body `List-Unsubscribe=One-Click` is what Gmail, Yahoo and Apple
  Mail send when the reader presses their unsubscribe button: it unsubscribes at once and
  answers 200, with no cookie, no page and no confirmation (RFC 8058 section 3.2).
- `GET /u/TOKEN` (the link in the footer) shows a page with a button; a GET never changes
  anything, because mail scanners and link previewers fetch every URL in a message.
- The page's own buttons POST `action=unsubscribe` or `action=resubscribe` with a form
  token (newsletter.web.security explains why that and the one-click POST are both safe).

Every answer is the same whatever the subscriber's state, and repeating one changes nothing
(idempotent).  A link from a test send (subscriber 0) changes nothing and says so.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.archive import issue_language
from newsletter.audience.self_service import (
    Reader,
    find_reader,
    undo_unsubscribe,
    unsubscribe_reader,
)
from newsletter.errors import TokenError
from newsletter.store.schema import ACTIVE, BY_ONE_CLICK, BY_PAGE, UNSUBSCRIBED
from newsletter.tokens import Claim, Purpose
from newsletter.web.context import WebContext
from newsletter.web.pages import Pages
from newsletter.web.security import FormGuard, FormTooLarge, read_form

# RFC 8058 section 3.1: the body of the one-click POST.
ONE_CLICK_KEY = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def unsubscribe_routes(context: WebContext, pages: Pages, guard: FormGuard) -> list[Route]:
    page = UnsubscribePage(context, pages, guard)
    return [Route("/u/{token}", page.endpoint, methods=["GET", "POST"])]


class UnsubscribePage:
    def __init__(self, context: WebContext, pages: Pages, guard: FormGuard) -> None:
        self.context = context
        self.pages = pages
        self.guard = guard

    async def endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            claim = self.context.tokens.verify(token, Purpose.UNSUBSCRIBE)
        except TokenError:
            return await run_in_threadpool(self.pages.invalid_link)
        if request.method != "POST":
            return await run_in_threadpool(self._show, request, token, claim)
        try:
            form = await read_form(request)
        except FormTooLarge:
            return await run_in_threadpool(self.pages.too_large)
        user_agent = request.headers.get("user-agent")
        if form.get(ONE_CLICK_KEY) == ONE_CLICK_VALUE:
            return await run_in_threadpool(self._unsubscribe, request, token, claim, BY_ONE_CLICK, user_agent)
        action = form.get("action")
        if action not in ("unsubscribe", "resubscribe"):
            return await run_in_threadpool(self._show, request, token, claim, 400)
        if not self.guard.check(request, form):
            return await run_in_threadpool(self._refuse_form, claim)
        if action == "unsubscribe":
            return await run_in_threadpool(self._unsubscribe, request, token, claim, BY_PAGE, user_agent)
        return await run_in_threadpool(self._resubscribe, request, token, claim, user_agent)

    # -- the work, in the threadpool (database and templates) ---------------------------

    def _language(self, claim: Claim) -> str | None:
        return issue_language(self.context.store, claim.issue_id)

    def _show(self, request: Request, token: str, claim: Claim, status: int = 200) -> Response:
        language = self._language(claim)
        if claim.subscriber_id == 0:
            return self._test_message(language)
        reader = find_reader(self.context.store, claim.subscriber_id, claim.issue_id)
        if reader is None:
            return self.pages.invalid_link(language)
        if reader.status != ACTIVE or reader.list_status == UNSUBSCRIBED:
            return self._done(request, token, reader, language, status=status)
        words = self.pages.words(language)
        return self._with_form(
            request,
            "web/unsubscribe.html.j2",
            status=status,
            language=language,
            state="ask",
            page_title=words["unsubscribe_title"].format(name=self.pages.name),
            message=words["unsubscribe_ask"].format(name=self._list_title(reader), email=reader.email),
            action_url=f"/u/{token}",
        )

    def _unsubscribe(self, request: Request, token: str, claim: Claim, method: str, user_agent: str | None) -> Response:
        language = self._language(claim)
        if claim.subscriber_id == 0:
            return self._test_message(language)
        reader, _ = unsubscribe_reader(
            self.context.store,
            issue_id=claim.issue_id,
            subscriber_id=claim.subscriber_id,
            method=method,
            user_agent=user_agent,
        )
        if reader is None:
            # Erased since the mail was sent: nobody gets mail at this address any more,
            # which is what was asked, so a one-click POST still succeeds.
            if method == BY_ONE_CLICK:
                words = self.pages.words(language)
                return self.pages.message(words["unsubscribed_title"], words["unsubscribed_title"], language=language)
            return self.pages.invalid_link(language)
        return self._done(request, token, reader, language)

    def _resubscribe(self, request: Request, token: str, claim: Claim, user_agent: str | None) -> Response:
        language = self._language(claim)
        if claim.subscriber_id == 0:
            return self._test_message(language)
        reader, _ = undo_unsubscribe(
            self.context.store, issue_id=claim.issue_id, subscriber_id=claim.subscriber_id, user_agent=user_agent
        )
        if reader is None:
            return self.pages.invalid_link(language)
        if reader.status != ACTIVE:
            return self._done(request, token, reader, language)
        words = self.pages.words(language)
        return self.pages.render(
            "web/unsubscribe.html.j2",
            language=language,
            state="resubscribed",
            page_title=words["resubscribed_title"],
            message=words["resubscribed_body"].format(email=reader.email, name=self._list_title(reader)),
        )

    def _done(
        self, request: Request, token: str, reader: Reader, language: str | None, *, status: int = 200
    ) -> Response:
        words = self.pages.words(language)
        return self._with_form(
            request,
            "web/unsubscribe.html.j2",
            status=status,
            language=language,
            state="done",
            page_title=words["unsubscribed_title"],
            message=words["unsubscribed_body"].format(email=reader.email, name=self._list_title(reader)),
            # Only leaving the message's list is undone here; a bounce or complaint needs
            # the double opt-in (newsletter.audience.double_opt_in).
            can_resubscribe=reader.can_resubscribe,
            action_url=f"/u/{token}",
        )

    def _list_title(self, reader: Reader) -> str:
        """The list the message came from, as readers know it: the newsletter's own name
        for the configured list unless it was given a name of its own."""
        list_ = reader.list
        if list_ is None or (list_.name == list_.slug and list_.slug == self.context.settings.newsletter.list):
            return self.pages.name
        return list_.name

    def _with_form(self, request: Request, template: str, **values) -> Response:
        form_token = self.guard.token_for(request)
        response = self.pages.render(template, form_token=form_token, **values)
        self.guard.set_cookie(response, form_token)
        return response

    def _refuse_form(self, claim: Claim) -> Response:
        return self.pages.form_expired(self._language(claim))

    def _test_message(self, language: str | None) -> Response:
        words = self.pages.words(language)
        return self.pages.message(words["test_message_title"], words["test_message_body"], language=language)
