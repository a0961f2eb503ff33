"""`/u/TOKEN`: one-click unsubscribe (RFC 8058), the unsubscribe page and the preference page.

- `POST /u/TOKEN` with the body `List-Unsubscribe=One-Click` is what Gmail, Yahoo and Apple
  Mail send when the reader presses their unsubscribe button: it unsubscribes at once from
  the list the message was sent to, and from nothing else, and answers 200, with no
  cookie, no page and no confirmation (RFC 8058 section 3.2).
- `GET /u/TOKEN` (the link in the footer) shows the preference page (newsletter.web.
  preferences): first a button to leave the message's list, then the reader's lists,
  "unsubscribe from everything", "download my data" and "erase me".  A GET never changes
  anything, because mail scanners and link previewers fetch every URL in a message.
- The pages' own buttons POST an `action` with a form token (newsletter.web.security
  explains why that and the one-click POST are both safe): `unsubscribe` (the message's
  list), `resubscribe` (undo that), `unsubscribe_all`, `save` (the check boxes), `export`
  (the data file), `erase` (asks) and `erase_confirmed` (erases).

Every answer is the same whatever the subscriber's state, and repeating one changes nothing
(idempotent).  A link from a test send (subscriber 0) changes nothing and says so.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.archive import issue_language
from newsletter.audience.preferences import reader_preferences
from newsletter.audience.self_service import undo_unsubscribe, unsubscribe_reader
from newsletter.errors import TokenError
from newsletter.store.schema import ACTIVE, BY_ONE_CLICK, BY_PAGE, PENDING
from newsletter.tokens import Claim, Purpose
from newsletter.web.context import WebContext
from newsletter.web.pages import Pages
from newsletter.web.preferences import PreferencePage
from newsletter.web.security import FormGuard, FormTooLarge, read_form

# RFC 8058 section 3.1: the body of the one-click POST.
ONE_CLICK_KEY = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"

ACTIONS = ("unsubscribe", "resubscribe", "unsubscribe_all", "save", "export", "erase", "erase_confirmed")


def unsubscribe_routes(context: WebContext, pages: Pages, guard: FormGuard) -> list[Route]:
    page = UnsubscribePage(context, pages, guard)
    return [Route("/u/{token}", page.endpoint, methods=["GET", "POST"])]


class UnsubscribePage:
    def __init__(self, context: WebContext, pages: Pages, guard: FormGuard) -> None:
        self.context = context
        self.pages = pages
        self.guard = guard
        self.preferences = PreferencePage(context, pages, guard)

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
        except FormTooLarge as refused:
            return await run_in_threadpool(self.pages.too_large, None, refused.status)
        user_agent = request.headers.get("user-agent")
        if form.get(ONE_CLICK_KEY) == ONE_CLICK_VALUE:
            return await run_in_threadpool(self._unsubscribe, request, token, claim, BY_ONE_CLICK, user_agent)
        action = form.get("action")
        if action not in ACTIONS:
            return await run_in_threadpool(self._show, request, token, claim, 400)
        if not self.guard.check(request, form):
            return await run_in_threadpool(self._refuse_form, claim)
        return await run_in_threadpool(self._act, request, token, claim, str(action), form, user_agent)

    # -- the work, in the threadpool (database and templates) ---------------------------

    def _act(
        self, request: Request, token: str, claim: Claim, action: str, form: FormData, user_agent: str | None
    ) -> Response:
        if claim.subscriber_id == 0:
            return self._test_message(self._language(claim))
        if action == "unsubscribe":
            return self._unsubscribe(request, token, claim, BY_PAGE, user_agent)
        if action == "unsubscribe_all":
            return self._unsubscribe(request, token, claim, BY_PAGE, user_agent, everything=True)
        if action == "resubscribe":
            return self._resubscribe(request, token, claim, user_agent)
        language = self._language(claim)
        if action == "save":
            chosen = [value for value in form.getlist("list") if isinstance(value, str)]
            return self.preferences.save(request, token, claim, language, chosen, user_agent)
        if action == "export":
            return self.preferences.download(claim, language)
        if action == "erase":
            return self.preferences.ask_to_erase(request, token, claim, language)
        return self.preferences.erase(claim, language)

    def _language(self, claim: Claim) -> str | None:
        return issue_language(self.context.store, claim.issue_id)

    def _show(self, request: Request, token: str, claim: Claim, status: int = 200) -> Response:
        language = self._language(claim)
        if claim.subscriber_id == 0:
            return self._test_message(language)
        return self.preferences.show(request, token, claim, language, status=status)

    def _unsubscribe(
        self,
        request: Request,
        token: str,
        claim: Claim,
        method: str,
        user_agent: str | None,
        *,
        everything: bool = False,
    ) -> Response:
        language = self._language(claim)
        if claim.subscriber_id == 0:
            return self._test_message(language)
        reader, _ = unsubscribe_reader(
            self.context.store,
            issue_id=claim.issue_id,
            subscriber_id=claim.subscriber_id,
            method=method,
            user_agent=user_agent,
            everything=everything,
        )
        if reader is None:
            # Erased since the mail was sent: nobody gets mail at this address any more,
            # which is what was asked, so a one-click POST still succeeds.
            if method == BY_ONE_CLICK:
                words = self.pages.words(language)
                return self.pages.message(words["unsubscribed_title"], words["unsubscribed_title"], language=language)
            return self.pages.invalid_link(language)
        return self._done(request, token, claim, language, everything=everything)

    def _resubscribe(self, request: Request, token: str, claim: Claim, user_agent: str | None) -> Response:
        language = self._language(claim)
        reader, _ = undo_unsubscribe(
            self.context.store, issue_id=claim.issue_id, subscriber_id=claim.subscriber_id, user_agent=user_agent
        )
        if reader is None:
            return self.pages.invalid_link(language)
        if reader.status != ACTIVE or reader.list_status != ACTIVE:
            return self._done(request, token, claim, language)
        preferences = reader_preferences(
            self.context.store, self.context.settings, subscriber_id=claim.subscriber_id, issue_id=claim.issue_id
        )
        words = self.pages.words(language)
        title = self.preferences.list_title(preferences) if preferences else self.pages.name
        return self.pages.render(
            "web/unsubscribe.html.j2",
            language=language,
            state="resubscribed",
            page_title=words["resubscribed_title"],
            message=words["resubscribed_body"].format(email=reader.email, name=title),
            manage_url=f"/u/{token}",
        )

    def _done(
        self, request: Request, token: str, claim: Claim, language: str | None, *, everything: bool = False
    ) -> Response:
        """The confirmation: which list was left, with the undo, "unsubscribe from
        everything" while other lists still reach them, and the preference page."""
        preferences = reader_preferences(
            self.context.store, self.context.settings, subscriber_id=claim.subscriber_id, issue_id=claim.issue_id
        )
        if preferences is None:
            return self.pages.invalid_link(language)
        reader = preferences.reader
        words = self.pages.words(language)
        if everything:
            title, message = words["unsubscribed_all_title"], words["unsubscribed_all_body"].format(email=reader.email)
        else:
            title = words["unsubscribed_title"]
            message = words["unsubscribed_body"].format(
                email=reader.email, name=self.preferences.list_title(preferences)
            )
        return self.preferences.with_form(
            request,
            "web/unsubscribe.html.j2",
            language=language,
            state="done",
            page_title=title,
            message=message,
            # Only leaving the message's list is undone here; a bounce or complaint needs
            # the double opt-in (newsletter.audience.double_opt_in).
            can_resubscribe=reader.can_resubscribe and not everything,
            others_remain=any(choice.status in (ACTIVE, PENDING) for choice in preferences.choices),
            address_active=reader.status == ACTIVE,
            action_url=f"/u/{token}",
            manage_url=f"/u/{token}",
        )

    def _refuse_form(self, claim: Claim) -> Response:
        return self.pages.form_expired(self._language(claim))

    def _test_message(self, language: str | None) -> Response:
        words = self.pages.words(language)
        return self.pages.message(words["test_message_title"], words["test_message_body"], language=language)
