"""Ed25519 key pairs: ids (RFC 7638), JWKs, and the keys directory with its file-mode rules."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tribune.crypto import (
    KeyPair,
    b64url,
    b64url_decode,
    key_id,
    load_key_pair,
    load_or_create_key_pair,
    load_public_keys,
    public_jwk,
    public_key_from_jwk,
    save_key_pair,
    save_public_key,
)
from tribune.errors import InvalidInput, KeyFileInsecure, KeyFileInvalid

# RFC 8032 section 7.1, test 1; RFC 8037 appendix A uses the same key.
RFC_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"  # RFC 8037 appendix A.3


def rfc_pair() -> KeyPair:
    return KeyPair.from_private_key(Ed25519PrivateKey.from_private_bytes(RFC_SECRET))


def test_key_id_is_rfc7638_thumbprint_of_rfc8037_vector() -> None:
    pair = rfc_pair()
    assert key_id(pair.public_key) == RFC_THUMBPRINT
    assert pair.key_id == RFC_THUMBPRINT


def test_public_jwk_holds_only_public_members() -> None:
    jwk = public_jwk(rfc_pair().public_key)
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": RFC_X,
        "kid": RFC_THUMBPRINT,
        "alg": "EdDSA",
        "use": "sig",
    }
    assert "d" not in jwk


def test_jwk_round_trip_and_rejections() -> None:
    pair = KeyPair.generate()
    back = public_key_from_jwk(pair.public_jwk())
    assert key_id(back) == pair.key_id
    jwk = pair.public_jwk()
    with pytest.raises(InvalidInput, match="thumbprint"):
        public_key_from_jwk({**jwk, "kid": RFC_THUMBPRINT})
    with pytest.raises(InvalidInput, match="private"):
        public_key_from_jwk({**jwk, "d": "AAAA"})
    with pytest.raises(InvalidInput):
        public_key_from_jwk({**jwk, "x": jwk["x"][:-2]})
    with pytest.raises(InvalidInput):
        public_key_from_jwk({**jwk, "x": jwk["x"] + "="})
    with pytest.raises(InvalidInput):
        public_key_from_jwk({**jwk, "crv": "X25519"})
    with pytest.raises(InvalidInput):
        public_key_from_jwk("not a dict")


def test_two_keys_have_different_ids() -> None:
    assert KeyPair.generate().key_id != KeyPair.generate().key_id


def test_b64url_is_strict() -> None:
    assert b64url(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b"\xfb\xff"
    for bad in ("+/8", "-_8=", "-_9", "-_ 8", "é", ""):
        if bad == "":
            assert b64url_decode(bad) == b""
            continue
        with pytest.raises(ValueError):
            b64url_decode(bad)


def test_repr_never_shows_the_secret() -> None:
    pair = rfc_pair()
    assert repr(pair) == f"KeyPair(key_id={RFC_THUMBPRINT!r})"
    assert RFC_SECRET.hex() not in repr(pair)


# --------------------------------------------------------------------------- files


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    pair = KeyPair.generate()
    path = save_key_pair(keys, pair)
    assert path == keys / "signing.key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert (keys / f"{pair.key_id}.pub.pem").exists()
    loaded = load_key_pair(keys)
    assert loaded.key_id == pair.key_id
    message = b"same key"
    assert loaded.private_key.sign(message) == pair.private_key.sign(message)


def test_save_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    first = KeyPair.generate()
    save_key_pair(tmp_path, first)
    with pytest.raises(KeyFileInvalid, match="already exists"):
        save_key_pair(tmp_path, KeyPair.generate())
    assert load_key_pair(tmp_path).key_id == first.key_id


def test_named_keys_live_side_by_side(tmp_path: Path) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    save_key_pair(tmp_path, a, name="signing")
    save_key_pair(tmp_path, b, name="tokens")
    assert load_key_pair(tmp_path, name="tokens").key_id == b.key_id
    assert set(load_public_keys(tmp_path)) == {a.key_id, b.key_id}
    with pytest.raises(InvalidInput):
        save_key_pair(tmp_path, KeyPair.generate(), name="../escape")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o666])
def test_load_refuses_a_private_key_others_can_read(tmp_path: Path, mode: int) -> None:
    pair = KeyPair.generate()
    path = save_key_pair(tmp_path, pair)
    os.chmod(path, mode)
    with pytest.raises(KeyFileInsecure) as info:
        load_key_pair(tmp_path)
    err = info.value
    assert err.code == "key_file_insecure"
    assert f"{mode:04o}" in err.message
    assert "chmod 600" in (err.hint or "")
    secret_pem = path.read_text()
    assert secret_pem.splitlines()[1] not in str(err)


def test_load_accepts_owner_read_only(tmp_path: Path) -> None:
    path = save_key_pair(tmp_path, KeyPair.generate())
    os.chmod(path, 0o400)
    load_key_pair(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_load_refuses_a_private_key_owned_by_another_user(tmp_path: Path) -> None:
    path = save_key_pair(tmp_path, KeyPair.generate())
    os.chown(path, 54321, -1)
    with pytest.raises(KeyFileInsecure, match="another user"):
        load_key_pair(tmp_path)


def test_load_refuses_a_symlinked_private_key(tmp_path: Path) -> None:
    real = tmp_path / "real"
    save_key_pair(real, KeyPair.generate())
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "signing.key.pem").symlink_to(real / "signing.key.pem")
    with pytest.raises(KeyFileInvalid):
        load_key_pair(linked)


def test_load_missing_garbage_and_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(KeyFileInvalid, match="does not exist"):
        load_key_pair(tmp_path)
    path = tmp_path / "signing.key.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    os.close(fd)
    with pytest.raises(KeyFileInvalid, match="not an unencrypted PEM"):
        load_key_pair(tmp_path)
    other = Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(other)
    with pytest.raises(KeyFileInvalid, match="not an Ed25519"):
        load_key_pair(tmp_path)


def test_load_refuses_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "signing.key.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"A" * 100_000)
    os.close(fd)
    with pytest.raises(KeyFileInvalid, match="too large"):
        load_key_pair(tmp_path)


def test_load_or_create_creates_once(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = load_or_create_key_pair(keys)
    again = load_or_create_key_pair(keys)
    assert first.key_id == again.key_id
    assert list(load_public_keys(keys)) == [first.key_id]


def test_public_keys_survive_rotation(tmp_path: Path) -> None:
    old = KeyPair.generate()
    save_key_pair(tmp_path, old)
    (tmp_path / "signing.key.pem").unlink()
    new = KeyPair.generate()
    save_key_pair(tmp_path, new)
    assert set(load_public_keys(tmp_path)) == {old.key_id, new.key_id}


def test_public_key_file_must_be_named_after_its_key(tmp_path: Path) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    save_public_key(tmp_path, a.public_key)
    # Swap: a's key under b's name, as someone substituting a key would.
    (tmp_path / f"{a.key_id}.pub.pem").rename(tmp_path / f"{b.key_id}.pub.pem")
    with pytest.raises(KeyFileInvalid, match="not named after its key id"):
        load_public_keys(tmp_path)


def test_saving_a_public_key_twice_is_fine_but_not_a_different_one(tmp_path: Path) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    save_public_key(tmp_path, a.public_key)
    save_public_key(tmp_path, a.public_key)
    (tmp_path / f"{a.key_id}.pub.pem").write_bytes(
        b.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileInvalid, match="another key"):
        save_public_key(tmp_path, a.public_key)


def test_load_public_keys_of_missing_dir_is_empty(tmp_path: Path) -> None:
    assert load_public_keys(tmp_path / "nope") == {}


def test_digest_secret_is_made_once_private_and_checked(tmp_path: Path) -> None:
    import os

    from tribune.crypto import load_or_create_secret

    keys = tmp_path / "keys"
    first = load_or_create_secret(keys)
    path = keys / "digest.secret"
    assert len(first) == 32 and (path.stat().st_mode & 0o777) == 0o600
    assert load_or_create_secret(keys) == first
    assert load_or_create_secret(keys, name="other") != first
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileInsecure):
        load_or_create_secret(keys)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(KeyFileInvalid):
        load_or_create_secret(keys)
