"""The web side receivers reach: `base_url` must be https (RFC 8058 section 3.1: the one-click
URI is an HTTPS URI) and must answer the one-click POST that Gmail and Yahoo send.

The POST names subscriber 0, whom the unsubscribe endpoint treats as a test reader: it
answers as for anyone and unsubscribes nobody.
"""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.doctor.report import FAIL, OK, Check
from newsletter.tokens import Links, Tokens

AREA = "web"
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


def check_web(settings: Settings) -> list[Check]:
    import httpx

    base = settings.base_url
    checks = []
    if base.startswith("https://"):
        checks.append(Check(AREA, "https", OK, f"{base} is https"))
    else:
        checks.append(
            Check(
                AREA,
                "https",
                FAIL,
                f"{base} is not https: receivers only POST one-click unsubscribes to https URLs",
                "serve `newsletter serve` behind TLS and set [newsletter] base_url to its https:// URL (docs/deploy.md)",
            )
        )
    url = Links(base, Tokens(settings.newsletter.secret)).unsubscribe(0, 0)
    try:
        answer = httpx.post(
            url,
            content=ONE_CLICK_BODY,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=settings.doctor.timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as err:
        checks.append(
            Check(
                AREA,
                "one-click unsubscribe",
                FAIL,
                f"{base} did not answer a one-click POST: {err or type(err).__name__}",
                "run `newsletter serve` where base_url points, reachable from the internet",
            )
        )
        return checks
    if 200 <= answer.status_code < 300:
        checks.append(Check(AREA, "one-click unsubscribe", OK, f"{base}/u/… answered the one-click POST"))
    else:
        checks.append(
            Check(
                AREA,
                "one-click unsubscribe",
                FAIL,
                f"{base}/u/… answered the one-click POST with {answer.status_code}",
                "base_url must point at `newsletter serve` (with the same secret), without a login or redirect in front",
            )
        )
    return checks
