"""The fast canonical path must be byte-identical to RFC 8785 wherever it is taken."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core.canonical import canonical, digest

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=600)
@given(values)
def test_equals_rfc8785(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        return
    assert canonical(value) == expected


def test_control_characters_and_separators() -> None:
    value = {"b": "tab\tnl\nnul\x00del\x7f", "a": "\u2028 é 😀", "c": [1, -2, True, None]}
    assert canonical(value) == rfc8785.dumps(value)


def test_key_order_beyond_the_basic_plane_falls_back() -> None:
    # UTF-16 order puts U+1F600 (surrogates D83D…) before U+FB01; code-point order does not.
    value = {"\U0001f600": 1, "\ufb01": 2}
    assert canonical(value) == rfc8785.dumps(value)
    assert canonical(value).index("😀".encode()) < canonical(value).index("ﬁ".encode())


def test_large_integers_and_floats_take_the_reference_path() -> None:
    for value in ({"n": 2**53 + 1}, {"x": 1.0}, {"x": 1e21}, {"x": 0.1}):
        try:
            expected = rfc8785.dumps(value)
        except rfc8785.CanonicalizationError:
            continue
        assert canonical(value) == expected


def test_digest_is_prefixed_sha256() -> None:
    d = digest({"a": 1})
    assert d.startswith("sha256:") and len(d) == 7 + 64
    assert digest({"a": 1}) == digest({"a": 1}) != digest({"a": 2})


def test_keyed_digest_depends_on_the_key_and_hides_guessable_values() -> None:
    import hashlib
    import hmac

    from tribune.core.canonical import canonical, keyed_digest

    value = {"password": "hunter2"}
    a, b = keyed_digest(value, b"k" * 32), keyed_digest(value, b"j" * 32)
    assert a.startswith("hmac-sha256:") and a != b
    assert a == "hmac-sha256:" + hmac.new(b"k" * 32, canonical(value), hashlib.sha256).hexdigest()
    assert a.removeprefix("hmac-sha256:") != digest(value).removeprefix("sha256:")
