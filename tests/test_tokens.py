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
    token = tokens.sign(purpose, 42, 9_001, 3 if purpose is Purpose.CLICK else None)
    for position in range(len(token)):
        for replacement in {BASE64URL[(BASE64URL.index(token[position]) + step) % 64] for step in (1, 17, 63)}:
            forged = token[:position] + replacement + token[position + 1 :]
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
def test_sign_clicks_equals_sign_for_each_link(tokens: Tokens, count: int):
    batch = tokens.sign_clicks(17, 2**40 + 3, count)
    assert [token.decode("ascii") for token in batch] == [
        tokens.sign(Purpose.CLICK, 17, 2**40 + 3, n) for n in range(count)
    ]


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
