"""Signed tokens and the URLs made of them (newsletter/tracking.py)."""

from __future__ import annotations

import re
import string

import pytest

from newsletter.errors import ConfigError, TokenError
from newsletter.tokens import TOKEN_LENGTH, Claim, Links, Purpose, Tokens

SECRET = "tracking-tests-0123456789abcdef0123456789abcdef"
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
BASE64URL = string.ascii_letters + string.digits + "-_"
# Edge values of every claim field: zero, small, the largest the token can carry.
LINK_BYTES = {14, 15}  # where a token carries its link (newsletter.tokens._CLAIM)
IDS = [(0, 0), (1, 1), (7, 123_456), (2**31, 2**40), (2**32 - 1, 2**64 - 1)]


@pytest.fixture(scope="module")
def tokens() -> Tokens:
    return Tokens(SECRET)


@pytest.mark.parametrize("purpose", list(Purpose))
@pytest.mark.parametrize(("issue_id", "subscriber_id"), IDS)
def test_token_round_trips_for_every_purpose(tokens: Tokens, purpose: Purpose, issue_id: int, subscriber_id: int):
    link = 65_535 if purpose is Purpose.CLICK else None
    token = tokens.sign(purpose, issue_id, subscriber_id, link)
    assert tokens.verify(token, purpose) == Claim(purpose, issue_id, subscriber_id, link)


def test_click_token_names_its_link(tokens: Tokens):
    claims = [tokens.verify(tokens.sign(Purpose.CLICK, 3, 4, link), Purpose.CLICK) for link in (0, 1, 2, 500)]
    assert [claim.link for claim in claims] == [0, 1, 2, 500]


@pytest.mark.parametrize("purpose", list(Purpose))
def test_tampering_with_any_character_fails(tokens: Tokens, purpose: Purpose):
    import base64

    token = tokens.sign(purpose, 42, 9_001, 3 if purpose is Purpose.CLICK else None)
    original = base64.urlsafe_b64decode(token)
    for position in range(len(token)):
        for replacement in {BASE64URL[(BASE64URL.index(token[position]) + step) % 64] for step in (1, 17, 63)}:
            forged = token[:position] + replacement + token[position + 1 :]
            changed = {
                n for n, (a, b) in enumerate(zip(original, base64.urlsafe_b64decode(forged), strict=True)) if a != b
            }
            if purpose is Purpose.CLICK and changed <= LINK_BYTES:
                # A click's link is not under the MAC: it only picks among the links stored
                # for the issue (any other index is a 404 at /c/).
                assert tokens.verify(forged, purpose).link != 3
                continue
            with pytest.raises(TokenError):
                tokens.verify(forged, purpose)


def test_flipping_any_bit_of_the_decoded_token_fails(tokens: Tokens):
    import base64

    token = tokens.sign(Purpose.UNSUBSCRIBE, 42, 9_001)
    raw = base64.urlsafe_b64decode(token)
    for byte in range(len(raw)):
        for bit in range(8):
            altered = bytearray(raw)
            altered[byte] ^= 1 << bit
            with pytest.raises(TokenError):
                tokens.verify(base64.urlsafe_b64encode(bytes(altered)).decode(), Purpose.UNSUBSCRIBE)


@pytest.mark.parametrize("signed_for", list(Purpose))
def test_a_token_of_one_purpose_is_refused_for_every_other(tokens: Tokens, signed_for: Purpose):
    token = tokens.sign(signed_for, 5, 6, 0 if signed_for is Purpose.CLICK else None)
    for other in Purpose:
        if other is not signed_for:
            with pytest.raises(TokenError):
                tokens.verify(token, other)


def test_a_token_signed_under_another_secret_is_refused(tokens: Tokens):
    other = Tokens(SECRET + "x")
    with pytest.raises(TokenError):
        tokens.verify(other.sign(Purpose.UNSUBSCRIBE, 1, 2), Purpose.UNSUBSCRIBE)


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "abc",
        "A" * (TOKEN_LENGTH - 1),
        "A" * (TOKEN_LENGTH + 1),
        "*" * TOKEN_LENGTH,
        "=" * TOKEN_LENGTH,
        "é" * TOKEN_LENGTH,
    ],
)
def test_malformed_tokens_are_refused_cleanly(tokens: Tokens, malformed: str):
    with pytest.raises(TokenError):
        tokens.verify(malformed, Purpose.UNSUBSCRIBE)


@pytest.mark.parametrize(("issue_id", "subscriber_id"), IDS)
def test_tokens_have_one_fixed_url_safe_length(tokens: Tokens, issue_id: int, subscriber_id: int):
    # MessageFactory's base64 layout depends on it: slot values of one length for everyone.
    for purpose in Purpose:
        token = tokens.sign(purpose, issue_id, subscriber_id, 65_535 if purpose is Purpose.CLICK else None)
        assert len(token) == TOKEN_LENGTH == 44
        assert URL_SAFE.match(token), token


@pytest.mark.parametrize("count", [0, 1, 2, 3, 40])
def test_sign_message_equals_sign_for_each_token(tokens: Tokens, count: int):
    message = tokens.sign_message(17, 2**40 + 3, count)
    assert message.unsubscribe.decode("ascii") == tokens.sign(Purpose.UNSUBSCRIBE, 17, 2**40 + 3)
    assert message.open.decode("ascii") == tokens.sign(Purpose.OPEN, 17, 2**40 + 3)
    assert [token.decode("ascii") for token in message.clicks] == [
        tokens.sign(Purpose.CLICK, 17, 2**40 + 3, n) for n in range(count)
    ]
    for n, token in enumerate(message.clicks):
        assert tokens.verify(token.decode("ascii"), Purpose.CLICK) == Claim(Purpose.CLICK, 17, 2**40 + 3, n)


