"""The preference page behind `GET /u/TOKEN`: the reader's lists with check boxes,
"unsubscribe from everything", "download my data" and "erase me".

The page only shows; every change is a POST of one of its forms, with the form token of
newsletter.web.security (routed by newsletter.web.unsubscribe, which owns `/u/TOKEN`).
Erasing takes two steps: the button asks, and only the POST from the page that asked
erases.  The data file is a POST too, so that it is never fetched by a link scanner or
kept by a cache.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from newsletter.audience.erasure import erase_subscriber
from newsletter.audience.lists import list_catalog
from newsletter.audience.preferences import Preferences, reader_preferences, save_preferences
from newsletter.audience.reader_data import reader_data
from newsletter.errors import InputError
from newsletter.store.schema import ACTIVE, BY_PREFERENCES, UNSUBSCRIBED
from newsletter.tokens import AddressDigests, Claim
from newsletter.web.context import WebContext
from newsletter.web.pages import PRIVATE, Pages
from newsletter.web.security import FormGuard

DATA_FILE_NAME = "my-newsletter-data.json"


class PreferencePage:
    def __init__(self, context: WebContext, pages: Pages, guard: FormGuard) -> None:
        self.context = context
        self.pages = pages
        self.guard = guard

    def show(self, request: Request, token: str, claim: Claim, language: str | None, *, status: int = 200) -> Response:
        preferences = reader_preferences(
            self.context.store, self.context.settings, subscriber_id=claim.subscriber_id, issue_id=claim.issue_id
        )
        if preferences is None:
            return self.pages.invalid_link(language)
        reader = preferences.reader
        words = self.pages.words(language)
        list_title = self.list_title(preferences)
        return self.with_form(
            request,
            "web/preferences.html.j2",
            status=status,
            language=language,
            page_title=words["pref_title"].format(name=self.pages.name),
            email=reader.email,
            action_url=f"/u/{token}",
            # The message's own list first: the footer link said "unsubscribe".
            ask=reader.status == ACTIVE and reader.list is not None and reader.list_status != UNSUBSCRIBED,
            ask_message=words["unsubscribe_ask"].format(name=list_title, email=reader.email),
            left_message=words["pref_left_this_list"].format(list=list_title),
            can_resubscribe=reader.can_resubscribe,
            stopped=words.get(f"pref_stopped_{reader.status}") if reader.status != ACTIVE else None,
            choices=preferences.choices,
            anything_to_leave=any(choice.status in (ACTIVE, "pending") for choice in preferences.choices),
        )

    def save(
        self,
        request: Request,
        token: str,
        claim: Claim,
        language: str | None,
        chosen: list[str],
        user_agent: str | None,
    ) -> Response:
        preferences = save_preferences(
            self.context.store,
            self.context.settings,
            subscriber_id=claim.subscriber_id,
            issue_id=claim.issue_id,
            chosen=chosen,
            user_agent=user_agent,
        )
        if preferences is None:
            return self.pages.invalid_link(language)
        words = self.pages.words(language)
        receives = [choice.title for choice in preferences.receives()]
        if receives:
            body = words["pref_saved_body"].format(
                email=preferences.reader.email, lists=words["list_separator"].join(receives)
            )
        else:
            body = words["pref_saved_none"].format(email=preferences.reader.email)
        return self.pages.message(
            words["pref_saved_title"],
            body,
            language=language,
            role="status",
            link=(f"/u/{token}", words["pref_manage"]),
        )

    def download(self, claim: Claim, language: str | None) -> Response:
        document = reader_data(self.context.store, claim.subscriber_id, newsletter=self.pages.name)
        if document is None:
            return self.pages.invalid_link(language)
        body = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
        headers = {**PRIVATE, "Content-Disposition": f'attachment; filename="{DATA_FILE_NAME}"'}
        return Response(body, media_type="application/json; charset=utf-8", headers=headers)

    def ask_to_erase(self, request: Request, token: str, claim: Claim, language: str | None) -> Response:
        preferences = reader_preferences(
            self.context.store, self.context.settings, subscriber_id=claim.subscriber_id, issue_id=claim.issue_id
        )
        if preferences is None:
            return self.pages.invalid_link(language)
        words = self.pages.words(language)
        return self.with_form(
            request,
            "web/erase.html.j2",
            language=language,
            page_title=words["erase_title"],
            message=words["erase_ask"].format(email=preferences.reader.email),
            action_url=f"/u/{token}",
        )

    def erase(self, claim: Claim, language: str | None) -> Response:
        words = self.pages.words(language)
        try:
            email = erase_subscriber(
                self.context.store,
                AddressDigests(self.context.settings.newsletter.secret),
                subscriber_id=claim.subscriber_id,
                source=BY_PREFERENCES,
            )
        except InputError:  # erased already (a second click): nothing is left to show
            return self.pages.invalid_link(language)
        return self.pages.message(
            words["erased_title"], words["erased_body"].format(email=email), language=language, role="status"
        )

    # ---- shared with the unsubscribe page ----

    def list_title(self, preferences: Preferences) -> str:
        """The message's list as readers know it (newsletter.audience.lists)."""
        list_ = preferences.reader.list
        if list_ is None:
            return self.pages.name
        info = list_catalog(self.context.store, self.context.settings).get(list_.slug)
        return info.title if info else list_.name

    def with_form(self, request: Request, template: str, **values) -> Response:
        form_token = self.guard.token_for(request)
        response = self.pages.render(template, form_token=form_token, **values)
        self.guard.set_cookie(response, form_token)
        return response
