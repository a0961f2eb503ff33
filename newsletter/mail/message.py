"""Rendered issue + recipient -> the RFC 5322 bytes of one personal message.

Everything that is the same for every recipient (headers, the MIME skeleton, the escaped
base URL) is prepared once in `MessageFactory.__init__`; `build` only signs the recipient's
tokens, fills the slots of the once-rendered HTML and text, and base64-encodes the two
parts.  No Jinja, MJML or CSS inlining runs per recipient, and no `email.message` objects
either: assembling the bytes directly is an order of magnitude faster, and the tests parse
the result back with `email.parser` to hold it to the RFCs.

The output is 7-bit clean with CRLF line ends: SES open/click tracking can corrupt 8bit
bodies, SMTP servers reject bare LF, and for CJK text base64 is about half the size of
quoted-printable.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import html
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import quote

from newsletter.compose.render import (
    LINK_PREFIX,
    OPEN_PIXEL,
    UNSUBSCRIBE_URL,
    VIEW_URL,
    Rendered,
    SlottedText,
    open_pixel_tag,
)
from newsletter.config import Settings
from newsletter.errors import InputError
from newsletter.mail.headers import (
    CRLF,
    ascii_address,
    date_now,
    encode_words,
    format_address,
    header_line,
)
from newsletter.mail.message_id import ledger_message_id
from newsletter.tokens import Links, Purpose


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str = ""


@dataclass(frozen=True)
class OutgoingMessage:
    data: bytes
    message_id: str
    # The envelope recipient: the address with an ASCII (punycode) domain.
    recipient: str


# Dynamic runs closer than this many lines are encoded as one (measured: bench_message.py).
# 0 since the lines of a run are cut in one C call (_line_splitter): an extra run then costs
# less than re-encoding the static lines between two runs (seed issue: 38 us per HTML part
# at 0, 46 us at 6).
MERGE_MARGIN_LINES = 0
# The rule of store.lists.check_list_slug, for the List-Id field.
_LIST_SLUG = re.compile(r"[A-Za-z0-9_-]{1,100}")
_ONE_CLICK = header_line("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
# Base64 turns each 57 input bytes into one 76-character line (RFC 2045's limit is 76).
_LINE_BYTES = 57
_LINE_CHARACTERS = 76


def base64_body(data: bytes) -> bytes:
    """Base64 in 76-character lines (RFC 2045's limit), each ending in CRLF."""
    encoded = binascii.b2a_base64(data, newline=False)
    if len(encoded) <= _LINE_CHARACTERS:
        return encoded + CRLF
    return CRLF.join(_line_splitter(len(encoded))(encoded)) + CRLF


@functools.lru_cache(maxsize=1024)
def _line_splitter(length: int):
    """Cuts `length` characters into 76-character lines in one C call (struct's "76s76s...");
    slicing line by line in Python cost twice as much (bench/bench_message.py).  The runs a
    message re-encodes have the same lengths for every recipient, so the cache always hits."""
    full, rest = divmod(length, _LINE_CHARACTERS)
    return struct.Struct(f"{_LINE_CHARACTERS}s" * full + (f"{rest}s" if rest else "")).unpack


def canonical_text(text: str) -> str:
    """`text` with CRLF line breaks: RFC 2046 section 4.1.1 makes CRLF the canonical line
    break of every text/* type, and RFC 2045 section 6.8 base64-encodes the canonical form."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _canonical(slotted: SlottedText) -> SlottedText:
    return SlottedText(tuple(canonical_text(part) for part in slotted.parts), slotted.slots)


class _Base64Layout:
    """Base64 of one slotted part, encoding per recipient only the lines that hold a slot.

    Every slot value of a message has a length fixed per issue (tokens are fixed-size, the
    base URL is one), so a slot sits at the same byte offsets in every recipient's part and
    the base64 lines that hold no slot are the same for everyone: they are encoded once
    here.  Per recipient only a few dozen lines around the slots are encoded, instead of
    the whole ~90 KB part (which alone would cost more than all the rest of `build`).
    """

    def __init__(self, slotted: SlottedText, sample: Mapping[str, bytes], *, margin: int = MERGE_MARGIN_LINES) -> None:
        self.slotted = slotted
        self.lengths = {name: len(sample[name]) for name in slotted.slots}
        filled = slotted.fill_bytes(sample)
        self.size = len(filled)
        dynamic: set[int] = set()
        offset = len(slotted.encoded_parts[0])
        for name, part in zip(slotted.slots, slotted.encoded_parts[1:], strict=True):
            end = offset + self.lengths[name]
            if end > offset:
                # The margin joins runs separated by a few static lines: encoding a line
                # costs less than the call overhead of one more piece.
                dynamic.update(range(offset // _LINE_BYTES, (end - 1) // _LINE_BYTES + 1 + margin))
            offset = end + len(part)
        lines = -(-len(filled) // _LINE_BYTES)
        # Alternate static runs (bytes, encoded now) and dynamic runs ((start, end) offsets).
        self.pieces: list[bytes | tuple[int, int]] = []
        line = 0
        while line < lines:
            is_dynamic = line in dynamic
            last = line
            while last + 1 < lines and ((last + 1) in dynamic) == is_dynamic:
                last += 1
            start, end = line * _LINE_BYTES, min((last + 1) * _LINE_BYTES, len(filled))
            self.pieces.append((start, end) if is_dynamic else base64_body(filled[start:end]))
            line = last + 1

    def encode(self, values: Mapping[str, bytes]) -> bytes:
        return b"".join(self.encoded_pieces(values))

    def encoded_pieces(self, values: Mapping[str, bytes]) -> list[bytes]:
        """The encoded part in pieces, for the caller to join into the whole message at
        once: joining here too would copy the ~100 KB part one more time per message."""
        filled = self.slotted.fill_bytes(values)
        if len(filled) != self.size:
            # A value of another length moved the lines after it.  Values are built the same
            # way for everyone, so a change in one shows in the total.
            return [base64_body(filled)]
        return [piece if type(piece) is bytes else base64_body(filled[piece[0] : piece[1]]) for piece in self.pieces]


class MessageFactory:
    """Builds the personal messages of one issue (or of a test send)."""

    def __init__(
        self,
        settings: Settings,
        rendered: Rendered,
        *,
        issue_id: int,
        issue_uid: str,
        list_slug: str,
        links: Links,
        subject_prefix: str = "",
    ) -> None:
        # The slug goes into List-Id as it is (RFC 2919 section 2: a dot-atom); fullmatch,
        # since `$` would let a final newline through and end the header block.
        if not _LIST_SLUG.fullmatch(list_slug):
            raise InputError(f"list {list_slug!r} is not a valid slug (letters, digits, '-' and '_')")
        self.rendered = rendered
        self.issue_id = issue_id
        self.issue_uid = issue_uid
        self.links = links
        self.tracking = settings.tracking
        self.domain = settings.sender_domain
        self.sender = settings.from_address
        self._click_prefix = f"{links.base_url}/c/".encode("ascii")
        self._unsubscribe_prefix = f"{links.base_url}/u/".encode("ascii")
        # The pixel's tag around its token, which is URL-safe and needs no escaping.
        before, after = open_pixel_tag(links.open_pixel(0, 0)).split(links.tokens.sign(Purpose.OPEN, 0, 0))
        self._pixel_tag = (before.encode("ascii"), after.encode("ascii"))
        self._view = links.issue_page(rendered.issue.slug)
        # Per-issue headers, encoded once.  The boundary uses '.', which base64 never
        # produces, so it cannot occur inside either part.
        self.boundary = f"nl.alt.{hashlib.sha1(f'{issue_uid}'.encode()).hexdigest()[:24]}"
        from_name, from_address = parseaddr(settings.newsletter.from_)
        head = [
            header_line("From", format_address(from_name, ascii_address(from_address))),
        ]
        if settings.newsletter.reply_to:
            reply_name, reply_address = parseaddr(settings.newsletter.reply_to)
            head.append(header_line("Reply-To", format_address(reply_name, ascii_address(reply_address))))
        head.append(header_line("Subject", encode_words(subject_prefix + rendered.issue.subject)))
        # RFC 2919: a list's identity, stable across issues.
        list_name = settings.newsletter.name
        list_phrase = encode_words(list_name)
        # Folded before the id when encoded, as for addresses (format_address).
        between = " " if list_phrase == list_name else "\r\n "
        head.append(header_line("List-Id", f"{list_phrase}{between}<{list_slug}.{self.domain}>"))
        # Gmail's Feedback Loop groups complaints by these fields (CampaignId:CustomerId:
        # MailType:SenderId); they must not contain ':'.
        campaign = re.sub(r"[^A-Za-z0-9_.-]", "-", rendered.issue.slug)
        head.append(
            header_line(
                "Feedback-ID", f"{campaign}:{re.sub(r'[^A-Za-z0-9_.-]', '-', list_slug)}:newsletter:{self.domain}"
            )
        )
        head.append(header_line("MIME-Version", "1.0"))
        self._head = b"".join(head)
        # A mailto in List-Unsubscribe only where `[newsletter] unsubscribe_mailto` names a
        # mailbox that is read (`newsletter events inbox` applies its mail): an address
        # nobody reads would promise an unsubscribe that never happens.
        mailbox = settings.newsletter.unsubscribe_mailto
        self._mailto_prefix = (
            f"mailto:{quote(ascii_address(mailbox), safe='@')}?subject=unsubscribe%20".encode("ascii")
            if mailbox
            else None
        )
        self._body_head = (
            header_line("Content-Type", f'multipart/alternative; boundary="{self.boundary}"')
            + CRLF
            + f"--{self.boundary}".encode("ascii")
            + CRLF
            + header_line("Content-Type", 'text/plain; charset="utf-8"')
            + header_line("Content-Transfer-Encoding", "base64")
            + CRLF
        )
        self._between = (
            f"--{self.boundary}".encode("ascii")
            + CRLF
            + header_line("Content-Type", 'text/html; charset="utf-8"')
            + header_line("Content-Transfer-Encoding", "base64")
            + CRLF
        )
        self._end = f"--{self.boundary}--".encode("ascii") + CRLF
        self._link_count = len(rendered.links)
        self._link_slots = [f"{LINK_PREFIX}{index}" for index in range(self._link_count)]
        self._original_links = {
            slot: html.escape(url).encode("utf-8") for slot, url in zip(self._link_slots, rendered.links, strict=True)
        }
        self._view_html = html.escape(self._view).encode("utf-8")
        sample_html, sample_text = self._slot_values(0)
        self._html = _Base64Layout(_canonical(rendered.html), sample_html)
        self._text = _Base64Layout(_canonical(rendered.text), sample_text)

    def message_id(self, subscriber_id: int) -> str:
        """Stable per (issue, subscriber): a resumed or repeated send reuses it, so a
        receiver that sees the same message twice can tell it is the same message."""
        return ledger_message_id(self.issue_id, subscriber_id, self.issue_uid, self.domain)

    def _slot_values(self, subscriber_id: int) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """The recipient's slot values for the HTML part (escaped) and the text part.  Our
        tokens and URLs are URL-safe ASCII, so they need no escaping."""
        # One MAC for all of the message's tokens (newsletter/tokens.py).
        tokens = self.links.tokens.sign_message(
            self.issue_id, subscriber_id, self._link_count if self.tracking.clicks else 0
        )
        unsubscribe = self._unsubscribe_prefix + tokens.unsubscribe
        html_values: dict[str, bytes] = {
            UNSUBSCRIBE_URL: unsubscribe,
            VIEW_URL: self._view_html,
            OPEN_PIXEL: self._pixel_tag[0] + tokens.open + self._pixel_tag[1] if self.tracking.opens else b"",
        }
        if self.tracking.clicks:
            prefix = self._click_prefix
            html_values.update(zip(self._link_slots, [prefix + token for token in tokens.clicks], strict=True))
        else:
            html_values.update(self._original_links)
        text_values = {UNSUBSCRIBE_URL: unsubscribe, VIEW_URL: self._view.encode("utf-8"), OPEN_PIXEL: b""}
        return html_values, text_values

    def build(self, recipient: Recipient, *, message_id: str | None = None) -> OutgoingMessage:
        to_address = ascii_address(recipient.email)
        message_id = message_id or self.message_id(recipient.subscriber_id)
        html_values, text_values = self._slot_values(recipient.subscriber_id)
        unsubscribe = text_values[UNSUBSCRIBE_URL]
        # The token is URL-safe already; the mailbox that gets this mail can act on it.
        mailto = (
            [b">,\r\n <", self._mailto_prefix, unsubscribe.rsplit(b"/", 1)[1]]
            if self._mailto_prefix is not None
            else []
        )
        data = b"".join(
            [
                self._head,
                header_line("To", format_address(recipient.name, to_address)),
                header_line("Date", date_now()),
                header_line("Message-ID", message_id),
                # RFC 8058 one-click unsubscribe: receivers POST `List-Unsubscribe=One-Click`
                # to the https URL.  Folded after the comma; a URL has no place to fold, so
                # its line may pass 78 (RFC 5322's SHOULD; never its 998).
                b"List-Unsubscribe: <",
                unsubscribe,
                *mailto,
                b">\r\n",
                _ONE_CLICK,
                self._body_head,
                *self._text.encoded_pieces(text_values),
                self._between,
                *self._html.encoded_pieces(html_values),
                self._end,
            ]
        )
        return OutgoingMessage(data, message_id, to_address)
