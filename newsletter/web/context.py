"""What every part of the web app shares, built once when `newsletter serve` starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.compose.render import Renderer
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.tokens import Links, Tokens
from newsletter.transports.base import Transport
from newsletter.transports.configured import open_transport

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from newsletter.transports.ses.sns import SnsVerifier


@dataclass
class WebContext:
    settings: Settings
    store: Store
    renderer: Renderer
    tokens: Tokens
    links: Links
    # How the app sends mail (double opt-in confirmations): the configured transport.
    open_transport: Callable[[], Transport]
    # SNS message verification for /hooks/ses (newsletter.transports.ses.sns.SnsVerifier); tests pass
    # one that trusts a local certificate URL.  None builds the default from the settings.
    sns_verifier: SnsVerifier | None = None

    @classmethod
    def create(cls, settings: Settings, store: Store, *, sns_verifier: SnsVerifier | None = None) -> WebContext:
        tokens = Tokens(settings.newsletter.secret)
        return cls(
            settings=settings,
            store=store,
            renderer=Renderer(settings),
            tokens=tokens,
            links=Links(settings.base_url, tokens),
            open_transport=lambda: open_transport(settings),
            sns_verifier=sns_verifier,
        )
