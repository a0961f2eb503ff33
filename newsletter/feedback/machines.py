"""Telling machines from people in open and click hits; pure.

A tracking hit is kept either way (`events.machine` says which), so stats can count people
and still show what the machines did.  The signals, each with the outside fact behind it:

- Apple Mail Privacy Protection (iOS 15 / macOS 12 onwards) fetches every remote image of
  a message through Apple's relays as soon as the message arrives, whether or not it is
  read, and since 2021-09-20 with the bare user agent `Mozilla/5.0` and nothing else
  (ua-parser/uap-core issue 509).  Apple Mail itself, opening an image for a reader, sends a
  full WebKit user agent, so the bare one is the proxy's mark.
- Mail security gateways (Microsoft Defender Safe Links, Proofpoint URL Defense, Mimecast,
  Barracuda, Cisco Secure Email...) fetch and follow every link of a message on arrival to
  scan it; some name themselves in the user agent, some use a plain HTTP library, some send
  none at all.
- A click a few seconds after the message left is faster than a person can receive, open,
  read and click; it is a gateway following links on arrival.  (A scanner with a browser's
  user agent is caught only this way.)
- HEAD requests come from link checkers; a mail client shows an image with GET.

Gmail and Yahoo also fetch images through proxies (`GoogleImageProxy`, `YahooMailProxy`),
but only when the reader opens the message, so those count as people; the proxy is noted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from newsletter.store.schema import CLICK

# A person needs longer than this between the message leaving and a click on one of its
# links: delivery alone takes seconds, then the reader has to notice, open and read it.
CLICK_SECONDS_AFTER_SENDING = 10.0

# Apple's relay sends this and nothing more (see the module docstring).
APPLE_PRIVACY_PROXY_AGENT = "Mozilla/5.0"

# Lowercase fragments of user agents that only machines send: security gateways, link
# previewers, crawlers, HTTP libraries and headless browsers.
SCANNER_AGENT_FRAGMENTS = (
    "barracuda",
    "proofpoint",
    "mimecast",
    "ironport",
    "cisco",
    "trend micro",
    "trendmicro",
    "fortinet",
    "fortimail",
    "sophos",
    "symantec",
    "forcepoint",
    "zscaler",
    "safelinks",
    "microsoft office existence discovery",
    "skypeuripreview",
    "facebookexternalhit",
    "whatsapp",
    "bot",
    "crawler",
    "spider",
    "scanner",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "okhttp",
    "java/",
    "curl/",
    "wget/",
    "libwww-perl",
    "httpclient",
    "node-fetch",
    "axios/",
)
_SCANNER = re.compile("|".join(re.escape(fragment) for fragment in SCANNER_AGENT_FRAGMENTS))

# Outlook for Windows fetches images for its reader as `ms-office` / `MSOffice`, so an open
# with it is a person; but it never follows a link itself (the reader's browser does), so a
# click with it is Safe Links checking the link.
_CLICK_ONLY_SCANNER = re.compile(r"ms-?office")

# Proxies that fetch images when a person opens the message: a person, through a proxy.
_READER_PROXIES = (("googleimageproxy", "gmail"), ("yahoomailproxy", "yahoo"))


@dataclass(frozen=True)
class Verdict:
    machine: bool
    # Why it is taken for a machine, or which reader proxy it came through; stored in
    # `events.detail` so a person reading the stats can judge the judgement.
    reason: str | None = None
    proxy: str | None = None

    def detail(self) -> dict | None:
        found = {}
        if self.reason:
            found["machine"] = self.reason
        if self.proxy:
            found["proxy"] = self.proxy
        return found or None


PERSON = Verdict(False)


def judge(
    *,
    kind: str,
    user_agent: str | None,
    method: str = "GET",
    occurred_at: datetime | None = None,
    sent_at: datetime | None = None,
) -> Verdict:
    """Whether an open or click hit was most likely a machine's, and why."""
    agent = (user_agent or "").strip()
    if method == "HEAD":
        return Verdict(True, "HEAD request (a link checker)")
    if not agent:
        return Verdict(True, "no user agent")
    if agent == APPLE_PRIVACY_PROXY_AGENT:
        return Verdict(True, "Apple Mail Privacy Protection proxy")
    lowered = agent.lower()
    found = _SCANNER.search(lowered)
    if found:
        return Verdict(True, f"scanner user agent ({found.group(0)})")
    if kind == CLICK:
        found = _CLICK_ONLY_SCANNER.search(lowered)
        if found:
            return Verdict(True, f"scanner user agent ({found.group(0)})")
    if kind == CLICK and occurred_at is not None and sent_at is not None:
        seconds = (occurred_at - sent_at).total_seconds()
        if 0 <= seconds < CLICK_SECONDS_AFTER_SENDING:
            return Verdict(True, f"clicked {seconds:.1f} s after sending")
    for fragment, proxy in _READER_PROXIES:
        if fragment in lowered:
            return Verdict(False, proxy=proxy)
    return PERSON
