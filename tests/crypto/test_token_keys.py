"""Token signing keys: files and modes, stable kid, rotation, pruning, JWKS, JWS checks."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from tribune.crypto import b64url, key_id, public_key_from_jwk
from tribune.crypto.token_keys import InvalidToken, TokenKeys
from tribune.errors import KeyFileInvalid
from tribune.system import FixedClock

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def keys(tmp_path: Path, clock: FixedClock) -> TokenKeys:
    return TokenKeys(tmp_path / "tokens", clock, retire_after=3600)


def test_creates_a_private_key_0600_and_reloads_the_same_kid(
    tmp_path: Path, clock: FixedClock, keys: TokenKeys
) -> None:
    private = tmp_path / "tokens" / "active.key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tokens").stat().st_mode) == 0o700
    assert (tmp_path / "tokens" / f"{keys.kid}.pub.pem").is_file()
    again = TokenKeys(tmp_path / "tokens", clock)
    assert again.kid == keys.kid


def test_kid_is_the_rfc7638_thumbprint(keys: TokenKeys) -> None:
    (jwk,) = keys.jwks()["keys"]
    assert jwk["kid"] == keys.kid == key_id(public_key_from_jwk(jwk))
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": jwk["x"],
        "kid": keys.kid,
        "use": "sig",
        "alg": "EdDSA",
    }
    assert "d" not in jwk


def test_sign_and_check_round_trip(keys: TokenKeys) -> None:
    token = keys.sign({"sub": "a", "n": 1})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": keys.kid, "typ": "JWT"}
    assert keys.verified_claims(token) == {"sub": "a", "n": 1}


def test_rotate_keeps_old_keys_verifying(tmp_path: Path, keys: TokenKeys) -> None:
    old_kid = keys.kid
    old_token = keys.sign({"n": 1})
    new_kid = keys.rotate()
    assert new_kid == keys.kid != old_kid
    assert keys.verified_claims(old_token) == {"n": 1}
    assert jwt.get_unverified_header(keys.sign({"n": 2}))["kid"] == new_kid
    assert [k["kid"] for k in keys.jwks()["keys"]] == sorted([old_kid, new_kid])
    assert not (tmp_path / "tokens" / "next.key.pem").exists()
    private = tmp_path / "tokens" / "active.key.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_rotation_survives_a_restart(tmp_path: Path, clock: FixedClock, keys: TokenKeys) -> None:
    old_token = keys.sign({"n": 1})
    new_kid = keys.rotate()
    again = TokenKeys(tmp_path / "tokens", clock)
    assert again.kid == new_kid
    assert again.verified_claims(old_token) == {"n": 1}


def test_another_process_rotation_is_seen(tmp_path: Path, clock: FixedClock) -> None:
    a = TokenKeys(tmp_path / "tokens", clock)
    b = TokenKeys(tmp_path / "tokens", clock)
    b.rotate()
    assert a.verified_claims(b.sign({"n": 1})) == {"n": 1}  # found on disk by kid
    a.reload()
    assert a.kid == b.kid


def test_prune_drops_keys_only_after_retire_after(
    tmp_path: Path, clock: FixedClock, keys: TokenKeys
) -> None:
    old_kid = keys.kid
    old_token = keys.sign({"n": 1})
    keys.rotate()
    clock.advance(3599)
    assert keys.prune() == []
    assert keys.verified_claims(old_token) == {"n": 1}
    clock.advance(1)
    assert keys.prune() == [old_kid]
    assert not (tmp_path / "tokens" / f"{old_kid}.pub.pem").exists()
    assert [k["kid"] for k in keys.jwks()["keys"]] == [keys.kid]
    with pytest.raises(InvalidToken) as err:
        keys.verified_claims(old_token)
    assert err.value.reason == "unknown_kid"
    assert json.loads((tmp_path / "tokens" / "retired.json").read_text()) == {}
    # and a fresh process does not bring it back
    assert TokenKeys(tmp_path / "tokens", clock).key_ids() == [keys.kid]


def test_prune_never_drops_the_active_key(
    tmp_path: Path, clock: FixedClock, keys: TokenKeys
) -> None:
    # A crash between recording the retirement and swapping the key leaves the active kid listed.
    (tmp_path / "tokens" / "retired.json").write_text(json.dumps({keys.kid: 0}))
    clock.advance(10**6)
    assert keys.prune() == []
    assert keys.verified_claims(keys.sign({"n": 1})) == {"n": 1}


def test_corrupt_retired_file_is_refused(tmp_path: Path, keys: TokenKeys) -> None:
    (tmp_path / "tokens" / "retired.json").write_text('{"x": "soon"}')
    with pytest.raises(KeyFileInvalid, match=r"retired\.json"):
        keys.prune()


@pytest.mark.parametrize(
    "token,reason",
    [
        (None, "malformed"),
        ("", "malformed"),
        ("a.b", "malformed"),
        ("a.b.c", "malformed"),
        ("x" * 20_000 + ".a.b", "malformed"),
    ],
)
def test_garbage_is_refused(keys: TokenKeys, token: object, reason: str) -> None:
    with pytest.raises(InvalidToken) as err:
        keys.verified_claims(token)
    assert err.value.reason == reason
    assert str(err.value) == "invalid token"


def test_unknown_kid_that_looks_like_a_path_is_refused(keys: TokenKeys) -> None:
    token = keys.sign({"n": 1})
    forged = jwt.encode({"n": 1}, "k" * 32, algorithm="HS256", headers={"kid": "../" + keys.kid})
    for kid in ("../" + keys.kid, "A" * 43):
        _, p, s = token.split(".")
        header = json.dumps({"alg": "EdDSA", "kid": kid, "typ": "JWT"}).encode()
        with pytest.raises(InvalidToken) as err:
            keys.verified_claims(".".join([b64url(header), p, s]))
        assert err.value.reason == "unknown_kid"
    with pytest.raises(InvalidToken) as err:
        keys.verified_claims(forged)
    assert err.value.reason == "bad_algorithm"


def test_a_public_key_file_under_another_kid_is_not_trusted(
    tmp_path: Path, clock: FixedClock, keys: TokenKeys
) -> None:
    stranger = TokenKeys(tmp_path / "stranger", clock)
    token = stranger.sign({"n": 1})
    _, p, s = token.split(".")
    fake_kid = "B" * 43
    src = tmp_path / "stranger" / f"{stranger.kid}.pub.pem"
    (tmp_path / "tokens" / f"{fake_kid}.pub.pem").write_bytes(src.read_bytes())
    header = json.dumps({"alg": "EdDSA", "kid": fake_kid, "typ": "JWT"}).encode()
    with pytest.raises(InvalidToken) as err:
        keys.verified_claims(".".join([b64url(header), p, s]))
    assert err.value.reason == "unknown_kid"


@pytest.mark.parametrize("extra", [{"typ": "at+jwt"}, {"crit": ["exp"]}])
def test_foreign_header_fields_are_refused(keys: TokenKeys, extra: dict[str, object]) -> None:
    token = jwt.encode(
        {"n": 1}, keys._active.private_key, algorithm="EdDSA", headers={"kid": keys.kid, **extra}
    )
    with pytest.raises(InvalidToken) as err:
        keys.verified_claims(token)
    assert err.value.reason in ("bad_header", "malformed")  # PyJWT itself refuses some `crit`


def test_a_remembered_signature_hands_out_copies_and_only_for_the_same_bytes(
    keys: TokenKeys,
) -> None:
    token = keys.sign({"n": 1, "list": [1]})
    first = keys.verified_claims(token)
    first["n"] = 2  # a caller changing its copy changes nothing remembered
    assert keys.verified_claims(token) == {"n": 1, "list": [1]}
    head, payload, sig = token.split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BA")
    with pytest.raises(InvalidToken) as err:
        keys.verified_claims(f"{head}.{payload}.{flipped}")
    assert err.value.reason in ("bad_signature", "malformed")


def test_a_server_picks_up_a_rotation_and_a_prune_made_elsewhere(
    tmp_path: Path, clock: FixedClock
) -> None:
    server = TokenKeys(tmp_path / "tokens", clock, retire_after=60, recheck_every=0)
    cli = TokenKeys(tmp_path / "tokens", clock, retire_after=60, recheck_every=0)
    old_kid = server.kid
    old_token = server.sign({"n": 1})
    assert server.verified_claims(old_token) == {"n": 1}  # now remembered
    new_kid = cli.rotate()
    # The server signs with the new key and publishes it without a restart.
    assert jwt.get_unverified_header(server.sign({"n": 2}))["kid"] == new_kid
    assert {k["kid"] for k in server.jwks()["keys"]} == {old_kid, new_kid}
    clock.advance(60)
    assert cli.prune() == [old_kid]
    # The pruned key verifies nothing any more, remembered signatures included.
    with pytest.raises(InvalidToken) as err:
        server.verified_claims(old_token)
    assert err.value.reason == "unknown_kid"
    assert server.key_ids() == [new_kid]


def test_without_a_change_on_disk_nothing_is_reloaded(tmp_path: Path, clock: FixedClock) -> None:
    keys = TokenKeys(tmp_path / "tokens", clock, recheck_every=0)
    token = keys.sign({"n": 1})
    keys.verified_claims(token)
    remembered = dict(keys._verified)
    keys.sign({"n": 2})
    assert keys._verified == remembered  # no reload: the memory was kept
