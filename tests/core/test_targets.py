"""Target classification: precedence, label boundaries, normalisation tricks, facts record."""

# ruff: noqa: RUF001 - look-alike characters are the point of these tests

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core.extract import Target, extract
from tribune.core.model import Directory, ExtractorSpec, TargetClass, Tool
from tribune.core.targets import (
    classify,
    links_unknown,
    normalise_directory,
    normalise_target,
    target_facts,
)
from tribune.errors import InvalidInput

IN, N, K, U = TargetClass.INTERNAL, TargetClass.NAMED, TargetClass.KNOWN, TargetClass.UNKNOWN

DIRECTORY = normalise_directory(
    Directory(
        domains=frozenset({"Example.com"}),
        members=frozenset({"ceo@corp-mail.net"}),
        accounts=frozenset({"DE89 3704 0044 0532 0130 00", "acct-1"}),
        hosts=frozenset({"git.internal.io", "10.0.0.0/8"}),
        counterparties=frozenset(
            {"partner.org", "vendor@supplies.com", "GB82 WEST 1234 5698 7654 32", "203.0.113.7"}
        ),
    )
)
NAMED = frozenset(
    normalise_target(t) for t in ("client.io", "bob@gmail.com", "ACCT-42", "object:doc-7")
)
LEARNED = frozenset({"seen.net", "old@friend.org", "s3.amazonaws.com", "LEARNED1", "object:x"})


def cls(kind: str, value: str, named: frozenset[str] = NAMED) -> TargetClass:
    return classify(Target(kind, value, "r"), DIRECTORY, named, LEARNED)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        # e-mail
        ("email", "alice@example.com", IN),
        ("email", "alice@eu.mail.example.com", IN),  # parent domain is an org domain
        ("email", "ceo@corp-mail.net", IN),  # a member on an outside domain
        ("email", "cfo@corp-mail.net", U),
        ("email", "x@client.io", N),
        ("email", "bob@gmail.com", N),
        ("email", "eve@gmail.com", U),  # naming an address does not name its provider
        ("email", "anyone@partner.org", K),
        ("email", "vendor@supplies.com", K),
        ("email", "other@supplies.com", U),
        ("email", "old@friend.org", K),
        ("email", "new@friend.org", U),
        ("email", "x@seen.net", K),  # learned domain, exactly
        ("email", "x@sub.seen.net", U),
        ("email", "a@evil-example.com", U),  # label boundary
        ("email", "a@example.com.evil.io", U),
        ("email", "a@notexample.com", U),
        # hosts
        ("host", "example.com", IN),
        ("host", "www.example.com", IN),
        ("host", "git.internal.io", IN),
        ("host", "ci.git.internal.io", IN),  # under an own host
        ("host", "internal.io", U),
        ("host", "10.1.2.3", IN),  # inside an own network
        ("host", "11.1.2.3", U),
        ("host", "api.client.io", N),
        ("host", "partner.org", K),
        ("host", "cdn.partner.org", K),
        ("host", "203.0.113.7", K),
        ("host", "203.0.113.8", U),
        ("host", "seen.net", K),
        ("host", "evil.seen.net", U),  # learned values never cover subdomains
        ("host", "bucket.s3.amazonaws.com", U),
        ("host", "evil-example.com", U),
        ("host", "example.com.evil.io", U),
        ("host", "xample.com", U),
        # accounts
        ("account", "DE89370400440532013000", IN),
        ("account", "ACCT1", IN),
        ("account", "ACCT42", N),
        ("account", "GB82WEST12345698765432", K),
        ("account", "LEARNED1", K),
        ("account", "ACCT2", U),
        # objects
        ("object", "object:doc-7", N),
        ("object", "object:x", K),
        ("object", "object:doc-8", U),
    ],
)
def test_classification(kind: str, value: str, expected: TargetClass) -> None:
    assert cls(kind, value) is expected


def test_precedence_internal_over_named_over_known() -> None:
    everything = frozenset({"example.com", "partner.org", "alice@example.com"})
    assert cls("email", "alice@example.com", everything) is IN
    assert cls("host", "partner.org", everything) is N  # named beats counterparty
    assert cls("host", "partner.org", frozenset()) is K
    assert cls("object", "object:x", frozenset({"object:x"})) is N  # named beats learned
    d = Directory(accounts=frozenset({"A1"}), counterparties=frozenset({"A1"}))
    assert classify(Target("account", "A1", ""), d, frozenset({"A1"}), frozenset({"A1"})) is IN


