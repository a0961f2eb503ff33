"""The message as an SMTP server receives it, from a sender that signs with DKIM itself:
every header by the book (Date zone, lines folded at 78 where whitespace allows, none over
998), the EHLO name, and a DKIM signature that dkimpy verifies against the public key a
DNS server on 127.0.0.1 serves.  Nothing is mocked: the campaign sends through the real
SmtpTransport to aiosmtpd, and the verifier asks the DNS server over UDP."""

from __future__ import annotations

import re
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime

import pytest
from dkim_keys import SELECTOR, make_key
from mail_lines import assert_folded_by_the_book, header_fields

from newsletter.errors import ConfigError
from newsletter.mail.dkim_signer import dkim_signer
from tests.dns_server import LocalDns
from tests.send_world import World, parse_message
from tests.transport_servers import LocalSmtp

pytest_plugins = ["dns_server"]

LONG_NAME = ("Reader With A Very Long Name " * 200)[:5000].strip()
ENCODED_LOOKING = "=?utf-8?b?5pSv5LuY5a6d5a6J5YWo5Lit5b+D?="
NAMES = ["刘洋", LONG_NAME, ENCODED_LOOKING, "x" * 5000]


def dns_lookup(dns: LocalDns):
    """dkimpy's `dnsfunc`: the TXT record of a name, asked of the local DNS server."""
    resolver = dns.resolver()

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        answer = resolver.resolve(name.decode("ascii").rstrip("."), "TXT")
        return b"".join(answer[0].strings)

    return lookup


@pytest.fixture(scope="module")
def signed(tmp_path_factory, _dns_server: LocalDns):
    """Four subscribers sent the example issue through SMTP with DKIM; the server's record."""
    root = tmp_path_factory.mktemp("dkim-world")
    key_file, record = make_key(root)
    _dns_server.add(f"{SELECTOR}._domainkey.example.com", "TXT", record)
    world = World(root, f"sqlite:///{root / 'newsletter.db'}")
    try:
        with LocalSmtp() as server:
            world.use_smtp(server)
            world.configure("transport.smtp", dkim_selector=SELECTOR, dkim_key_file=str(key_file))
            world.add_subscribers(len(NAMES), names=NAMES)
            summary = world.send()
            assert summary.sent == len(NAMES) and summary.complete
            yield server.received
    finally:
        world.close()


def display_name(content: bytes) -> str:
    """The To display name decoded as RFC 2047 section 6.2 says (adjacent encoded words join
    without a space; email.headerregistry puts one between them)."""
    [to] = [field for field in header_fields(content) if field.startswith(b"To:")]
    phrase = to.replace(b"\r\n", b"").partition(b":")[2].rpartition(b"<")[0].decode("ascii")
    decoded = str(make_header(decode_header(phrase))).strip()
    return decoded[1:-1] if decoded.startswith('"') else decoded


def test_every_message_verifies_against_the_key_the_dns_server_publishes(signed, _dns_server):
    import dkim

    assert len(signed) == len(NAMES)
    for delivery in signed:
        assert dkim.verify(delivery.content, dnsfunc=dns_lookup(_dns_server)), delivery.rcpt_tos
    assert (f"{SELECTOR}._domainkey.example.com", "TXT") in _dns_server.queries


def test_the_signature_is_relaxed_for_the_from_domain_and_covers_one_click_unsubscribe(signed):
    message = parse_message(signed[0].content)
    tags = dict(
        part.strip().split("=", 1) for part in re.sub(r"\s+", "", str(message["DKIM-Signature"])).split(";") if part
    )
    assert tags["d"] == "example.com" and tags["s"] == SELECTOR
    assert tags["c"] == "relaxed/relaxed" and tags["a"] == "rsa-sha256"
    signed_headers = tags["h"].split(":")
    for name in ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post", "list-id"):
        assert name in signed_headers, name
    # Named once more than they occur, so a second one added on the way breaks the signature.
    assert signed_headers.count("from") == 2 and signed_headers.count("list-unsubscribe") == 2


def test_a_list_unsubscribe_changed_on_the_way_breaks_the_signature(signed, _dns_server):
    import dkim

    content = signed[0].content
    tampered = re.sub(rb"List-Unsubscribe: <https://[^/]+/", b"List-Unsubscribe: <https://evil.example.net/", content)
    assert tampered != content
    assert not dkim.verify(tampered, dnsfunc=dns_lookup(_dns_server))
    added = b"List-Unsubscribe: <https://evil.example.net/u/x>\r\n" + content
    assert not dkim.verify(added, dnsfunc=dns_lookup(_dns_server))


def test_every_header_line_is_folded_by_the_book_even_for_5000_octet_names(signed):
    for delivery in signed:
        for field in header_fields(delivery.content):
            assert_folded_by_the_book(field)
    assert sorted(display_name(d.content) for d in signed) == sorted(NAMES)


def test_date_carries_a_numeric_zone(signed):
    for delivery in signed:
        date = parse_message(delivery.content)["Date"]
        assert re.search(r" \+0000$", str(date)), date
        assert parsedate_to_datetime(str(date)).utcoffset().total_seconds() == 0


def test_a_name_that_looks_like_an_encoded_word_reads_as_typed(signed):
    raw = [d.content for d in signed if display_name(d.content) == ENCODED_LOOKING]
    assert len(raw) == 1
    assert ENCODED_LOOKING.encode() not in raw[0], "written out as it is, a reader would see what it decodes to"


def test_ehlo_names_the_from_domain_by_default(signed):
    assert {delivery.helo for delivery in signed} == {"example.com"}


def test_ehlo_name_is_the_configured_local_hostname(tmp_path):
    world = World(tmp_path, f"sqlite:///{tmp_path / 'newsletter.db'}")
    try:
        with LocalSmtp() as server:
            world.use_smtp(server)
            world.configure("transport.smtp", local_hostname="mta1.example.com")
            world.add_subscribers(1)
            world.send()
            assert [delivery.helo for delivery in server.received] == ["mta1.example.com"]
            assert "DKIM-Signature" not in parse_message(server.received[0].content)
    finally:
        world.close()


@pytest.mark.parametrize(
    "values, key, words",
    [
        ({"dkim_selector": SELECTOR}, "transport.smtp.dkim_key_file", "needs both"),
        ({"dkim_key_file": "dkim.pem"}, "transport.smtp.dkim_selector", "needs both"),
        ({"dkim_selector": SELECTOR, "dkim_key_file": "missing.pem"}, "transport.smtp.dkim_key_file", "cannot read"),
        ({"dkim_selector": SELECTOR, "dkim_key_file": "not-a-key.pem"}, "transport.smtp.dkim_key_file", "not a PEM"),
    ],
)
def test_a_dkim_setting_that_cannot_work_is_one_config_error_naming_the_key(tmp_path, values, key, words):
    (tmp_path / "not-a-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----\n")
    world = World(tmp_path, f"sqlite:///{tmp_path / 'newsletter.db'}")
    try:
        world.configure("transport", kind="smtp")
        world.configure("transport.smtp", **values)
        with pytest.raises(ConfigError) as caught:
            dkim_signer(world.settings)
        message = str(caught.value)
        assert key in message and words in message and "\n" not in message
    finally:
        world.close()
