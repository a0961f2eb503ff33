"""Personal messages (newsletter/message.py), held to the RFCs by parsing what was built.

Every test parses the bytes with `email.parser` and `email.policy.default`, the way a
receiving program reads them, and checks the headers receivers enforce (RFC 8058, 2919,
2047, 5322) and the body a reader sees: every web link tracked and resolving to the
original, the pixel last, and the fast base64 layout byte-identical to a plain fill.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import re
import time
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sample_issues import DIGEST, seed_case

from newsletter.compose.issue.parse import load_issue
from newsletter.compose.render import Rendered, Renderer, SlottedText
from newsletter.config import Settings, replace
from newsletter.errors import InputError
from newsletter.mail.message import MessageFactory, Recipient, _Base64Layout
from newsletter.store import ledger
from newsletter.tokens import Claim, Links, Purpose, Tokens

pytest.register_assert_rewrite("tests.send_world")
from tests.send_world import (
    BASE_URL,
    EXAMPLE_ISSUE,
    SECRET,
    World,
    parse_message,
)

pytest_plugins = ["tests.send_world"]

ISSUE_ID = 7
ISSUE_UID = "0123456789abcdef"
SUBSCRIBER_IDS = [0, 1, 9, 10, 57, 99, 1_000, 12_345, 2**31 - 1, 2**40 + 7, 2**63 - 1]
NAMES = [
    "",
    "Li",
    "王小明",
    'Jane "JJ" Doe, PhD',
    "O'Brien (editor)",
    "back\\slash",
    "长" * 120,
    ("A very long ASCII display name " * 4).strip(),
    "Zoë Ünicode-Łukasz 🤖",
]

# An issue with what the example lacks: mailto links, a query string with '&', a
# non-ASCII path, the same URL twice and an image.
EDGE_ISSUE = """\
# 🤖 AI行业速递 - 2026年12月01日

## 第一条：链接的各种写法

