"""Credential detectors: each with a positive and a negative example; no false positives on
prose, UUIDs, git SHAs and other ordinary identifiers."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core.secrets import DETECTORS, find_secrets, looks_random

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgwMdXpNrXN5AhU\n"
    "-----END RSA PRIVATE KEY-----"
)
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

# kind -> (text that must be found, the value found, text that must not be found)
CASES: dict[str, tuple[str, str, str]] = {
    "private_key": (f"key:\n{PEM}\n", PEM, "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n"),
    "aws_access_key": (
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "AKIAIOSFODNN7EXAMPLE",
        "AKIA is a prefix; AKIAIOSFODNN7 is too short; XAKIAIOSFODNN7EXAMPLE1 is longer",
    ),
    "github_token": (
        "export GH=ghp_16C7e42F292c6912E7710c838347Ae178B4a ok",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "the ghp_ prefix and ghp_short and xghp_16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    "slack_token": (
        "token xoxb-2636245-9871234565-AbCdEfGhIjKlMnOp",
        "xoxb-2636245-9871234565-AbCdEfGhIjKlMnOp",
        "xoxz-2636245-9871234565 and xoxb-12",
    ),
    "slack_webhook": (
        "post to https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx",
        "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx",
        "see https://hooks.slack.com/services/ for docs",
    ),
    "stripe_key": (
        "STRIPE=sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "pk_live_4eC39HqLyjWDarjtT1zdp7dc is publishable; sk_live_short",
    ),
    "google_api_key": (
        "key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        "AIzaSyShort and AIza alone",
    ),
    "jwt": (f"Cookie: session={JWT}", JWT, "eyJhbGciOi is only a header; a.b.c is not"),
    "bearer_token": (
        "Authorization: Bearer 7f9a2b4c8d1e3f5a6b0c9d8e7f6a5b4c",
        "7f9a2b4c8d1e3f5a6b0c9d8e7f6a5b4c",
        "the bearer of this letter is authorised; Bearer tokens expire",
    ),
    "generic_api_key": (
        '{"x_api_key": "Zk3q9Lp0Vb7Xw2Mn5Rt8"}',
        "Zk3q9Lp0Vb7Xw2Mn5Rt8",
        "api_key=changeme and token: see-the-docs-for-details and password = aaaaaaaaaaaaaaaa1",
    ),
}


def test_every_detector_has_cases() -> None:
    assert {d.kind for d in DETECTORS} == set(CASES)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_detector_positive(kind: str) -> None:
    text, value, _ = CASES[kind]
    assert (kind, value) in find_secrets(text)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_detector_negative(kind: str) -> None:
    _, _, text = CASES[kind]
    assert find_secrets(text) == []


def test_truncated_private_key_still_counts() -> None:
    found = find_secrets("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA")
    assert [k for k, _ in found] == ["private_key"]
    found = find_secrets("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF")
    assert [k for k, _ in found] == ["private_key"]
    two = find_secrets(PEM + "\n" + PEM.replace("RSA ", "EC "))
    assert [k for k, _ in two] == ["private_key", "private_key"]


def test_most_specific_kind_wins() -> None:
    text = f"Authorization: Bearer {JWT}\napi_key=sk_live_4eC39HqLyjWDarjtT1zdp7dc"
    assert [k for k, _ in find_secrets(text)] == ["stripe_key", "jwt"]


ORDINARY = [
    "Please review the quarterly report and send comments by Friday.",
    "The token bucket algorithm limits requests; see the password policy.",
    "Commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed the build.",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "request id 123e4567-e89b-12d3-a456-426614174000",
    "Call me at +1 415 555 0100 or visit https://example.com/docs?page=2",
    "The API key lives in the vault; never paste it here.",
    "id: 01HZX3K9Q2W8E7R6T5Y4U3I2O1, version 2.14.1, build 20240611",
    "base64 of hello is aGVsbG8=; the file is /usr/local/bin/python3.11",
    "Secret Santa: Alice -> Bob; password reset link sent.",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_no_false_positives_on_ordinary_text(text: str) -> None:
    assert find_secrets(text) == []


@settings(max_examples=100, deadline=None)
@given(st.uuids(), st.binary(min_size=20, max_size=20))
def test_uuids_and_shas_are_not_secrets(u: uuid.UUID, raw: bytes) -> None:
    text = f"uuid {u} and commit {raw.hex()} and {str(u).upper()}"
    assert find_secrets(text) == []


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(categories=["L", "Zs", "P"]), max_size=300))
def test_letters_and_punctuation_never_match(text: str) -> None:
    assert [k for k, _ in find_secrets(text) if k != "private_key"] == []


def test_looks_random() -> None:
    assert looks_random("Zk3q9Lp0Vb7Xw2Mn5Rt8")
    assert not looks_random("aaaaaaaaaaaaaaaa1")
    assert not looks_random("see-the-docs-for-details")
    assert not looks_random("Zk3q9Lp0")


def test_scanning_is_linear_enough() -> None:
    # patterns that could backtrack badly on long runs must not (no timing assert: just finish)
    for text in ("a" * 200_000, "token=" * 30_000, "eyJ" * 60_000, "4" * 200_000, "@" * 200_000):
        assert isinstance(find_secrets(text), list)
