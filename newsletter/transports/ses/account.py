"""The SES account as GetAccount and ListEmailIdentities report it, read the one way both
`newsletter send` and `newsletter doctor` need: the `SendQuota`, and which recipients a
sandboxed account may send to.

Pure over the answers' dicts (the callers own the boto3 clients and their errors).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from newsletter.transports.base import SendQuota

# SES API v2 GetAccount, "SendingEnabled": false when AWS paused the account or the owner did.
PAUSED = "sending is paused for this SES account: every send is refused"
PAUSED_FIX = "read the message from AWS in the SES console (Reputation metrics) and ask to resume sending"
# "ProductionAccessEnabled": false in the sandbox, where "you can only send mail to verified
# email addresses and domains" (SES developer guide, "Request production access").
SANDBOX = "the SES account is in the sandbox: only verified addresses and domains receive mail"
SANDBOX_FIX = "request production access (SES console -> Account dashboard)"


def send_quota(account: Mapping[str, Any]) -> SendQuota:
    """The `SendQuota` of one GetAccount answer."""
    limits = account.get("SendQuota", {})
    return SendQuota(
        max_send_rate=float(limits.get("MaxSendRate", 0.0)),
        max_24_hour_send=float(limits.get("Max24HourSend", 0.0)),
        sent_last_24_hours=float(limits.get("SentLast24Hours", 0.0)),
        sending_enabled=bool(account.get("SendingEnabled", True)),
        production_access=bool(account.get("ProductionAccessEnabled", True)),
    )


def verified_identities(pages: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Lower-cased names of the verified identities (addresses and domains) in the pages of
    ListEmailIdentities answers."""
    return frozenset(
        str(identity["IdentityName"]).lower()
        for page in pages
        for identity in page.get("EmailIdentities", [])
        if identity.get("VerificationStatus", "SUCCESS") == "SUCCESS" and identity.get("IdentityName")
    )


def sandbox_receives(address: str, verified: frozenset[str]) -> bool:
    """Whether a sandboxed account may send to `address`: it, or its domain, is verified."""
    lowered = address.lower()
    return lowered in verified or lowered.rpartition("@")[2] in verified