def test_objects_are_never_internal() -> None:
    d = Directory(domains=frozenset({"object:doc-1"}), hosts=frozenset({"object:doc-1"}))
    assert classify(Target("object", "object:doc-1", ""), d, frozenset(), frozenset()) is U


# --------------------------------------------------------------------------- end to end tricks


def fetch_class(url: str) -> TargetClass:
    tool = Tool("fetch", extractors=(ExtractorSpec("url", "/url", role="fetch", target=True),))
    (target,) = extract(tool, {"url": url}).targets
    return classify(target, DIRECTORY, NAMED, LEARNED)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://intranet.example.com@evil.io/", U),
        ("https://evil.io@intranet.example.com/", IN),
        ("https://WWW.EXAMPLE.COM./", IN),
        ("https://www.example.com.evil.io/", U),
        ("https://evil-example.com/", U),
        ("https://ＥＸＡＭＰＬＥ．ｃｏｍ/", IN),
        ("https://xn--bcher-kva.example/", U),
        ("http://0x0a.1/", IN),  # 10.0.0.1 spelled the WHATWG way
        ("http://[::ffff:10.0.0.1]/", IN),
        ("http://167772161/", IN),  # 10.0.0.1 as one number
    ],
)
def test_url_tricks(url: str, expected: TargetClass) -> None:
    assert fetch_class(url) is expected


def test_idn_named_target_matches_punycode_and_unicode() -> None:
    named = frozenset({normalise_target("bücher.example")})
    for value in ("xn--bcher-kva.example", "shop.xn--bcher-kva.example"):
        assert classify(Target("host", value, ""), Directory(), named, frozenset()) is N
    assert normalise_target("XN--BCHER-KVA.EXAMPLE") in named


# --------------------------------------------------------------------------- normalise_target


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice <Alice@Example.com>", "alice@example.com"),
        ("mailto:Bob@Example.com", "bob@example.com"),
        ("https://user@Docs.Example.com:8443/x", "docs.example.com"),
        ("EXAMPLE.com.", "example.com"),
        ("host:localhost", "localhost"),
        ("url:https://a.example.org/", "a.example.org"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("iban:de89370400440532013000", "DE89370400440532013000"),
        ("acct-42", "ACCT42"),
        ("account:acme 7", "ACME7"),
        ("object: Doc-7 ", "object:Doc-7"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_normalise_target(raw: str, expected: str) -> None:
    assert normalise_target(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "file:///etc/passwd", "a@b", "10.0.0.0/33", "DE89 3704 0044 0532 0130 01", "a b.c"],
)
def test_normalise_target_refusals(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_target(raw)


_targets = st.one_of(
    st.from_regex(r"[a-z0-9]{1,8}@[a-z]{1,8}\.(com|org|io)", fullmatch=True),
    st.from_regex(
        r"https?://[a-zA-Z]{1,8}\.[a-zA-Z]{2,5}(:[0-9]{2,4})?/[a-z]{0,5}", fullmatch=True
    ),
    st.from_regex(r"[a-zA-Z0-9]{1,8}(\.[a-zA-Z]{2,6}){1,2}\.?", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 -]{0,12}[A-Za-z0-9]", fullmatch=True),
    st.from_regex(r"object:[a-zA-Z0-9._-]{1,12}", fullmatch=True),
)


@settings(max_examples=200, deadline=None)
@given(_targets)
def test_normalise_target_is_idempotent(raw: str) -> None:
    try:
        once = normalise_target(raw)
    except InvalidInput:
        return
    assert normalise_target(once) == once


# --------------------------------------------------------------------------- facts and links


def test_target_facts() -> None:
    assert target_facts([], []) == {
        "count": 0,
        "all_trusted": True,
        "all_internal": True,
        "any_unknown": False,
        "classes": [],
    }
    t = Target("host", "a.io", "")
    assert target_facts([t, t], [IN, IN])["all_internal"] is True
    facts = target_facts([t, t, t], [N, IN, K])
    assert facts == {
        "count": 3,
        "all_trusted": True,
        "all_internal": False,
        "any_unknown": False,
        "classes": ["internal", "known", "named"],
    }
    facts = target_facts([t, t], [U, IN])
    assert facts["any_unknown"] and not facts["all_trusted"] and not facts["all_internal"]
    with pytest.raises(InvalidInput):
        target_facts([t], [])


def test_links_unknown() -> None:
    assert not links_unknown([], DIRECTORY, NAMED, LEARNED)
    assert not links_unknown(
        ["docs.example.com", "client.io", "seen.net"], DIRECTORY, NAMED, LEARNED
    )
    assert links_unknown(["docs.example.com", "evil-example.com"], DIRECTORY, NAMED, LEARNED)
