"""extract() and redact(): pointers, aggregates, targets, literals, failures, redaction."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core.canonical import digest
from tribune.core.extract import ArgFacts, Target, check_extractor, extract, redact
from tribune.core.model import ExtractorSpec, Tool
from tribune.core.pointer import parse_pointer, resolve
from tribune.errors import ExtractionFailed, InvalidInput


def tool(*specs: ExtractorSpec) -> Tool:
    return Tool(name="t", extractors=specs)


def spec(kind: str, pointer: str, **kw: Any) -> ExtractorSpec:
    return ExtractorSpec(kind=kind, pointer=pointer, **kw)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- pointers


@pytest.mark.parametrize(
    ("pointer", "segments"),
    [
        ("", ()),
        ("/", ("",)),
        ("/a", ("a",)),
        ("/a~1b", ("a/b",)),
        ("/m~0n", ("m~n",)),
        ("/~01", ("~1",)),
        ("/items/*/id", ("items", "*", "id")),
    ],
)
def test_pointer_parsing(pointer: str, segments: tuple[str, ...]) -> None:
    assert parse_pointer(pointer) == segments


@pytest.mark.parametrize("pointer", ["a", "/a~2", "/a~", "#/a"])
def test_bad_pointers(pointer: str) -> None:
    with pytest.raises(InvalidInput):
        parse_pointer(pointer)


def test_pointer_escapes_reach_odd_keys() -> None:
    doc = {"a/b": {"m~n": "alice@example.com"}, "a": {"b": "eve@evil.io"}}
    facts = extract(tool(spec("email", "/a~1b/m~0n", target=True)), doc)
    assert [t.value for t in facts.targets] == ["alice@example.com"]


def test_wildcard_walks_lists_and_objects() -> None:
    doc = {"l": [{"id": 1}, {"id": 2}], "o": {"z": {"id": 3}, "a": {"id": 4}}}
    assert [h.value for h in resolve(doc, parse_pointer("/l/*/id"))] == [1, 2]
    hits = resolve(doc, parse_pointer("/o/*/id"))
    assert [h.value for h in hits] == [4, 3]  # sorted keys: stable whatever the insertion order
    assert all(h.path == "/o/*/id" for h in hits)  # object keys never appear in paths


def test_null_and_missing_are_the_same() -> None:
    t = tool(spec("email", "/cc", target=True))
    assert extract(t, {"cc": None}) == extract(t, {}) == ArgFacts()


# --------------------------------------------------------------------------- targets and kinds


def test_targets_deduplicated_in_stable_order_first_role_wins() -> None:
    t = tool(
        spec("email", "/to", role="recipient", target=True),
        spec("person", "/cc/*", role="cc", target=True),
        spec("url", "/link", role="fetch", target=True),
    )
    facts = extract(
        t,
        {
            "to": ["Bob@Example.com", "alice@example.com"],
            "cc": [{"name": "B.", "email": "bob@example.com"}, "Carol <carol@example.org>"],
            "link": "https://Docs.Example.com./x",
        },
    )
    assert facts.targets == (
        Target("email", "bob@example.com", "recipient"),
        Target("email", "alice@example.com", "recipient"),
        Target("email", "carol@example.org", "cc"),
        Target("host", "docs.example.com", "fetch"),
    )


def test_string_or_list_read_alike() -> None:
    t = tool(spec("email", "/to", target=True))
    one = extract(t, {"to": "a@example.com"})
    many = extract(t, {"to": ["a@example.com"]})
    assert one == many


def test_target_flag() -> None:
    # unset: identities and hosts are targets, object ids are not
    t = tool(spec("email", "/reply_to"), spec("object_id", "/doc"))
    facts = extract(t, {"reply_to": "a@example.com", "doc": " d-1 "})
    assert facts.targets == (Target("email", "a@example.com", ""),)
    assert facts.object_ids == ("d-1",)
    t = tool(spec("email", "/reply_to", target=False))
    assert extract(t, {"reply_to": "a@example.com"}).targets == ()
    t = tool(spec("object_id", "/doc", target=True, role="doc"))
    assert extract(t, {"doc": "d-1"}).targets == (Target("object", "object:d-1", "doc"),)


def test_accounts_and_hosts() -> None:
    t = tool(
        spec("iban", "/iban", target=True, role="payee"),
        spec("account", "/acct", target=True, role="payee"),
        spec("host", "/host", target=True),
    )
    facts = extract(
        t, {"iban": "de89 3704 0044 0532 0130 00", "acct": "ac-77", "host": "API.Example.com."}
    )
    assert [(x.kind, x.value) for x in facts.targets] == [
        ("account", "DE89370400440532013000"),
        ("account", "AC77"),
        ("host", "api.example.com"),
    ]


# --------------------------------------------------------------------------- aggregates


def test_amounts_sum_over_lists_and_specs() -> None:
    t = tool(spec("amount", "/lines/*/amount", aggregate="sum"), spec("amount", "/fee"))
    facts = extract(t, {"lines": [{"amount": "10.50"}, {"amount": 2}], "fee": "EUR 0.25"})
    assert facts.amount == 1050 + 200 + 25


def test_amount_pointer_to_a_list_sums() -> None:
    t = tool(spec("amount", "/amounts", aggregate="sum"))
    assert extract(t, {"amounts": [1, "2.50", 0.5]}).amount == 400


def test_counts() -> None:
    t = tool(spec("count", "/ids"), spec("count", "/n"))
    assert extract(t, {"ids": ["a", "b", "c"], "n": 4}).count == 7
    t = tool(spec("object_id", "/ids/*", aggregate="count"))
    assert extract(t, {"ids": ["a", "b"]}).count == 2
    t = tool(spec("email", "/to", aggregate="count", target=True))
    assert extract(t, {"to": ["a@example.com", "b@example.com", "c@example.com"]}).count == 3
    assert extract(t, {}).count == 0


def test_total_too_large() -> None:
    t = tool(spec("amount", "/a/*", aggregate="sum"))
    with pytest.raises(ExtractionFailed):
        extract(t, {"a": [2**61, 2**61]})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=20))
def test_sum_property(values: list[int]) -> None:
    t = tool(spec("amount", "/x/*/v", aggregate="sum"), spec("count", "/x"))
    facts = extract(t, {"x": [{"v": v} for v in values]})
    assert facts.amount == 100 * sum(values)
    assert facts.count == len(values)


# --------------------------------------------------------------------------- required, shapes


def test_required() -> None:
    t = tool(spec("email", "/to", required=True))
    with pytest.raises(ExtractionFailed, match="`/to` is required"):
        extract(t, {})
    with pytest.raises(ExtractionFailed):
        extract(t, {"to": None})
    t = tool(spec("email", "/to/*/email", required=True))
    assert extract(t, {"to": []}) == ArgFacts()  # nothing walked, nothing missing
    with pytest.raises(ExtractionFailed, match="`/to/1/email` is required"):
        extract(t, {"to": [{"email": "a@example.com"}, {"name": "b"}]})


@pytest.mark.parametrize(
    "arguments",
    [
        {"to": "a@example.com"},  # `*` over a string
        {"to": 5},
        {"to": [{"x": "a@example.com"}]},  # an object where an email is expected
        {"to": [[["a@example.com"]]]},  # lists within lists within lists
    ],
)
def test_wrong_shapes_fail(arguments: dict[str, Any]) -> None:
    with pytest.raises(ExtractionFailed):
        extract(tool(spec("email", "/to/*", target=True)), arguments)


def test_named_segment_on_a_list_fails() -> None:
    with pytest.raises(ExtractionFailed, match="not an object or list"):
        extract(tool(spec("email", "/to/first")), {"to": ["a@example.com"]})


@pytest.mark.parametrize(
    "bad",
    [
        spec("nope", "/x"),
        spec("email", "/x", aggregate="max"),
        spec("email", "/x", aggregate="sum"),
        spec("email", "/x", literal="pw"),
        spec("email", "x"),
    ],
)
def test_bad_specs(bad: ExtractorSpec) -> None:
    with pytest.raises(InvalidInput):
        check_extractor(bad)
    with pytest.raises(ExtractionFailed):
        extract(tool(bad), {"x": "a@example.com"})


SECRETISH = "AKIAIOSFODNN7EXAMPLEhunter2"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", SECRETISH),
        ("email", {"user": SECRETISH}),
        ("person", {"name": SECRETISH}),
        ("iban", "DE89" + SECRETISH),
        ("account", SECRETISH + ".x"),
        ("url", f"file:///{SECRETISH}"),
        ("url", f"{SECRETISH}://x"),
        ("url", f"https://{SECRETISH}%2e"),
        ("host", f"{SECRETISH}..com"),
        ("amount", f"{SECRETISH} 12"),
        ("amount", "12.3456789"),
        ("count", SECRETISH),
        ("object_id", {"id": SECRETISH}),
        ("secret", {"pw": SECRETISH}),
        ("text", {"body": SECRETISH}),
        ("text", f"see https://{SECRETISH}:99999/"),
    ],
)
def test_failures_name_pointer_and_kind_never_the_value(kind: str, value: Any) -> None:
    with pytest.raises(ExtractionFailed) as caught:
        extract(tool(spec(kind, "/args/field")), {"args": {"field": value}})
    err = caught.value
    shown = str(err) + repr(err.to_dict())
    assert "`/args/field" in err.message
    assert kind in err.message
    assert "AKIA" not in shown and "hunter2" not in shown and "12.3456789" not in shown
    assert err.__cause__ is None and err.__suppress_context__  # no chained library message


# --------------------------------------------------------------------------- secrets and literals


def test_secret_literal_match_and_mismatch() -> None:
    t = tool(spec("secret", "/password", literal="new_password"))
    digests = {"new_password": sha("correct horse")}
    facts = extract(t, {"password": "correct horse"}, digests)
    assert facts.literals_ok and facts.secrets == ()
    assert not extract(t, {"password": "correct horsE"}, digests).literals_ok
    assert not extract(t, {"password": "correct horse"}, {}).literals_ok  # literal not supplied
    assert not extract(t, {"password": "x"}, {"new_password": "not-hex"}).literals_ok
    assert extract(t, {}, digests).literals_ok  # nothing sent, nothing to compare
    prefixed = {"new_password": "sha256:" + sha("correct horse").upper()}
    assert extract(t, {"password": "correct horse"}, prefixed).literals_ok


def test_secret_without_literal_leaves() -> None:
    t = tool(spec("secret", "/password"))
    facts = extract(t, {"password": "hunter2"})
    assert facts.secrets == ("password_field",)
    assert facts.literals_ok


def test_credentials_anywhere_in_arguments_are_found() -> None:
    facts = extract(tool(), {"a": {"b": ["x", "key AKIAIOSFODNN7EXAMPLE"]}})
    assert facts.secrets == ("aws_access_key",)
    facts = extract(tool(), {"ghp_" + "a1B2" * 9: "key as an object key"})
    assert facts.secrets == ("github_token",)


def test_same_secret_twice_counts_once_and_kinds_never_values() -> None:
    key = "AKIAIOSFODNN7EXAMPLE"
    facts = extract(tool(), {"a": key, "b": f"copy: {key}", "c": "AKIAI44QH8DHBEXAMPLE"})
    assert facts.secrets == ("aws_access_key", "aws_access_key")
    assert key not in repr(facts)


def test_user_literals_are_not_leaving_secrets() -> None:
    key = "ghp_" + "Zx9" * 12
    digests = {"token": sha(key)}
    assert extract(tool(), {"body": f"use {key} please"}, digests).secrets == ()
    assert extract(tool(), {"body": key}, digests).secrets == ()
    assert extract(tool(), {"body": f"use {key} please"}, {}).secrets == ("github_token",)


def test_secret_spec_values_are_not_scanned_twice() -> None:
    key = "ghp_" + "Zx9" * 12
    t = tool(spec("secret", "/token", literal="token"))
    facts = extract(t, {"token": key}, {"token": sha(key)})
    assert facts.secrets == () and facts.literals_ok
    facts = extract(t, {"token": key, "note": key}, {"token": sha("other")})
    assert not facts.literals_ok
    assert facts.secrets == ("github_token",)  # the copy in /note still leaves


# --------------------------------------------------------------------------- text


def test_text_facts() -> None:
    t = tool(spec("text", "/body", role="mention"))
    body = (
        "Hi, see https://Docs.Example.com/x and www.Foo.io. Write to carol@example.org. "
        "Card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00."
    )
    facts = extract(t, {"body": body})
    assert facts.links == ("docs.example.com", "www.foo.io")
    assert facts.targets == (Target("email", "carol@example.org", "mention"),)
    assert facts.cards == 1
    assert facts.ibans == ("DE89370400440532013000",)


def test_text_with_an_ambiguous_link_fails() -> None:
    t = tool(spec("text", "/body"))
    with pytest.raises(ExtractionFailed, match="`/body` as text"):
        extract(t, {"body": "go to https://evil.io\\@intranet.example.com/ now"})


# --------------------------------------------------------------------------- redaction


def test_redact_replaces_with_digests_and_copies() -> None:
    args: dict[str, Any] = {
        "user": "bob",
        "password": "hunter2",
        "cards": [{"n": "4111"}, {"n": "5500"}],
    }
    out = redact(args, ["/password", "/cards/*/n", "/missing", "/cards/9/n"])
    assert out == {
        "user": "bob",
        "password": {"digest": digest("hunter2")},
        "cards": [{"n": {"digest": digest("4111")}}, {"n": {"digest": digest("5500")}}],
    }
    assert args["password"] == "hunter2" and args["cards"][0]["n"] == "4111"  # not mutated


def test_redact_digests_originals_and_hides_reshaped_values() -> None:
    args = {"auth": {"password": "p", "user": "u"}}
    out = redact(args, ["/auth/password", "/auth"])  # ancestor first whatever the order
    assert out == {"auth": {"digest": digest({"password": "p", "user": "u"})}}
    # the agent sends a string where an object was expected: the string is hidden
    assert redact({"auth": "hunter2"}, ["/auth/password"]) == {
        "auth": {"digest": digest("hunter2")}
    }
    assert redact({"a": {"b": 1}}, ["/a~1b", "/x/*"]) == {"a": {"b": 1}}
    with pytest.raises(InvalidInput):
        redact({}, ["password"])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["email", "person", "account", "iban", "url", "host", "amount", "count"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=12),
)
def test_no_failure_message_ever_holds_the_value(kind: str, value: str) -> None:
    try:
        extract(tool(spec(kind, "/v")), {"v": value})
    except ExtractionFailed as err:
        shown = str(err) + repr(err.to_dict())
        # the fixed words of the error (its code, its sentence) may contain anything short
        fixed = f"{err.code} {err.hint or ''} cannot read `/v` as {kind}: {err.message}"
        if value.strip() in fixed.replace(value.strip(), ""):
            return
        assert len(value.strip()) < 8 or value.strip() not in shown
