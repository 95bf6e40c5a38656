"""Public keys from PEM, JWK and JWKS: what is accepted, how it is normalised and named (RFC 7638),
what is refused (private keys above all), and checking a JWS against such a key."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tribune.crypto import key_id
from tribune.crypto.jwk import (
    BadSignature,
    generate_ed25519,
    key_algorithms,
    parse_jwks,
    parse_public_key,
    public_from_jwk,
    thumbprint,
    unverified,
    verify_jws,
)
from tribune.errors import InvalidInput

# RFC 7638 section 3.1: the RSA key and its thumbprint.
RFC_RSA = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
    "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6We"
    "Zu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
}
RFC_RSA_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def pem(private: Any) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(private: Any) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


RSA_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --------------------------------------------------------------------------- accepted


def test_rfc7638_thumbprint_of_the_rfc_rsa_key() -> None:
    assert thumbprint(RFC_RSA) == RFC_RSA_THUMBPRINT
    out = public_from_jwk({**RFC_RSA, "kid": "2011-04-29"}, keep_kid=True)
    assert out["kid"] == "2011-04-29"
    out = parse_public_key(RFC_RSA)
    assert out == {**RFC_RSA, "kid": RFC_RSA_THUMBPRINT}


def test_ed25519_pem_and_jwk() -> None:
    private = Ed25519PrivateKey.generate()
    out = parse_public_key(pem(private))
    assert set(out) == {"kty", "crv", "x", "kid", "alg"}
    assert out["kty"] == "OKP" and out["crv"] == "Ed25519" and out["alg"] == "EdDSA"
    assert out["kid"] == key_id(private.public_key())  # the same id the home's keys use
    assert parse_public_key(out) == out
    assert parse_public_key(json.dumps(out)) == out  # JWK as JSON text
    assert parse_public_key(pem(private).encode()) == out


@pytest.mark.parametrize(
    ("curve", "crv", "alg", "size"),
    [
        (ec.SECP256R1(), "P-256", "ES256", 32),
        (ec.SECP384R1(), "P-384", "ES384", 48),
        (ec.SECP521R1(), "P-521", "ES512", 66),
    ],
)
def test_ec_keys(curve: ec.EllipticCurve, crv: str, alg: str, size: int) -> None:
    private = ec.generate_private_key(curve)
    out = parse_public_key(pem(private))
    assert set(out) == {"kty", "crv", "x", "y", "kid", "alg"}
    assert (out["crv"], out["alg"]) == (crv, alg)
    assert key_algorithms(out) == {alg}
    assert out["kid"] == thumbprint(out)
    assert len(jwt.utils.base64url_decode(out["x"])) == size
    assert parse_public_key({**out, "use": "sig"}) == out  # `use` is dropped


def test_rsa_keys_record_what_they_allow() -> None:
    out = parse_public_key(pem(RSA_2048))
    assert set(out) == {"kty", "n", "e", "kid"}  # no alg: RS* and PS* both fit
    assert {"RS256", "PS256"} <= key_algorithms(out)
    fixed = parse_public_key({**out, "alg": "PS256"})
    assert fixed["alg"] == "PS256" and key_algorithms(fixed) == {"PS256"}
    assert fixed["kid"] == out["kid"]  # alg is not part of the thumbprint


def test_jwks_document_and_the_use_filter() -> None:
    ed = parse_public_key(pem(Ed25519PrivateKey.generate()))
    p256 = parse_public_key(pem(ec.generate_private_key(ec.SECP256R1())))
    x509 = {"kty": "EC", "use": "x509-svid", "x5c": ["MIIB..."], "crv": "P-256"}
    assert parse_jwks({"keys": [ed, p256]}) == [ed, p256]
    bundle = {"keys": [{**p256, "kid": "svid-1", "use": "jwt-svid"}, x509]}
    assert parse_jwks(bundle, use="jwt-svid", keep_kid=True) == [{**p256, "kid": "svid-1"}]
    with pytest.raises(InvalidInput, match="one `kid`"):
        parse_jwks({"keys": [ed, ed]})


def test_generate_ed25519() -> None:
    jwk, private = generate_ed25519()
    assert "d" not in jwk and private.startswith("-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(private.encode(), None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert jwk["kid"] == key_id(loaded.public_key())


# --------------------------------------------------------------------------- refused


def test_private_jwk_refused() -> None:
    jwk, _ = generate_ed25519()
    for member in ("d", "p", "k"):
        with pytest.raises(InvalidInput, match="private or secret key") as err:
            parse_public_key({**jwk, member: "c2VjcmV0"})
        assert "c2VjcmV0" not in str(err.value)
    with pytest.raises(InvalidInput, match="private or secret key"):
        parse_public_key({"kty": "oct", "k": "c2VjcmV0"})
    with pytest.raises(InvalidInput, match="private"):  # also inside a JWKS, even if skipped
        parse_jwks({"keys": [{**jwk, "d": "x", "use": "enc"}]}, use="jwt-svid")


@pytest.mark.parametrize(
    "private",
    [Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1()), RSA_2048],
    ids=["ed25519", "p256", "rsa"],
)
def test_private_pem_refused_without_echo(private: Any) -> None:
    text = private_pem(private)
    for form in (text, text.encode()):
        with pytest.raises(InvalidInput, match="PEM holds a private key") as err:
            parse_public_key(form)
        body = text.splitlines()[1]
        assert body not in str(err.value) and body[:16] not in repr(err.value.to_dict())
    traditional = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH
        if isinstance(private, Ed25519PrivateKey)
        else serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidInput, match="private key"):
        parse_public_key(traditional)


def test_weak_or_foreign_keys_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidInput, match="too short"):
        parse_public_key(pem(small))
    with pytest.raises(InvalidInput, match="unsupported"):
        parse_public_key(pem(Ed448PrivateKey.generate()))
    with pytest.raises(InvalidInput, match="unsupported"):
        parse_public_key(pem(ec.generate_private_key(ec.SECP256K1())))
    with pytest.raises(InvalidInput, match="unsupported"):
        parse_public_key({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"})
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        parse_public_key("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    with pytest.raises(InvalidInput):
        parse_public_key("x" * 20_000)


def test_bad_members_refused() -> None:
    p256 = parse_public_key(pem(ec.generate_private_key(ec.SECP256R1())))
    other = parse_public_key(pem(ec.generate_private_key(ec.SECP256R1())))
    off_curve = {**p256, "y": other["y"]}
    with pytest.raises(InvalidInput, match="not describe a valid public key"):
        parse_public_key(off_curve)
    with pytest.raises(InvalidInput, match="not base64url"):
        parse_public_key({**p256, "x": p256["x"] + "="})
    with pytest.raises(InvalidInput, match="bytes long"):
        parse_public_key({**p256, "x": "AAAA"})
    with pytest.raises(InvalidInput, match="does not fit"):
        parse_public_key({**p256, "alg": "ES384"})
    with pytest.raises(InvalidInput, match="does not fit"):
        parse_public_key({**p256, "alg": "HS256"})
    with pytest.raises(InvalidInput, match="thumbprint"):
        parse_public_key({**p256, "kid": "mine"})
    with pytest.raises(InvalidInput, match="not for signatures"):
        parse_public_key({**p256, "use": "enc"})
    with pytest.raises(InvalidInput):
        parse_public_key({**RFC_RSA, "e": "AQA"})  # not canonical base64url
    with pytest.raises(InvalidInput, match="JSON object"):
        public_from_jwk(["not", "a", "dict"])


# --------------------------------------------------------------------------- JWS


def another_like(private: Any) -> Any:
    """A fresh private key of the same type (and curve) as ``private``."""
    if isinstance(private, Ed25519PrivateKey):
        return Ed25519PrivateKey.generate()
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return ec.generate_private_key(private.curve)
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("private", "alg"),
    [
        (Ed25519PrivateKey.generate(), "EdDSA"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (RSA_2048, "RS256"),
        (RSA_2048, "PS256"),
    ],
)
def test_verify_jws(private: Any, alg: str) -> None:
    jwk = parse_public_key(pem(private))
    token = jwt.encode({"sub": "x"}, private, algorithm=alg, headers={"kid": jwk["kid"]})
    assert verify_jws(token, jwk, alg) == {"sub": "x"}
    assert unverified(token) == ({"alg": alg, "kid": jwk["kid"], "typ": "JWT"}, {"sub": "x"})
    stranger = parse_public_key(pem(another_like(private)))
    with pytest.raises(BadSignature) as err:
        verify_jws(token, stranger, alg)
    assert not err.value.malformed
    with pytest.raises(BadSignature) as err:
        verify_jws(token.replace(".", "!", 1), jwk, alg)
    assert err.value.malformed


def test_unverified_refuses_what_is_not_a_jws() -> None:
    assert unverified("a.b") is None
    assert unverified("a.b.c") is None
    assert unverified("W10.e30.") is None  # header is a list