> **分类：** 测试
> **来源：** [编辑部](mailto:editors@example.com) 、 [查询](https://search.example.com/q?a=1&b=2) 、 [中文路径](https://example.net/文章/一)

**核心洞察：** 见 [原文](https://search.example.com/q?a=1&b=2) 与 [来信](mailto:tips@example.com?subject=hi)，以及图片 ![示意图](https://img.example.com/a.png)。
**内容简介：**

- 要点：一段文字，带 [另一个链接](https://news.example.org/x#frag)。

---

## 其他相关资讯

- [链接一](https://one.example.org/)
"""


def make_settings(tmp_path: Path | None = None, **sections) -> Settings:
    base = Settings(root=tmp_path or Path.cwd())
    defaults = {
        "newsletter": {
            "name": "AI行业速递",
            "from_": "AI行业速递 <digest@example.com>",
            "base_url": BASE_URL,
            "secret": SECRET,
        },
    }
    for section, values in sections.items():
        defaults.setdefault(section, {}).update(values)
    return replace(base, **defaults)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return make_settings()


def render(settings: Settings, path: Path) -> Rendered:
    return Renderer(settings).render(load_issue(path, default_language="zh-CN"))


@pytest.fixture(scope="module")
def rendered(settings: Settings) -> Rendered:
    return render(settings, EXAMPLE_ISSUE)


@pytest.fixture(scope="module")
def edge_rendered(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    path = tmp_path_factory.mktemp("edge") / "2026-12-01.md"
    path.write_text(EDGE_ISSUE, encoding="utf-8")
    return render(settings, path)


def factory_for(settings: Settings, rendered: Rendered, **options) -> MessageFactory:
    return MessageFactory(
        settings,
        rendered,
        issue_id=ISSUE_ID,
        issue_uid=ISSUE_UID,
        list_slug="default",
        links=Links(settings.base_url, Tokens(settings.newsletter.secret)),
        **options,
    )


def tokens() -> Tokens:
    return Tokens(SECRET)


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "a" and "href" in values:
            self.hrefs.append(values["href"])
        elif tag == "img":
            self.images.append(values.get("src") or "")


def links_in(html: str) -> _Hrefs:
    scan = _Hrefs()
    scan.feed(html)
    scan.close()
    return scan


def parts(message) -> tuple:
    text_part, html_part = message.iter_parts()
    return text_part, html_part


def plain_fill(
    rendered: Rendered,
    links: Links,
    subscriber_id: int,
    *,
    clicks: bool = True,
    opens: bool = True,
    issue_id: int = ISSUE_ID,
) -> tuple[str, str]:
    """HTML and text as a straightforward fill of the slots, through Rendered.slot_values."""
    html_values, text_values = rendered.slot_values(
        unsubscribe_url=links.unsubscribe(issue_id, subscriber_id),
        view_url=links.issue_page(rendered.issue.slug),
        link_urls=[links.click(issue_id, subscriber_id, n) for n in range(len(rendered.links))] if clicks else None,
        open_pixel_url=links.open_pixel(issue_id, subscriber_id) if opens else None,
    )
    return rendered.html.fill(html_values), rendered.text.fill(text_values)


def base64_body(text: str) -> bytes:
    """What a plain encoder makes of a part: base64 of the UTF-8 in 76-character CRLF lines."""
    return base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")


def raw_part_bodies(data: bytes) -> list[bytes]:
    """The encoded bodies of the two parts, exactly as they are in the message."""
    head, _, body = data.partition(b"\r\n\r\n")
    boundary = re.search(rb'boundary="([^"]+)"', head).group(1)
    sections = body.split(b"--" + boundary)
    return [section.partition(b"\r\n\r\n")[2] for section in sections[1:-1]]


# ---------------------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------------------


def test_list_unsubscribe_headers_are_rfc_8058_exactly(settings, rendered):
    built = factory_for(settings, rendered).build(Recipient(42, "reader@example.org", "读者"))
    message = parse_message(built.data)

    unsubscribe = message["List-Unsubscribe"]
    # No unsubscribe_mailto configured: the https URL alone, no mailbox that nobody reads.
    match = re.fullmatch(r"<(https://news\.example\.com/u/([A-Za-z0-9_-]{44}))>", str(unsubscribe))
    assert match, unsubscribe
    assert "mailto:" not in built.data.decode("ascii").split("\r\n\r\n", 1)[0]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Exactly one of each: a receiver seeing two would not know which to use.
    assert len(message.get_all("List-Unsubscribe")) == 1 and len(message.get_all("List-Unsubscribe-Post")) == 1
    # The https URL is the one in the footer of the HTML and the text part.
    html = parts(message)[1].get_content()
    text = parts(message)[0].get_content()
    assert match.group(1) in links_in(html).hrefs and match.group(1) in text


def test_list_unsubscribe_url_names_the_issue_and_the_subscriber(settings, rendered):
    factory = factory_for(settings, rendered)
    for subscriber_id in (1, 2, 2**40 + 7):
        message = parse_message(factory.build(Recipient(subscriber_id, f"r{subscriber_id}@example.org")).data)
        url = re.search(r"<(https://[^>]+)>", str(message["List-Unsubscribe"])).group(1)
        token = url.rsplit("/u/", 1)[1]
        assert tokens().verify(token, Purpose.UNSUBSCRIBE) == Claim(Purpose.UNSUBSCRIBE, ISSUE_ID, subscriber_id)


def test_list_unsubscribe_mailto_only_when_configured_and_it_carries_the_token(rendered):
    settings = make_settings(newsletter={"unsubscribe_mailto": "leave@lists.example.com"})
    message = parse_message(factory_for(settings, rendered).build(Recipient(3, "r@example.org")).data)
    match = re.fullmatch(
        r"<https://news\.example\.com/u/([A-Za-z0-9_-]{44})>, "
        r"<mailto:leave@lists\.example\.com\?subject=unsubscribe%20([A-Za-z0-9_-]{44})>",
        str(message["List-Unsubscribe"]),
    )
    assert match, message["List-Unsubscribe"]
    # The mail to that mailbox names the same issue and subscriber as the one-click URL.
    assert match.group(1) == match.group(2)


def test_list_id_feedback_id_and_from(settings, rendered):
    message = parse_message(factory_for(settings, rendered).build(Recipient(3, "r@example.org")).data)
    assert str(message["List-Id"]) == "AI行业速递 <default.example.com>"
    assert message["Feedback-ID"] == "2026-11-30:default:newsletter:example.com"
    assert message["From"].addresses[0].display_name == "AI行业速递"
    assert message["From"].addresses[0].addr_spec == "digest@example.com"
    assert message["MIME-Version"] == "1.0"


def test_reply_to_comes_from_the_config(rendered):
    settings = make_settings(newsletter={"reply_to": "编辑部 <editors@example.com>"})
    message = parse_message(factory_for(settings, rendered).build(Recipient(3, "r@example.org")).data)
    assert message["Reply-To"].addresses[0].addr_spec == "editors@example.com"
    assert message["Reply-To"].addresses[0].display_name == "编辑部"


def test_message_id_is_on_the_sender_domain_and_stable_per_issue_and_subscriber(settings, rendered):
    factory = factory_for(settings, rendered)
    first = parse_message(factory.build(Recipient(5, "a@example.org")).data)["Message-ID"]
    again = parse_message(factory_for(settings, rendered).build(Recipient(5, "a@example.org")).data)["Message-ID"]
    other_subscriber = parse_message(factory.build(Recipient(6, "b@example.org")).data)["Message-ID"]
    other_issue = MessageFactory(
        settings,
        rendered,
        issue_id=ISSUE_ID + 1,
        issue_uid="fedcba9876543210",
        list_slug="default",
        links=factory.links,
    ).build(Recipient(5, "a@example.org"))

    assert re.fullmatch(r"<[^@<>\s]+@example\.com>", first)
    assert first == again == factory.message_id(5)
    assert len({first, other_subscriber, other_issue.message_id}) == 3


def test_date_is_the_time_of_building(settings, rendered):
    before = time.time()
    message = parse_message(factory_for(settings, rendered).build(Recipient(3, "r@example.org")).data)
    sent_at = parsedate_to_datetime(message["Date"]).timestamp()
    assert before - 1 <= sent_at <= time.time() + 1
    assert parsedate_to_datetime(message["Date"]).utcoffset() is not None


@pytest.mark.parametrize(
    "subject",
    [
        "🤖 AI行业速递 - 2026年11月30日",
        'She said "hi" — and left',
        "Plain ASCII subject",
        "端侧大模型走进千元机：" * 12,
        "mixed 中文 and English, with “quotes” and emoji 🚀🚀",
    ],
)
def test_subject_is_rfc_2047_encoded_and_decodes_back(settings, rendered, subject):
    issue = dataclasses.replace(rendered.issue, subject=subject)
    built = factory_for(settings, dataclasses.replace(rendered, issue=issue)).build(Recipient(1, "r@example.org"))
    message = parse_message(built.data)

    assert message["Subject"] == subject
    raw_subject = raw_field(built.data, b"Subject")
    assert raw_subject.isascii()
    if not subject.isascii():
        assert b"=?utf-8?b?" in raw_subject
    check_line_lengths(raw_subject)


def raw_field(data: bytes, name: bytes) -> bytes:
    """A header field as written, folded lines and all."""
    return re.search(rb"^" + name + rb":.*?(?=\r\n[^ \t])", header_block(data), re.DOTALL | re.MULTILINE).group(0)


def check_line_lengths(field: bytes) -> None:
    for line in field.split(b"\r\n"):
        # RFC 2047 section 2: a line holding an encoded word is at most 76 characters;
        # RFC 5322 section 2.1.1: no line over 998.
        assert len(line) <= (76 if b"=?" in line else 998), line


def test_test_send_prefixes_the_subject(settings, rendered):
    message = parse_message(
        factory_for(settings, rendered, subject_prefix="[TEST] ").build(Recipient(0, "me@example.org")).data
    )
    assert message["Subject"] == "[TEST] " + rendered.issue.subject


@pytest.mark.parametrize("name", NAMES)
def test_display_names_are_encoded_or_quoted_and_decode_back(settings, rendered, name):
    built = factory_for(settings, rendered).build(Recipient(1, "reader@example.org", name))
    message = parse_message(built.data)

    address = message["To"].addresses
    assert len(address) == 1
    assert address[0].addr_spec == "reader@example.org"
    assert not message["To"].defects
    raw_to = raw_field(built.data, b"To")
    assert raw_to.isascii()
    check_line_lengths(raw_to)
    # Decoded as RFC 2047 section 6.2 says: adjacent encoded words join without a space.
    # (email.headerregistry puts a space between them inside an address's display name,
    # also for headers Python itself folded; its Subject decoding is right.)
    # Unfolded first (RFC 5322 section 2.2.3: remove each CRLF before whitespace).
    phrase = raw_to.replace(b"\r\n", b"").partition(b":")[2].rpartition(b"<")[0].decode("ascii")
    decoded = str(make_header(decode_header(phrase))).strip()
    if decoded.startswith('"'):
        decoded = decoded[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    assert decoded == name
    if len(name) < 40 or name.isascii():
        assert address[0].display_name == name


def header_block(data: bytes) -> bytes:
    return data.partition(b"\r\n\r\n")[0]


def test_idn_domain_goes_out_as_punycode(settings, rendered):
    built = factory_for(settings, rendered).build(Recipient(1, "leser@bücher.example", "Leser"))
    message = parse_message(built.data)
    assert built.recipient == "leser@xn--bcher-kva.example"
    assert message["To"].addresses[0].addr_spec == "leser@xn--bcher-kva.example"
    assert built.data.isascii()


def test_non_ascii_local_part_is_refused(settings, rendered):
    with pytest.raises(InputError, match="SMTPUTF8"):
        factory_for(settings, rendered).build(Recipient(1, "读者@example.org"))


# ---------------------------------------------------------------------------------------
# MIME structure and encoding
# ---------------------------------------------------------------------------------------


def test_body_is_multipart_alternative_text_then_html_both_base64(settings, rendered):
    message = parse_message(factory_for(settings, rendered).build(Recipient(1, "r@example.org")).data)
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = parts(message)
    assert [text_part.get_content_type(), html_part.get_content_type()] == ["text/plain", "text/html"]
    for part in (text_part, html_part):
        assert part["Content-Transfer-Encoding"] == "base64"
        assert part.get_content_charset() == "utf-8"
        assert not part.defects
    assert not message.defects
    assert "端侧大模型走进千元机" in text_part.get_content()
    assert "端侧大模型走进千元机" in html_part.get_content()


@pytest.mark.parametrize("subscriber_id", [1, 2**40 + 7])
def test_message_is_7bit_with_crlf_line_ends_and_short_body_lines(settings, rendered, subscriber_id):
    data = factory_for(settings, rendered).build(Recipient(subscriber_id, "r@example.org", "王小明 " * 30)).data
    assert data.isascii() and b"\x00" not in data
    assert data.count(b"\n") == data.count(b"\r\n") and data.count(b"\r") == data.count(b"\r\n")
    assert data.endswith(b"\r\n")
    body = data.partition(b"\r\n\r\n")[2]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_text_parts_use_crlf_line_breaks_inside_the_encoding(settings, rendered):
    # RFC 2046 section 4.1.1: the canonical form of any text subtype represents a line
    # break as CRLF, and RFC 2045 section 6.8 encodes that canonical form in base64.
    message = parse_message(factory_for(settings, rendered).build(Recipient(1, "r@example.org")).data)
    for part in parts(message):
        decoded = part.get_payload(decode=True)
        assert decoded.count(b"\n") == decoded.count(b"\r\n"), part.get_content_type()


# ---------------------------------------------------------------------------------------
# Links, pixel, tracking switches
# ---------------------------------------------------------------------------------------


def check_links_resolve(rendered: Rendered, html: str, subscriber_id: int, resolve, *, issue_id: int = ISSUE_ID) -> int:
    """Every http(s) link of `html` other than our own pages is a click URL whose token
    names this issue and subscriber and whose link resolves to the original at that place."""
    links = Links(BASE_URL, tokens())
    plain_html, _ = plain_fill(rendered, links, subscriber_id, clicks=False, issue_id=issue_id)
    tracked, original = links_in(html).hrefs, links_in(plain_html).hrefs
    assert len(tracked) == len(original)
    own = {links.unsubscribe(issue_id, subscriber_id), links.issue_page(rendered.issue.slug)}
    checked = 0
    for sent, meant in zip(tracked, original, strict=False):
        if not meant.startswith(("http://", "https://")) or meant in own:
            assert sent == meant
            continue
        match = re.fullmatch(r"https://news\.example\.com/c/([A-Za-z0-9_-]{44})", sent)
        assert match, f"{sent} is not a click URL (for {meant})"
        claim = tokens().verify(match.group(1), Purpose.CLICK)
        assert (claim.issue_id, claim.subscriber_id) == (issue_id, subscriber_id)
        assert resolve(claim.link) == meant
        checked += 1
    return checked


@pytest.mark.parametrize("which", ["example", "edge"])
def test_every_web_link_is_a_click_url_resolving_to_the_original(settings, rendered, edge_rendered, which):
    chosen = rendered if which == "example" else edge_rendered
    message = parse_message(factory_for(settings, chosen).build(Recipient(77, "r@example.org")).data)
    html = parts(message)[1].get_content()
    checked = check_links_resolve(chosen, html, 77, lambda index: chosen.links[index])
    # A repeated URL is one link with one index, clicked from two places.
    assert checked >= len(chosen.links) >= 4


def test_the_edge_issue_has_the_links_it_is_meant_to_test(edge_rendered):
    # Guards the test above: '&' in a query, a non-ASCII path, a fragment, a repeated URL.
    assert "https://search.example.com/q?a=1&b=2" in edge_rendered.links
    # The issue parser percent-encodes a non-ASCII path, as a browser would.
    assert "https://example.net/%E6%96%87%E7%AB%A0/%E4%B8%80" in edge_rendered.links
    assert "https://news.example.org/x#frag" in edge_rendered.links
    assert len(edge_rendered.links) == len(set(edge_rendered.links))


def test_mailto_links_and_images_are_untouched(settings, edge_rendered):
    message = parse_message(factory_for(settings, edge_rendered).build(Recipient(5, "r@example.org")).data)
    found = links_in(parts(message)[1].get_content())
    assert "mailto:editors@example.com" in found.hrefs
    assert "mailto:tips@example.com?subject=hi" in found.hrefs
    assert "https://img.example.com/a.png" in found.images


def test_click_tokens_resolve_through_the_links_table(world: World):
    world.add_subscribers(3)
    plan = world.plan()
    factory = MessageFactory(
        plan.settings,
        plan.rendered,
        issue_id=plan.stored.id,
        issue_uid=plan.stored.uid,
        list_slug=plan.list_slug,
        links=Links(plan.settings.base_url, tokens()),
    )
    subscriber_id = 2
    html = parts(parse_message(factory.build(Recipient(subscriber_id, "reader1@example.org")).data))[1].get_content()

    def resolve(index: int) -> str | None:
        with world.store.read() as conn:
            return ledger.link_url(conn, plan.stored.id, index)

    assert check_links_resolve(plan.rendered, html, subscriber_id, resolve, issue_id=plan.stored.id) >= 5


def test_open_pixel_is_the_last_thing_in_the_body(settings, rendered):
    message = parse_message(factory_for(settings, rendered).build(Recipient(8, "r@example.org")).data)
    html = parts(message)[1].get_content()
    found = links_in(html)
    pixel = found.images[-1]
    match = re.fullmatch(r"https://news\.example\.com/o/([A-Za-z0-9_-]{44})\.gif", pixel)
    assert match, pixel
    assert tokens().verify(match.group(1), Purpose.OPEN) == Claim(Purpose.OPEN, ISSUE_ID, 8)
    tail = html[html.index(pixel) :]
    tail = tail[tail.index(">") + 1 :]
    # After the pixel only closing tags: nothing a reader sees, nothing Gmail's clip could
    # leave in while cutting the pixel.
    assert re.fullmatch(r"(\s|</[a-z]+>)*", tail), tail


def test_with_clicks_off_links_go_out_untouched(rendered):
    settings = make_settings(tracking={"clicks": False})
    message = parse_message(factory_for(settings, rendered).build(Recipient(8, "r@example.org")).data)
    hrefs = links_in(parts(message)[1].get_content()).hrefs
    assert not [href for href in hrefs if "/c/" in href]
    for url in rendered.links:
        assert url in hrefs
    # The pixel and the unsubscribe link stay.
    assert "/o/" in parts(message)[1].get_content()


def test_with_opens_off_there_is_no_pixel(rendered):
    settings = make_settings(tracking={"opens": False})
    message = parse_message(factory_for(settings, rendered).build(Recipient(8, "r@example.org")).data)
    html = parts(message)[1].get_content()
    assert "/o/" not in html
    assert not [src for src in links_in(html).images if "gif" in src]
    assert any("/c/" in href for href in links_in(html).hrefs)


# ---------------------------------------------------------------------------------------
# The base64 layout: byte-exact against a plain fill
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("clicks", "opens"), [(True, True), (False, True), (True, False), (False, False)])
def test_fast_layout_is_byte_exact_against_a_plain_fill(rendered, clicks, opens):
    settings = make_settings(tracking={"clicks": clicks, "opens": opens})
    factory = factory_for(settings, rendered)
    links = Links(BASE_URL, tokens())
    for subscriber_id, name in zip(SUBSCRIBER_IDS, NAMES * 2, strict=False):
        built = factory.build(Recipient(subscriber_id, "reader@example.org", name))
        html, text = plain_fill(rendered, links, subscriber_id, clicks=clicks, opens=opens)
        text_body, html_body = raw_part_bodies(built.data)
        assert decoded(text_body) == crlf(text)
        assert decoded(html_body) == crlf(html)
        # Not only the same content: the same encoding, line for line.
        assert text_body == base64_body(crlf(text)), subscriber_id
        assert html_body == base64_body(crlf(html)), subscriber_id


def crlf(text: str) -> str:
    """Text with CRLF line breaks, the canonical form of text/* (RFC 2046 section 4.1.1)."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def decoded(body: bytes) -> str:
    return base64.b64decode(body).decode("utf-8")


@pytest.mark.parametrize("path", [pytest.param(DIGEST, id="digest"), seed_case()])
def test_fast_layout_is_byte_exact_for_a_full_size_issue(settings, path):
    full = render(settings, path)
    factory = factory_for(settings, full)
    links = Links(BASE_URL, tokens())
    for subscriber_id in SUBSCRIBER_IDS:
        text_body, html_body = raw_part_bodies(factory.build(Recipient(subscriber_id, "r@example.org")).data)
        html, text = plain_fill(full, links, subscriber_id)
        assert html_body == base64_body(crlf(html))
        assert text_body == base64_body(crlf(text))


@pytest.mark.parametrize("margin", [0, 1, 2, 6, 20, 10_000])
def test_base64_layout_is_exact_for_any_slot_placement_margin_and_value_length(margin):
    chooser = random.Random(margin)
    alphabet = "abcxyz <>&\n中文字🤖é"
    for _ in range(40):
        pieces = ["".join(chooser.choice(alphabet) for _ in range(chooser.choice([0, 1, 5, 56, 57, 58, 200, 3000])))]
        slots = [f"s{n}" for n in range(chooser.randint(0, 8))]
        for _slot in slots:
            pieces.append("".join(chooser.choice(alphabet) for _ in range(chooser.choice([0, 1, 3, 57, 114, 500]))))
        slotted = SlottedText(tuple(pieces), tuple(f"link:{n}" if n % 2 else f"s_{n}" for n in range(len(slots))))
        lengths = {name: chooser.choice([0, 1, 44, 60, 130]) for name in slotted.slots}
        sample = {name: b"s" * size for name, size in lengths.items()}
        layout = _Base64Layout(slotted, sample, margin=margin)
        for trial in range(5):
            # Values of the sample's lengths (the layout's fast path), and once values that
            # move the text after them (the layout's contract: then the total differs too).
            values = {
                name: bytes(chooser.choice(b"ABCxyz019-_/") for _ in range(size)) for name, size in lengths.items()
            }
            if trial == 4 and values:
                longer = chooser.choice(list(values))
                values[longer] += b"+" * chooser.randint(1, 90)
            expected = base64.encodebytes(slotted.fill_bytes(values)).replace(b"\n", b"\r\n")
            assert layout.encode(values) == expected