def test_the_click_tokens_of_one_message_share_one_mac(tokens: Tokens):
    import base64

    clicks = [base64.urlsafe_b64decode(token) for token in tokens.sign_message(5, 6, 4).clicks]
    assert len({raw[16:] for raw in clicks}) == 1
    assert len({raw[:14] for raw in clicks}) == 1
    # ...and another subscriber's (or issue's) is another MAC.
    assert base64.urlsafe_b64decode(tokens.sign(Purpose.CLICK, 5, 7, 0))[16:] != clicks[0][16:]
    assert base64.urlsafe_b64decode(tokens.sign(Purpose.CLICK, 4, 6, 0))[16:] != clicks[0][16:]


def test_new_tokens_carry_version_2(tokens: Tokens):
    import base64

    for purpose in (Purpose.UNSUBSCRIBE, Purpose.OPEN, Purpose.CLICK):
        assert base64.urlsafe_b64decode(tokens.sign(purpose, 1, 2, 0))[0] == 2


@pytest.mark.parametrize("secret", ["", None])
def test_missing_secret_is_a_config_error_naming_the_key(secret):
    with pytest.raises(ConfigError) as caught:
        Tokens(secret)
    assert caught.value.key == "newsletter.secret"
    assert "newsletter.secret" in str(caught.value) and "NEWSLETTER_SECRET" in str(caught.value)


def test_tokens_depend_on_the_secret_and_nothing_random():
    assert Tokens(SECRET).sign(Purpose.OPEN, 1, 2) == Tokens(SECRET).sign(Purpose.OPEN, 1, 2)
    assert Tokens(SECRET).sign(Purpose.OPEN, 1, 2) != Tokens(SECRET + "!").sign(Purpose.OPEN, 1, 2)


def test_links_are_built_on_the_base_url_and_verify(tokens: Tokens):
    links = Links("https://news.example.com/", tokens)
    unsubscribe = links.unsubscribe(3, 4)
    pixel = links.open_pixel(3, 4)
    click = links.click(3, 4, 2)
    confirm = links.confirm("a-random-token_of-the-confirmation-row-0123")

    assert re.fullmatch(r"https://news\.example\.com/u/[A-Za-z0-9_-]{44}", unsubscribe)
    assert re.fullmatch(r"https://news\.example\.com/o/[A-Za-z0-9_-]{44}\.gif", pixel)
    assert re.fullmatch(r"https://news\.example\.com/c/[A-Za-z0-9_-]{44}", click)
    assert links.issue_page("2026-11-30") == "https://news.example.com/issues/2026-11-30"
    assert tokens.verify(unsubscribe.rsplit("/", 1)[1], Purpose.UNSUBSCRIBE) == Claim(Purpose.UNSUBSCRIBE, 3, 4)
    assert tokens.verify(pixel.rsplit("/", 1)[1].removesuffix(".gif"), Purpose.OPEN) == Claim(Purpose.OPEN, 3, 4)
    assert tokens.verify(click.rsplit("/", 1)[1], Purpose.CLICK) == Claim(Purpose.CLICK, 3, 4, 2)
    # A confirmation link carries its row's random token as it is: nothing to sign.
    assert confirm == "https://news.example.com/confirm/a-random-token_of-the-confirmation-row-0123"


def _with_standard_alphabet(token: str) -> str:
    return token.replace("-", "+").replace("_", "/")


def test_base64url_is_decoded_strictly(tokens: Tokens):
    # Issue 10 item 7: '+' and '/' belong to standard base64, not to base64url (RFC 4648
    # section 5); a token spelt with them is not a token we sent.
    found = 0
    for subscriber_id in range(200):
        for purpose in (Purpose.UNSUBSCRIBE, Purpose.OPEN, Purpose.CLICK):
            token = tokens.sign(purpose, 17, subscriber_id, 1 if purpose is Purpose.CLICK else None)
            variant = _with_standard_alphabet(token)
            if variant == token:
                continue
            found += 1
            with pytest.raises(TokenError):
                tokens.verify(variant, purpose)
    assert found > 100


def _version1_fixtures() -> tuple[str, list[dict]]:
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "fixtures" / "tokens" / "version1.json").read_text())
    return data["secret"], data["tokens"]


def test_tokens_of_the_old_scheme_keep_verifying():
    # Minted by tokens.py before one MAC per message (version 1: an HMAC-SHA256 per token),
    # under the secret stored beside them: links in mail already sent.
    secret, minted = _version1_fixtures()
    old = Tokens(secret)
    for row in minted:
        purpose = Purpose[row["purpose"]]
        assert old.verify(row["token"], purpose) == Claim(purpose, row["issue_id"], row["subscriber_id"], row["link"])
        for other in Purpose:
            if other is not purpose:
                with pytest.raises(TokenError):
                    old.verify(row["token"], other)
    with pytest.raises(TokenError):
        Tokens(secret + "x").verify(minted[0]["token"], Purpose[minted[0]["purpose"]])
