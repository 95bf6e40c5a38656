"""Normalisers: canonical forms, refusals, idempotence, and parser-differential tricks."""

# ruff: noqa: RUF001 - look-alike characters are the point of these tests

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core.normalise import (
    Invalid,
    normalise_account,
    normalise_email,
    normalise_host,
    normalise_iban,
    normalise_object_id,
    normalise_person,
    parse_amount,
    parse_count,
    url_host,
)

# --------------------------------------------------------------------------- e-mail


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("Alice@Example.COM", "alice@example.com"),
        ("  alice@example.com ", "alice@example.com"),
        ("Alice Smith <Alice@Example.com>", "alice@example.com"),
        ('"Smith, Alice" <alice@example.com>', "alice@example.com"),
        ('"Eve <eve@evil.io>" <alice@example.com>', "alice@example.com"),
        ("alice@example.com <eve@evil.io>", "eve@evil.io"),
        ("mailto:alice@example.com", "alice@example.com"),
        ("alice+tag@example.com", "alice+tag@example.com"),
        ("bob@bücher.example", "bob@xn--bcher-kva.example"),
        ("bob@XN--BCHER-KVA.example", "bob@xn--bcher-kva.example"),
        ("bob@ＥＸＡＭＰＬＥ.com", "bob@example.com"),
    ],
)
def test_email_normal_forms(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "not an address",
        "alice@",
        "@example.com",
        "alice@localhost",
        "alice@example.com.",
        "a@example.com, b@example.com",
        "Eve <eve@evil.io> <alice@example.com>",
        "alice@[10.0.0.1]",
        "",
    ],
)
def test_email_refusals(raw: str) -> None:
    with pytest.raises(Invalid):
        normalise_email(raw)


@pytest.mark.parametrize("raw", [None, 42, ["a@example.com"], {"email": "a@example.com"}])
def test_email_wrong_type(raw: object) -> None:
    with pytest.raises(Invalid):
        normalise_email(raw)


def test_person_identity_is_the_address() -> None:
    a = normalise_person({"name": "Alice", "email": "Alice@Example.com"})
    b = normalise_person({"name": "Mallory pretending", "email": "alice@example.com"})
    c = normalise_person("Someone Else <ALICE@example.com>")
    assert a == b == c == "alice@example.com"
    with pytest.raises(Invalid):
        normalise_person({"name": "No Address"})
    with pytest.raises(Invalid):
        normalise_person({"name": "x", "email": ["alice@example.com"]})


# --------------------------------------------------------------------------- hosts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"),
        ("ＥＸＡＭＰＬＥ。com", "example.com"),  # fullwidth letters, ideographic full stop
        ("ex\u00adample.com", "example.com"),  # a soft hyphen is mapped away
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("１２７.０.０.１", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
    ],
)
def test_host_normal_forms(raw: str, expected: str) -> None:
    assert normalise_host(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "exa mple.com",
        "example..com",
        "example.com..",
        "-example.com",
        "example.com:8080",
        "evil.io/path",
        "user@example.com",
        "xn--zz.example",  # garbage punycode
        "256.1.1.1",
        "1.2.3.4.5",
        "example.123",
        "fe80::1%eth0",
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 5 + "com",
        "ex\tample.com",
        "ex／ample.com",  # fullwidth solidus maps to "/"
    ],
)
def test_host_refusals(raw: str) -> None:
    with pytest.raises(Invalid):
        normalise_host(raw)


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://example.com/path?q=1#frag", "example.com"),
        ("HTTPS://Example.COM.:443/", "example.com"),
        ("http://user:pass@example.com/", "example.com"),
        ("https://intranet.example.com@evil.io/", "evil.io"),
        ("https://a@b@evil.io/", "evil.io"),
        ("http://[::1]:8080/", "::1"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("https://bücher.example/", "xn--bcher-kva.example"),
        ("https://example.com:/", "example.com"),
        ("https://example.com?x=@evil.io", "example.com"),
        ("https://example.com#@evil.io", "example.com"),
    ],
)
def test_url_hosts(raw: str, expected: str) -> None:
    assert url_host(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://example.com/",
        "example.com/path",
        "//example.com/",
        "http:example.com",
        "https:///evil.io/",
        "https://evil.io\\@intranet.example.com/",  # browsers: evil.io; RFC parsers: intranet
        "https://evil%2Eio/",
        "https://example.com:99999/",
        "https://example.com:8o/",
        "https://exa mple.com/",
        "https://example.com/\nHost: evil.io",
        "https://[::1/",
        "https://",
    ],
)
def test_url_refusals(raw: str) -> None:
    with pytest.raises(Invalid):
        url_host(raw)


def test_url_refusal_does_not_echo_the_scheme() -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    with pytest.raises(Invalid) as caught:
        url_host(f"{secret}:something")
    assert secret not in str(caught.value)


