"""Public keys as JWKs: read one from PEM, a JWK or a JWKS document, check it, name it by its
RFC 7638 thumbprint; and check a compact JWS against such a key.

Accepted: Ed25519 (``OKP``, EdDSA), EC P-256 / P-384 / P-521 (ES256 / ES384 / ES512) and RSA
of at least 2048 bits (RS* or PS*). A private key is refused, never parsed for more than the
fact that it is one, and never quoted in an error. A normalised JWK holds only the public
members, ``kid`` and, where the key fixes it, ``alg``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tribune.crypto.keys import b64url, b64url_decode
from tribune.errors import InvalidInput

MAX_KEY = 16 * 1024  # a 4096-bit RSA JWK is under 1 KiB
MAX_JWKS_KEYS = 100
MIN_RSA_BITS = 2048
CURVES: dict[str, tuple[ec.EllipticCurve, int, str]] = {  # crv: (curve, coordinate bytes, alg)
    "P-256": (ec.SECP256R1(), 32, "ES256"),
    "P-384": (ec.SECP384R1(), 48, "ES384"),
    "P-521": (ec.SECP521R1(), 66, "ES512"),
}
RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
THUMBPRINT_MEMBERS = {
    "OKP": ("crv", "kty", "x"),
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
}


class BadSignature(Exception):
    """The JWS does not verify with the key (or is not a JWS at all: see ``malformed``)."""

    def __init__(self, malformed: bool) -> None:
        super().__init__("malformed" if malformed else "bad_signature")
        self.malformed = malformed


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint: base64url SHA-256 of the required members, sorted, no whitespace."""
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    text = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(text.encode("ascii")).digest())


def key_algorithms(jwk: Mapping[str, Any]) -> frozenset[str]:
    """The JWS algorithms a normalised JWK may verify: its ``alg``, else all RSA ones."""
    alg = jwk.get("alg")
    return frozenset({alg}) if isinstance(alg, str) else RSA_ALGS


def _int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _from_key(key: object) -> dict[str, Any]:
    """The normalised public members of a ``cryptography`` public key, with its fixed alg."""
    if isinstance(key, Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "alg": "EdDSA"}
    if isinstance(key, ec.EllipticCurvePublicKey):
        found = [(crv, c) for crv, c in CURVES.items() if c[0].name == key.curve.name]
        if not found:
            raise InvalidInput(
                f"unsupported EC curve `{key.curve.name}`", hint="use P-256, P-384 or P-521"
            )
        crv, (_, size, alg) = found[0]
        nums = key.public_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url(nums.x.to_bytes(size, "big")),
            "y": b64url(nums.y.to_bytes(size, "big")),
            "alg": alg,
        }
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(f"RSA key of {key.key_size} bits is too short", hint="use 2048+")
        rsa_nums = key.public_numbers()
        return {"kty": "RSA", "n": _int(rsa_nums.n), "e": _int(rsa_nums.e)}
    raise InvalidInput("unsupported key type", hint="use Ed25519, EC P-256/P-384/P-521 or RSA")


def _decode(jwk: Mapping[str, Any], name: str) -> bytes:
    try:
        return b64url_decode(jwk.get(name))
    except ValueError:
        raise InvalidInput(f"JWK member `{name}` is not base64url") from None


