"""Ed25519 signer and verifier: RFC 8032 vectors, and verification that never raises."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tribune.crypto import Ed25519Signer, Ed25519Verifier, KeyPair
from tribune.errors import InvalidInput

# RFC 8032 section 7.1, test 1 (empty message) and test 2 (one byte 0x72).
SECRET_1 = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
SIG_1 = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
SECRET_2 = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
SIG_2 = bytes.fromhex(
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
)


def signer_of(secret: bytes) -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(secret))


def test_signatures_match_rfc8032_vectors() -> None:
    assert signer_of(SECRET_1).sign(b"") == SIG_1
    assert signer_of(SECRET_2).sign(b"\x72") == SIG_2


def test_verify_accepts_rfc8032_vectors() -> None:
    s1, s2 = signer_of(SECRET_1), signer_of(SECRET_2)
    verifier = Ed25519Verifier([s1.public_key, s2.public_key])
    assert verifier.verify(s1.key_id, b"", SIG_1)
    assert verifier.verify(s2.key_id, b"\x72", SIG_2)
    # A signature is bound to its key: the other key id fails.
    assert not verifier.verify(s2.key_id, b"", SIG_1)


def test_signer_from_key_pair_shares_key_id() -> None:
    pair = KeyPair.generate()
    signer = Ed25519Signer(pair)
    assert signer.key_id == pair.key_id
    assert signer.public_jwk()["kid"] == pair.key_id
    assert "private" not in repr(signer).lower()


@pytest.fixture
def pair() -> tuple[Ed25519Signer, Ed25519Verifier]:
    signer = Ed25519Signer(KeyPair.generate())
    return signer, Ed25519Verifier([signer.public_key])


def test_round_trip_and_tampering(pair: tuple[Ed25519Signer, Ed25519Verifier]) -> None:
    signer, verifier = pair
    sig = signer.sign(b"checkpoint 1000")
    assert verifier.verify(signer.key_id, b"checkpoint 1000", sig)
    assert not verifier.verify(signer.key_id, b"checkpoint 1001", sig)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verifier.verify(signer.key_id, b"checkpoint 1000", flipped)
    # Non-canonical S (S + group order) must not verify: no malleability.
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + order
    if s < 2**256:
        assert not verifier.verify(
            signer.key_id, b"checkpoint 1000", sig[:32] + s.to_bytes(32, "little")
        )


@pytest.mark.parametrize(
    ("kid", "message", "signature"),
    [
        ("unknown", b"m", b"\x00" * 64),
        (None, b"m", b"\x00" * 64),
        (["list"], b"m", b"\x00" * 64),
        ("KID", None, b"\x00" * 64),
        ("KID", "text, not bytes", b"\x00" * 64),
        ("KID", b"m", b""),
        ("KID", b"m", b"\x00" * 63),
        ("KID", b"m", b"\x00" * 65),
        ("KID", b"m", "a" * 64),
        ("KID", b"m", None),
        ("KID", b"m", 12345),
    ],
)
def test_verify_never_raises_on_bad_input(
    pair: tuple[Ed25519Signer, Ed25519Verifier], kid: Any, message: Any, signature: Any
) -> None:
    signer, verifier = pair
    kid = signer.key_id if kid == "KID" else kid
    assert verifier.verify(kid, message, signature) is False


def test_unknown_key_fails_even_with_a_valid_signature() -> None:
    stranger = Ed25519Signer(KeyPair.generate())
    verifier = Ed25519Verifier([KeyPair.generate().public_key])
    sig = stranger.sign(b"m")
    assert not verifier.verify(stranger.key_id, b"m", sig)
    verifier.add(stranger.public_key)
    assert verifier.verify(stranger.key_id, b"m", sig)


def test_key_id_spoofing_is_refused() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    with pytest.raises(InvalidInput, match="thumbprint"):
        Ed25519Verifier({a.key_id: b.public_key})
    verifier = Ed25519Verifier({a.key_id: a.public_key})
    assert verifier.key_ids() == [a.key_id]
    assert verifier.knows(a.key_id)
    assert not verifier.knows(b.key_id)


def test_jwks_round_trip() -> None:
    a, b = Ed25519Signer(KeyPair.generate()), Ed25519Signer(KeyPair.generate())
    verifier = Ed25519Verifier([a.public_key, b.public_key])
    jwks = verifier.jwks()
    assert [k["kid"] for k in jwks["keys"]] == sorted([a.key_id, b.key_id])
    assert all("d" not in k for k in jwks["keys"])
    foreign = {"kty": "RSA", "n": "x", "e": "AQAB", "kid": "rsa"}
    again = Ed25519Verifier.from_jwks({"keys": [*jwks["keys"], foreign]})
    assert again.key_ids() == verifier.key_ids()
    assert again.verify(a.key_id, b"m", a.sign(b"m"))
    with pytest.raises(InvalidInput):
        Ed25519Verifier.from_jwks({"keys": "nope"})
