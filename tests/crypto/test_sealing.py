"""Sealing secrets: AES-256-GCM format, names as associated data, tampering, key sources
(environment, key file), file modes, and rotation with old keys kept."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tribune.crypto.keys import b64url, b64url_decode
from tribune.crypto.sealing import (
    ENV_KEY,
    KEY_FILE,
    OLD_DIR,
    SealedSecretError,
    Sealer,
    sealing_key_id,
)
from tribune.errors import ConfigError, KeyFileInsecure, KeyFileInvalid

PLAIN = "sk-live-Zq8v2 ünïcode"
KEY = bytes(range(32))


def file_sealer(tmp_path: Path) -> Sealer:
    return Sealer(tmp_path / "keys", env={})


def env_sealer(tmp_path: Path, key: bytes = KEY) -> Sealer:
    return Sealer(tmp_path / "keys", env={ENV_KEY: b64url(key)})


def unreadable(sealer: Sealer, name: str, sealed: str, key_id: str) -> SealedSecretError:
    with pytest.raises(SealedSecretError) as info:
        sealer.open(name, sealed, key_id)
    err = info.value
    assert err.code == "secret_unreadable"
    assert err.message == f"secret `{name}` cannot be opened"
    for text in (str(err), repr(err), str(err.to_dict())):
        assert PLAIN not in text and b64url(KEY) not in text and KEY.hex() not in text
    return err


def flip(sealed: str, index: int) -> str:
    raw = bytearray(b64url_decode(sealed))
    raw[index] ^= 0x01
    return b64url(bytes(raw))


# --------------------------------------------------------------------------- format


def test_round_trip_and_format(tmp_path: Path) -> None:
    sealer = env_sealer(tmp_path)
    sealed, key_id = sealer.seal("stripe", PLAIN.encode())
    assert key_id == sealer.key_id == sealing_key_id(KEY)
    assert len(key_id) == 16 and int(key_id, 16) >= 0
    raw = b64url_decode(sealed)  # strict base64url, no padding
    assert len(raw) == 12 + len(PLAIN.encode()) + 16
    assert sealer.open("stripe", sealed, key_id) == PLAIN.encode()
    # The layout is nonce || ciphertext || tag, with the name as associated data.
    assert AESGCM(KEY).decrypt(raw[:12], raw[12:], b"stripe") == PLAIN.encode()
    assert PLAIN.encode() not in raw


def test_opens_a_value_sealed_elsewhere_by_the_same_rules(tmp_path: Path) -> None:
    nonce = bytes(12)
    sealed = b64url(nonce + AESGCM(KEY).encrypt(nonce, b"value", b"github"))
    assert env_sealer(tmp_path).open("github", sealed, sealing_key_id(KEY)) == b"value"


def test_every_seal_has_a_fresh_nonce(tmp_path: Path) -> None:
    sealer = env_sealer(tmp_path)
    seen = {sealer.seal("a", b"same")[0] for _ in range(50)}
    assert len(seen) == 50
    assert len({b64url_decode(s)[:12] for s in seen}) == 50


def test_key_id_is_not_the_key() -> None:
    kid = sealing_key_id(KEY)
    assert kid not in (KEY.hex(), b64url(KEY)) and kid not in KEY.hex()
    assert sealing_key_id(bytes(32)) != kid


# --------------------------------------------------------------------------- failures


def test_wrong_key_does_not_open(tmp_path: Path) -> None:
    sealed, key_id = env_sealer(tmp_path, KEY).seal("stripe", PLAIN.encode())
    other = env_sealer(tmp_path, bytes(32))
    unreadable(other, "stripe", sealed, key_id)  # a key id it does not know
    unreadable(other, "stripe", sealed, other.key_id)  # claimed to be its key: the tag fails


@pytest.mark.parametrize(
    ("part", "index"), [("nonce", 0), ("nonce", 11), ("ciphertext", 12), ("tag", -1), ("tag", -16)]
)
def test_tampered_value_does_not_open(tmp_path: Path, part: str, index: int) -> None:
    sealer = env_sealer(tmp_path)
    sealed, key_id = sealer.seal("stripe", PLAIN.encode())
    unreadable(sealer, "stripe", flip(sealed, index), key_id)


@pytest.mark.parametrize(
    "bad",
    ["", "A", "not base64!", b64url(bytes(27)), b64url(bytes(28)), "AAAA====", "AA+/AAAA"],
)
def test_malformed_value_does_not_open(tmp_path: Path, bad: str) -> None:
    sealer = env_sealer(tmp_path)
    unreadable(sealer, "stripe", bad, sealer.key_id)


def test_truncated_or_extended_value_does_not_open(tmp_path: Path) -> None:
    sealer = env_sealer(tmp_path)
    sealed, key_id = sealer.seal("stripe", PLAIN.encode())
    raw = b64url_decode(sealed)
    unreadable(sealer, "stripe", b64url(raw[:-1]), key_id)
    unreadable(sealer, "stripe", b64url(raw + b"\x00"), key_id)


def test_a_value_moved_to_another_name_does_not_open(tmp_path: Path) -> None:
    sealer = env_sealer(tmp_path)
    sealed, key_id = sealer.seal("stripe", PLAIN.encode())
    unreadable(sealer, "github", sealed, key_id)
    unreadable(sealer, "stripe ", sealed, key_id)
    assert sealer.open("stripe", sealed, key_id) == PLAIN.encode()


def test_repr_holds_no_key(tmp_path: Path) -> None:
    file = file_sealer(tmp_path)
    file.seal("a", PLAIN.encode())
    key = (tmp_path / "keys" / KEY_FILE).read_bytes()
    for sealer in (env_sealer(tmp_path), file):
        sealer.seal("a", PLAIN.encode())
        text = repr(sealer)
        for secret in (KEY, key):
            assert b64url(secret) not in text and secret.hex() not in text
        assert "AESGCM" not in text


# --------------------------------------------------------------------------- key sources


def test_env_key_is_used_and_no_key_file_is_made(tmp_path: Path) -> None:
    sealer = env_sealer(tmp_path)
    sealed, key_id = sealer.seal("a", b"v")
    assert sealer.from_env and key_id == sealing_key_id(KEY)
    assert not (tmp_path / "keys" / KEY_FILE).exists()
    # The file key (made on its first use) is another key: it cannot open the env's values.
    file = file_sealer(tmp_path)
    assert not file.from_env and file.key_id != key_id
    unreadable(file, "a", sealed, key_id)


def test_env_key_read_from_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, b64url(KEY))
    assert Sealer(tmp_path).key_id == sealing_key_id(KEY)
    monkeypatch.delenv(ENV_KEY)
    assert Sealer(tmp_path).key_id != sealing_key_id(KEY)


def test_env_key_with_padding_and_whitespace(tmp_path: Path) -> None:
    padded = base64.urlsafe_b64encode(KEY).decode() + "\n"
    assert Sealer(tmp_path, env={ENV_KEY: padded}).key_id == sealing_key_id(KEY)


@pytest.mark.parametrize(
    "bad", [b64url(bytes(31)), b64url(bytes(33)), "%%%" + b64url(KEY), base64.b64encode(KEY[:30])]
)
def test_bad_env_key_is_refused_without_quoting_it(tmp_path: Path, bad: str | bytes) -> None:
    text = bad.decode() if isinstance(bad, bytes) else bad
    sealer = Sealer(tmp_path, env={ENV_KEY: text})
    with pytest.raises(ConfigError) as info:
        sealer.seal("a", b"v")
    assert ENV_KEY in info.value.message
    assert text not in str(info.value)


def test_key_file_made_on_first_use_with_mode_0600(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    sealer = Sealer(keys, env={})
    assert not keys.exists()  # nothing made until the key is needed
    sealed, key_id = sealer.seal("a", b"v")
    path = keys / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert len(path.read_bytes()) == 32 and key_id == sealing_key_id(path.read_bytes())
    assert sorted(p.name for p in keys.iterdir()) == [KEY_FILE]  # no temporary files left
    again = Sealer(keys, env={})  # a later process loads the same key
    assert again.key_id == key_id and again.open("a", sealed, key_id) == b"v"


def test_racing_first_uses_agree_on_one_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda: ids.append(Sealer(keys, env={}).key_id)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    sealer = file_sealer(tmp_path)
    sealer.seal("a", b"v")
    (tmp_path / "keys" / KEY_FILE).chmod(0o644)
    with pytest.raises(KeyFileInsecure):
        file_sealer(tmp_path).seal("a", b"v")


def test_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    path = keys / KEY_FILE
    path.write_bytes(bytes(31))
    path.chmod(0o600)
    with pytest.raises(KeyFileInvalid):
        Sealer(keys, env={}).seal("a", b"v")


# --------------------------------------------------------------------------- rotation


def test_rotation_keeps_old_values_readable(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    sealer = Sealer(keys, env={})
    sealed, old_id = sealer.seal("a", b"old value")
    new_id = sealer.rotate()
    assert new_id != old_id and sealer.key_id == new_id
    assert sealer.key_ids() == sorted([old_id, new_id])
    kept = keys / OLD_DIR / f"{old_id}.key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE((keys / OLD_DIR).stat().st_mode) == 0o700
    assert sealing_key_id(kept.read_bytes()) == old_id
    assert sealing_key_id((keys / KEY_FILE).read_bytes()) == new_id
    assert sealer.open("a", sealed, old_id) == b"old value"
    assert sealer.seal("b", b"new value")[1] == new_id
    # A fresh process reads both keys.
    fresh = Sealer(keys, env={})
    assert fresh.key_id == new_id and fresh.open("a", sealed, old_id) == b"old value"
    # And a second rotation keeps both old keys.
    third = fresh.rotate()
    assert len(os.listdir(keys / OLD_DIR)) == 2
    assert Sealer(keys, env={}).key_ids() == sorted([old_id, new_id, third])


def test_a_rotation_by_another_process_is_picked_up(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    server = Sealer(keys, env={})
    server.seal("a", b"v")
    cli = Sealer(keys, env={})
    cli.rotate()
    sealed, key_id = cli.seal("b", b"after")
    assert server.open("b", sealed, key_id) == b"after"  # an unknown id re-reads the directory
    assert server.key_id == key_id


def test_an_old_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    sealer = Sealer(keys, env={})
    old_id = sealer.key_id
    sealer.rotate()
    (keys / OLD_DIR / f"{old_id}.key").chmod(0o640)
    with pytest.raises(KeyFileInsecure):
        Sealer(keys, env={}).seal("a", b"v")


def test_env_key_cannot_be_rotated_but_old_keys_still_open(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = env_sealer(tmp_path, KEY)
    sealed, old_id = first.seal("a", b"v")
    with pytest.raises(ConfigError) as info:
        first.rotate()
    assert b64url(KEY) not in str(info.value)
    # The operator's way: keep the old key as a file, set a new env key.
    (keys / OLD_DIR).mkdir(parents=True, mode=0o700)
    old = keys / OLD_DIR / "previous.key"
    old.write_bytes(KEY)
    old.chmod(0o600)
    second = env_sealer(tmp_path, bytes(32))
    assert second.key_id != old_id and second.open("a", sealed, old_id) == b"v"


def test_derived_keys_are_shared_per_key_and_label_and_survive_rotation(tmp_path: Path) -> None:
    sealer = file_sealer(tmp_path)
    first = sealer.derived(b"purpose a")
    assert len(first) == 1 and len(first[0]) == 32
    assert first == file_sealer(tmp_path).derived(b"purpose a")  # another process, same keys
    assert sealer.derived(b"purpose b") != first
    key = (tmp_path / "keys" / "sealing.key").read_bytes()
    assert key not in first  # never the sealing key itself
    sealer.rotate()
    after = sealer.derived(b"purpose a")
    assert len(after) == 2 and after[1] == first[0] and after[0] != first[0]
    assert file_sealer(tmp_path).derived(b"purpose a") == after


def test_derived_keys_from_the_env_key(tmp_path: Path) -> None:
    assert env_sealer(tmp_path).derived(b"x") == env_sealer(tmp_path / "other").derived(b"x")
    assert env_sealer(tmp_path).derived(b"x") != env_sealer(tmp_path, os.urandom(32)).derived(b"x")
