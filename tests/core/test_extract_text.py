"""Free text: links, e-mail addresses, card numbers and IBANs."""

from __future__ import annotations

import pytest

from tribune.core.normalise import Invalid
from tribune.core.textscan import luhn_valid, scan_text


@pytest.mark.parametrize(
    ("text", "links"),
    [
        ("see https://Docs.Example.com/a?b=c#d.", ("docs.example.com",)),
        ("(https://example.com/x), [y](http://a.example.org/)", ("example.com", "a.example.org")),
        ("go to www.Example.com, then WWW.foo.io/path", ("www.example.com", "www.foo.io")),
        ("HTTPS://intranet.example.com@evil.io/login", ("evil.io",)),
        ("http://2130706433/ and http://[::1]:80/", ("127.0.0.1", "::1")),
        ("https://bücher.example/ and https://xn--bcher-kva.example/", ("xn--bcher-kva.example",)),
        ("https://example.com/ twice https://EXAMPLE.com./", ("example.com",)),
        ("no links here, just http:// as a word", ()),
        ("mail bob@www.example.com", ()),  # an address, not a link
    ],
)
def test_links(text: str, links: tuple[str, ...]) -> None:
    assert scan_text(text).links == links


@pytest.mark.parametrize(
    "text",
    [
        "click https://evil.io\\@intranet.example.com/",
        "click https://evil%2Eio/",
        "click https://example.com:99999/",
    ],
)
def test_ambiguous_links_are_refused(text: str) -> None:
    with pytest.raises(Invalid):
        scan_text(text)


def test_emails() -> None:
    found = scan_text(
        "Write to Alice@Example.com, cc <bob@example.org>; mailto:carol@example.net. "
        "Not: @handle, x@y, foo@localhost, and https://user@evil.io/ or https://a.io/?to=dan@b.io"
    )
    assert found.emails == ("alice@example.com", "bob@example.org", "carol@example.net")
    assert found.links == ("evil.io", "a.io")


@pytest.mark.parametrize(
    ("text", "cards"),
    [
        ("card 4111 1111 1111 1111 exp 12/29", 1),
        ("4111-1111-1111-1111 and 4111111111111111", 1),  # the same number once
        ("amex 378282246310005, mc 5555555555554444", 2),
        ("4111 1111 1111 1112", 0),  # Luhn fails
        ("order 1234567812345670", 0),  # Luhn-valid but no card network starts with 1
        ("commit 9fceb02d0ae598e95dc970b74767f19372d61af8", 0),
        ("id 123e4567-e89b-12d3-a456-426614174000", 0),
        ("ts 4111111111111111111111", 0),  # too long
        ("https://shop.example/pay/4111111111111111", 1),  # digits in a URL still count
    ],
)
def test_cards(text: str, cards: int) -> None:
    assert len(scan_text(text).cards) == cards


def test_ibans() -> None:
    found = scan_text(
        "pay DE89 3704 0044 0532 0130 00 or GB82WEST12345698765432, "
        "not DE89 3704 0044 0532 0130 01 nor de00123"
    )
    assert found.ibans == ("DE89370400440532013000", "GB82WEST12345698765432")
    assert found.cards == ()  # IBAN digits are not card numbers
    two = scan_text("DE89370400440532013000 GB82WEST12345698765432")
    assert two.ibans == ("DE89370400440532013000", "GB82WEST12345698765432")
    assert scan_text("DE89370400440532013000123").ibans == ()  # runs on: not an IBAN


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


def test_long_inputs_finish() -> None:
    for text in ("a" * 100_000, "a." * 50_000, "1 " * 50_000, "www." * 20_000, "DE89" * 20_000):
        scan_text(text)
