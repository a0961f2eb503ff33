"""What an SES error answer means for the send: the one place that reads SES error codes.

    failure = classify(status, body, parsed_code, message, sender=sender)
    raise failure.transport_error(recipient) from err

Pure: no boto3, no network.  Both ways of calling SES use it: the boto3 client (whose
`ClientError` gives the parsed code and message) and a hand-built request (which has only the
status, the headers and the body).

Reading the code.  botocore's sesv2 parser reads rest-json errors only (the `x-amzn-ErrorType`
header or a JSON body's `__type`/`code`).  An SES-compatible server, or an AWS front end,
may answer in the query protocol's XML instead: `<ErrorResponse><Error><Code>Throttling</Code>
<Message>Maximum sending rate exceeded.</Message></Error></ErrorResponse>` (the SES v1 API's
error shape, SES API reference "Common errors").  botocore then reports the HTTP status as the
code ("400") and the whole body as the message, so `classify` reads the code from the body
whenever the parsed one is missing or only the status number.

The verdicts, in order:
- the daily quota: sending past it "produces a ThrottlingException error" whose message says
  "Daily message quota exceeded" (SES developer guide, "Errors related to the sending quotas");
  the v2 model's nearest code is LimitExceededException, which SendEmail has no other reason to
  return.  Temporary, and it stops the send (it comes back by itself within 24 hours);
- throttling (429, or a throttling code): temporary, and the pacer should slow down;
- server trouble (5xx, or a server-side code): temporary;
- about the account or the sender (suspended, paused, credentials, an unverified sender named
  in MessageRejected): permanent, and it stops the send;
- an address SES refuses to parse ("Missing final '@domain'", "Illegal address", "Invalid
  address"): a hard bounce of that address, suppressed like one;
- MessageRejected (content SES will not send, or, in the sandbox, a recipient that is not
  verified) and the other request errors SendEmail documents: a permanent failure of this
  message, not of the address;
- any other 4xx: temporary.  An answer we do not understand is not proof that the message can
  never go; failing it for good would lose the reader (the fault-injection run lost 101 of
  1,000 that way), while retrying costs one more request.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from newsletter.errors import TransportError

# The request was refused for load, not for what it carried.
THROTTLED = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled"}
)
SERVER_TROUBLE = frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "InternalServerErrorException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# About the account, the credentials or the sender, so every other message would fail alike:
# stop the send instead of failing each subscriber.  NotFoundException is SendEmail's answer
# to a configuration set that does not exist.
ACCOUNT_REFUSED = frozenset(
    {
        "AccountSuspendedException",
        "AccountSendingPausedException",
        "SendingPausedException",
        "ConfigurationSetSendingPausedException",
        "MailFromDomainNotVerifiedException",
        "MailFromDomainNotVerified",
        "NotFoundException",
        "ConfigurationSetDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "IncompleteSignature",
    }
)
# Request errors SendEmail documents that say "not this request, ever": permanent for the
# message.  (BadRequestException and InvalidParameterValue carry the address errors too;
# `_BAD_ADDRESS` tells those apart.)
MESSAGE_REFUSED = frozenset(
    {
        "MessageRejected",
        "BadRequestException",
        "InvalidParameterValue",
        "ValidationError",
        "ValidationException",
        "SerializationException",
    }
)
DAILY_QUOTA = "LimitExceededException"
DAILY_QUOTA_TEXT = "daily message quota"

# SES's words for an address it cannot parse (seen from SendEmail and SendRawEmail, v1 and v2).
_BAD_ADDRESS = re.compile(
    r"missing final '@domain'|illegal address|invalid (?:email )?address|"
    r"domain (?:name )?contains illegal character|local address contains control or whitespace|"
    r"domain ends with dot|domain starts with dot|address blacklisted",
    re.IGNORECASE,
)
# In the sandbox SES refuses recipients that are not verified identities with the same words
# it uses for an unverified sender (SES developer guide, "Moving out of the Amazon SES sandbox").
_NOT_VERIFIED = re.compile(r"not verified", re.IGNORECASE)

# The query protocol's XML error (bounded, so a huge body costs nothing).
_XML_CODE = re.compile(r"<Code>\s*([^<]{1,200}?)\s*</Code>", re.IGNORECASE)
_XML_MESSAGE = re.compile(r"<Message>\s*([^<]{0,2000}?)\s*</Message>", re.IGNORECASE | re.DOTALL)
_READ_LIMIT = 64 * 1024


@dataclass(frozen=True)
class SesFailure:
    """One SES error answer, read: what went wrong and what the send should do about it."""

    code: str
    text: str
    status: int
    # Trying again later may work.
    temporary: bool
    # The provider asked us to slow down: the pacer lowers the rate.
    throttled: bool = False
    # The account or sender cannot send now: stop the whole send, leave the rest queued.
    stops_send: bool = False
    # The address itself is refused: a hard bounce, suppressed like one.
    hard_bounce: bool = False

    def describe(self) -> str:
        return f"SES {self.code}: {self.text}" if self.text else f"SES {self.code}"

    def transport_error(self, recipient: str | None) -> TransportError:
        return TransportError(
            self.describe(),
            permanent=not self.temporary,
            recipient=recipient,
            code=self.code,
            stops_send=self.stops_send,
            throttled=self.throttled,
            hard_bounce=self.hard_bounce,
        )


def classify(
    status: int,
    body: bytes | str | None,
    parsed_code: str | None,
    message: str | None,
    *,
    sender: str = "",
) -> SesFailure:
    """Read one SES error answer: HTTP `status`, the raw `body` (if the caller has it),
    the error code and message as a parser read them (either may be missing).  `sender` is
    the From address, so an unverified-sender refusal is told from a recipient's."""
    code = (parsed_code or "").strip()
    # botocore keeps anything after ':' out of the code; a hand-read header may not.
    code = code.split(":", 1)[0].strip()
    text = (message or "").strip()
    if not code or code.isdigit() or code == "Unknown":
        found_code, found_text = _read_body(body if body is not None else text)
        if found_code:
            code = found_code
            text = found_text or ("" if text.lstrip().startswith(("<", "{")) else text)
    if not code:
        code = str(status) if status else "Unknown"
    return _verdict(status, code, text, sender)