def _load_jwk(jwk: Mapping[str, Any]) -> object:
    """The ``cryptography`` public key a public JWK describes (checked: point on the curve,
    sizes, RSA exponent)."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    try:
        if kty == "OKP" and crv == "Ed25519":
            return Ed25519PublicKey.from_public_bytes(_decode(jwk, "x"))
        if kty == "EC" and isinstance(crv, str) and crv in CURVES:
            curve, size, _ = CURVES[crv]
            x, y = _decode(jwk, "x"), _decode(jwk, "y")
            if len(x) != size or len(y) != size:
                raise InvalidInput(f"JWK coordinates are not {size} bytes long")
            nums = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
            )
            return nums.public_key()
        if kty == "RSA":
            n, e = _decode(jwk, "n"), _decode(jwk, "e")
            return rsa.RSAPublicNumbers(
                int.from_bytes(e, "big"), int.from_bytes(n, "big")
            ).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("JWK does not describe a valid public key") from None
    raise InvalidInput(
        f"unsupported JWK `kty` `{kty}`" + (f" `crv` `{crv}`" if crv is not None else ""),
        hint="use OKP Ed25519, EC P-256/P-384/P-521 or RSA",
    )


def public_from_jwk(jwk: Any, *, keep_kid: bool = False) -> dict[str, Any]:
    """Check a public JWK and return it normalised. Its ``kid``, if any, must be the thumbprint
    unless ``keep_kid`` (SPIFFE bundles name keys as they like)."""
    if not isinstance(jwk, Mapping):
        raise InvalidInput("a JWK must be a JSON object")
    if any(name in jwk for name in PRIVATE_MEMBERS):
        raise InvalidInput("JWK holds a private or secret key", hint="give the public key only")
    if jwk.get("use") not in (None, "sig", "jwt-svid"):
        raise InvalidInput(f"JWK `use` `{jwk.get('use')}` is not for signatures")
    out = _from_key(_load_jwk(jwk))
    given = jwk.get("alg")
    if given is not None:
        allowed = key_algorithms(out)
        if not isinstance(given, str) or given not in allowed:
            raise InvalidInput(f"JWK `alg` `{given}` does not fit the key")
        out["alg"] = given
    kid, thumb = jwk.get("kid"), thumbprint(out)
    if keep_kid and kid is not None:
        if not isinstance(kid, str) or not 0 < len(kid) <= 256:
            raise InvalidInput("JWK `kid` must be a string of 1-256 characters")
        out["kid"] = kid
    elif kid is not None and not (
        isinstance(kid, str) and hmac.compare_digest(kid.encode(), thumb.encode())
    ):
        raise InvalidInput(
            "JWK `kid` is not the key's RFC 7638 thumbprint", hint=f"drop it or use `{thumb}`"
        )
    else:
        out["kid"] = thumb
    return out


def public_from_pem(pem: str | bytes) -> dict[str, Any]:
    """Check a SubjectPublicKeyInfo PEM and return the key as a normalised JWK."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)
    if len(data) > MAX_KEY:
        raise InvalidInput("key is too large")
    if b"PRIVATE KEY" in data:
        raise InvalidInput("PEM holds a private key", hint="give the public key only")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("not a PEM public key") from None
    out = _from_key(key)
    out["kid"] = thumbprint(out)
    return out


def parse_public_key(value: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """A public key given as PEM, JWK (a dict or its JSON text), normalised."""
    if isinstance(value, Mapping):
        return public_from_jwk(value)
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if not isinstance(text, str) or len(text) > MAX_KEY:
        raise InvalidInput("key is too large or not text")
    if text.lstrip().startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError:
            raise InvalidInput("key is neither PEM nor JSON") from None
        return public_from_jwk(loaded)
    return public_from_pem(text)


def parse_jwks(doc: Any, *, use: str | None = None, keep_kid: bool = False) -> list[dict[str, Any]]:
    """The keys of a JWKS document, normalised. With ``use``, keys whose ``use`` differs are
    left out (a SPIFFE bundle mixes ``x509-svid`` and ``jwt-svid`` keys). Kids must be unique."""
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(keys, list):
        raise InvalidInput("a JWKS document is an object with a `keys` list")
    if len(keys) > MAX_JWKS_KEYS:
        raise InvalidInput(f"a JWKS document holds at most {MAX_JWKS_KEYS} keys")
    out: list[dict[str, Any]] = []
    for entry in keys:
        if use is not None and isinstance(entry, Mapping) and entry.get("use") != use:
            if any(name in entry for name in PRIVATE_MEMBERS):
                raise InvalidInput("JWK holds a private or secret key", hint="give public keys")
            continue
        out.append(public_from_jwk(entry, keep_kid=keep_kid))
    kids = [k["kid"] for k in out]
    if len(set(kids)) != len(kids):
        raise InvalidInput("JWKS document names two keys with one `kid`")
    return out


def generate_ed25519() -> tuple[dict[str, Any], str]:
    """A fresh Ed25519 pair: (normalised public JWK, private key as PKCS#8 PEM)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out = _from_key(private.public_key())
    out["kid"] = thumbprint(out)
    return out, pem.decode("ascii")


# --------------------------------------------------------------------------- JWS


def _b64json(part: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(header, claims) of a compact JWS, NOT verified: only to choose a key or a verifier.
    None when it is not a compact JWS with JSON object parts."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header, claims = _b64json(parts[0]), _b64json(parts[1])
    return None if header is None or claims is None else (header, claims)


def verify_jws(token: str, jwk: Mapping[str, Any], alg: str) -> dict[str, Any]:
    """The claims of ``token`` once its signature checks out with ``jwk`` under ``alg`` (the
    caller pins ``alg`` to what the key allows). Raises ``BadSignature``."""
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg)
        signed = jwt.api_jws.decode_complete(token, key.key, algorithms=[alg])
        claims = json.loads(signed["payload"])
    except jwt.InvalidSignatureError:
        raise BadSignature(malformed=False) from None
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise BadSignature(malformed=True) from None
    if not isinstance(claims, dict):
        raise BadSignature(malformed=True)
    return claims
