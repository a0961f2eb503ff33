"""HTML pages of `newsletter serve`, from templates/web/, in the newsletter's language.

Every value reaches the page through Jinja with autoescape on (templates/*.html.j2), so text
from a request or the database is always escaped.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.background import BackgroundTask
from starlette.responses import HTMLResponse

from newsletter.i18n import wording_for
from newsletter.web.context import WebContext

# Pages about one person (unsubscribe, confirm, forms) must never be stored by a cache
# on the way: they show an address and carry form tokens.
PRIVATE = {"Cache-Control": "no-store"}


class Pages:
    def __init__(self, context: WebContext) -> None:
        self.context = context

    def language(self, language: str | None = None) -> str:
        return language or self.context.settings.newsletter.language

    def words(self, language: str | None = None) -> Mapping[str, str]:
        return wording_for(self.language(language))

    @property
    def name(self) -> str:
        return self.context.settings.newsletter.name

    def url(self, path: str) -> str:
        return self.context.settings.base_url + path

    def render(
        self,
        template: str,
        *,
        status: int = 200,
        language: str | None = None,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        **values,
    ) -> HTMLResponse:
        values.setdefault("subscribe_url", self.url("/subscribe"))
        body = self.context.renderer.render_page(template, language=self.language(language), **values)
        return HTMLResponse(body, status_code=status, headers=dict(headers or PRIVATE), background=background)

    def message(
        self,
        title: str,
        message: str,
        *,
        status: int = 200,
        language: str | None = None,
        role: str | None = None,
        headers: Mapping[str, str] | None = None,
        link: tuple[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> HTMLResponse:
        link_url, link_text = link or (None, None)
        return self.render(
            "web/message.html.j2",
            status=status,
            language=language,
            headers=headers,
            background=background,
            page_title=title,
            message=message,
            role=role,
            link_url=link_url,
            link_text=link_text,
        )

    def not_found(self, language: str | None = None) -> HTMLResponse:
        words = self.words(language)
        return self.message(
            words["not_found_title"],
            words["not_found_body"],
            status=404,
            language=language,
            link=(self.url("/"), words["archive"]),
        )

    def invalid_link(self, language: str | None = None, *, status: int = 404) -> HTMLResponse:
        words = self.words(language)
        return self.message(
            words["invalid_link_title"],
            words["invalid_link_body"],
            status=status,
            language=language,
            link=(self.url("/"), words["archive"]),
        )

    def form_expired(self, language: str | None = None) -> HTMLResponse:
        words = self.words(language)
        return self.message(
            words["form_expired_title"], words["form_expired_body"], status=403, language=language, role="alert"
        )

    def too_large(self, language: str | None = None, status: int = 413) -> HTMLResponse:
        words = self.words(language)
        return self.message(
            words["server_error_title"], words["request_too_large"], status=status, language=language, role="alert"
        )