def _verdict(status: int, code: str, text: str, sender: str) -> SesFailure:
    lowered = text.lower()
    if code == DAILY_QUOTA or DAILY_QUOTA_TEXT in lowered:
        return SesFailure(code, text, status, temporary=True, stops_send=True)
    if code in THROTTLED or status == 429:
        return SesFailure(code, text, status, temporary=True, throttled=True)
    if code in SERVER_TROUBLE or status >= 500:
        return SesFailure(code, text, status, temporary=True)
    sender_refused = code == "MessageRejected" and bool(sender) and _names(text, sender)
    if code in ACCOUNT_REFUSED or sender_refused:
        return SesFailure(code, text, status, temporary=False, stops_send=True)
    if code in MESSAGE_REFUSED:
        # A sandbox refusal of an unverified recipient says nothing about the mailbox.
        bad_address = _BAD_ADDRESS.search(text) is not None and not _NOT_VERIFIED.search(text)
        return SesFailure(code, text, status, temporary=False, hard_bounce=bad_address)
    # Unknown: see the module docstring.
    return SesFailure(code, text, status, temporary=True)


def _read_body(body: bytes | str) -> tuple[str, str]:
    """(code, message) from an XML or JSON error body; ("", "") when it has neither."""
    if isinstance(body, bytes):
        body = body[:_READ_LIMIT].decode("utf-8", "replace")
    else:
        body = body[:_READ_LIMIT]
    stripped = body.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            code = data.get("__type") or data.get("code") or data.get("Code") or ""
            text = data.get("message") or data.get("Message") or ""
            if isinstance(code, str) and isinstance(text, str):
                # A JSON __type may be "namespace#Code".
                return code.rpartition("#")[2].split(":", 1)[0], text
        return "", ""
    found = _XML_CODE.search(stripped)
    if not found:
        return "", ""
    said = _XML_MESSAGE.search(stripped)
    return html.unescape(found.group(1)), html.unescape(said.group(1)) if said else ""


def _names(text: str, address: str) -> bool:
    """Whether `text` mentions `address` as a whole address (not inside a longer one)."""
    return re.search(rf"(?<![\w.+-]){re.escape(address)}(?![\w.-])", text, re.IGNORECASE) is not None