# --------------------------------------------------------------------------- accounts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("de89-3704-0044-0532-0130-00", "DE89370400440532013000"),
        ("GB82WEST12345698765432", "GB82WEST12345698765432"),
        ("acct-123 456", "ACCT123456"),
        ("12-34-56/12345678", "123456/12345678"),
        (12345678, "12345678"),
        ("US12ABCDEFGHIJKLMNOP", "US12ABCDEFGHIJKLMNOP"),  # not an IBAN country: an account id
    ],
)
def test_account_normal_forms(raw: object, expected: str) -> None:
    assert normalise_account(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "DE89 3704 0044 0532 0130 01",  # bad checksum, IBAN-shaped: refused, not an account id
        "acme.com",  # dots would let an account equal a host
        "ACME:1",
        "АСМЕ1",  # Cyrillic look-alikes
        "",
        True,
        1.5,
    ],
)
def test_account_refusals(raw: object) -> None:
    with pytest.raises(Invalid):
        normalise_account(raw)


def test_iban_kind_requires_a_valid_iban() -> None:
    assert normalise_iban("FR14 2004 1010 0505 0001 3M02 606") == "FR1420041010050500013M02606"
    for bad in ("DE89370400440532013001", "DE8937040044053201300", "ACCT123", "XX00123456789012"):
        with pytest.raises(Invalid) as caught:
            normalise_iban(bad)
        assert bad not in str(caught.value)


# --------------------------------------------------------------------------- amounts, counts, ids


@pytest.mark.parametrize(
    ("raw", "cents"),
    [
        (12, 1200),
        (0, 0),
        (12.5, 1250),
        (12.25, 1225),
        ("12.50", 1250),
        ("1,200.00", 120000),
        ("1,234,567.8", 123456780),
        ("EUR 12.50", 1250),
        ("$12", 1200),
        ("€ 7.05", 705),
        ("12.5 USD", 1250),
        ("0.01", 1),
        (" 42 ", 4200),
    ],
)
def test_amounts(raw: object, cents: int) -> None:
    assert parse_amount(raw) == cents


@pytest.mark.parametrize(
    "raw",
    [
        -1,
        -0.5,
        "-12",
        "−12",  # a Unicode minus
        "(12.00)",
        "12.345",
        12.345,
        0.1 + 0.2,
        "12,50",
        "1,20.00",
        "1 200.00",
        "$12 USD",
        "twelve",
        "",
        "١٢",  # Arabic-Indic digits
        True,
        False,
        None,
        float("nan"),
        float("inf"),
        [12],
        {"value": 12},
        2**62,
        "9" * 30,
    ],
)
def test_amount_refusals(raw: object) -> None:
    with pytest.raises(Invalid):
        parse_amount(raw)


def test_counts() -> None:
    assert parse_count(3) == 3
    assert parse_count([1, 2, 3, 4]) == 4
    assert parse_count([]) == 0
    assert parse_count("17") == 17
    for bad in (-1, True, 2.0, "many", "-3", None, {"n": 1}):
        with pytest.raises(Invalid):
            parse_count(bad)


def test_object_ids() -> None:
    assert normalise_object_id("  doc-1 ") == "doc-1"
    assert normalise_object_id(42) == "42"
    for bad in ("", "   ", "a\x00b", True, None, 1.5, ["x"]):
        with pytest.raises(Invalid):
            normalise_object_id(bad)


# --------------------------------------------------------------------------- properties

_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_hostnames = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(_label, min_size=1, max_size=4),
    st.sampled_from(["com", "org", "io", "example", "de", "Com"]),
)
_local = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,15}[A-Za-z0-9])?", fullmatch=True).filter(
    lambda s: ".." not in s
)


@settings(max_examples=150, deadline=None)
@given(_hostnames, st.booleans())
def test_host_normalisation_is_idempotent(host: str, dot: bool) -> None:
    once = normalise_host(host + ("." if dot else ""))
    assert normalise_host(once) == once
    assert once == once.lower()
    assert url_host(f"https://user@{host}/x") == once


@settings(max_examples=150, deadline=None)
@given(st.ip_addresses())
def test_ip_normalisation_is_idempotent(ip: object) -> None:
    once = normalise_host(str(ip))
    assert normalise_host(once) == once


@settings(max_examples=150, deadline=None)
@given(_local, _hostnames)
def test_email_normalisation_is_idempotent(local: str, host: str) -> None:
    try:
        once = normalise_email(f"{local}@{host}")
    except Invalid:
        return  # e.g. a numeric top-level label
    assert normalise_email(once) == once
    assert normalise_email(f"Some Name <{local.upper()}@{host.upper()}>") == once


@settings(max_examples=150, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 _/-]{0,30}", fullmatch=True))
def test_account_normalisation_is_idempotent(raw: str) -> None:
    try:
        once = normalise_account(raw)
    except Invalid:
        return
    assert normalise_account(once) == once


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=99))
def test_amount_text_and_number_agree(whole: int, cents: int) -> None:
    text = f"{whole}.{cents:02d}"
    grouped = f"{whole:,}.{cents:02d}"
    assert parse_amount(text) == parse_amount(grouped) == whole * 100 + cents
    assert parse_amount(f"EUR {text}") == parse_amount(f"{text} EUR") == whole * 100 + cents
