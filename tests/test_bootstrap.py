"""Bootstrap: making a home, opening it again, and refusing homes that are missing or unsafe."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tribune.bootstrap import (
    copy_pack,
    init_home,
    open_tribune,
    pack_files,
    resolve_home,
)
from tribune.errors import ConfigError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private_keys(home: Path) -> list[Path]:
    return [p for p in (home / "keys").iterdir() if p.name.endswith(".key.pem")]


def test_init_makes_a_private_digest_key(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home")
    secret = home / "keys" / "digest.secret"
    assert mode(secret) == 0o600 and len(secret.read_bytes()) == 32
    before = secret.read_bytes()
    open_tribune(home).close()
    assert secret.read_bytes() == before  # made once, then reused


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """Run with umask 000 so that modes come from the code, not the test runner."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_init_creates_the_layout_with_restrictive_modes(tmp_path: Path, loose_umask: None) -> None:
    home = tmp_path / "a" / "home"
    assert init_home(home) == home
    assert mode(home) == 0o700
    assert mode(home / "keys") == 0o700
    (key,) = private_keys(home)
    assert mode(key) == 0o600
    assert len([p for p in (home / "keys").iterdir() if p.name.endswith(".pub.pem")]) == 1
    assert (home / "tribune.toml").is_file() and (home / "tribune.db").is_file()
    for rel, text in pack_files().items():
        assert (home / "policies" / rel).read_text(encoding="utf-8") == text
    with open_tribune(home) as tr:
        active = tr.store.active_policy_version()
        assert active is not None and active.note == "initial: default policy pack"
        assert active.files == pack_files()  # the shipped pack, activated as shipped


def test_init_tightens_an_existing_empty_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    init_home(home)
    assert mode(home) == 0o700


def test_a_second_init_keeps_edits_and_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home)
    config = home / "tribune.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "checkpoint_every = 1000", "checkpoint_every = 7"
        )
        + "\n# my note\n",
        encoding="utf-8",
    )
    policy = home / "policies" / "permits.cedar"
    policy.write_text(policy.read_text(encoding="utf-8") + "\n// my edit\n", encoding="utf-8")
    (home / "policies" / "guards.cedar").unlink()  # a deleted pack file stays deleted
    keys = {
        p.relative_to(home / "keys").as_posix(): p.read_bytes()
        for p in (home / "keys").rglob("*")
        if p.is_file()
    }
    with open_tribune(home) as tr:
        first = tr.store.active_policy_version()
        tr.registry.add_group("kept")

    init_home(home)

    assert "checkpoint_every = 7" in config.read_text(encoding="utf-8")
    assert "# my note" in config.read_text(encoding="utf-8")
    assert policy.read_text(encoding="utf-8").endswith("// my edit\n")
    assert not (home / "policies" / "guards.cedar").exists()
    assert {
        p.relative_to(home / "keys").as_posix(): p.read_bytes()
        for p in (home / "keys").rglob("*")
        if p.is_file()
    } == keys
    with open_tribune(home) as tr:
        assert tr.settings.checkpoint_every == 7
        assert tr.store.get_group("kept") is not None
        versions = tr.store.list_policy_versions()
        assert first is not None and [v.id for v in versions] == [first.id]
        assert tr.audit.verify().ok


def test_opening_a_missing_home_without_create_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "missing"
    with pytest.raises(ConfigError) as info:
        open_tribune(home)
    err = info.value
    assert err.code == "config_invalid"
    assert str(home) in err.message and err.hint and "tribune init" in err.hint
    assert not home.exists()
    # a directory without tribune.toml is not a home either
    home.mkdir()
    with pytest.raises(ConfigError):
        open_tribune(home)
    assert list(home.iterdir()) == []


def test_open_with_create_initialises_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with open_tribune(home, create=True) as tr:
        assert tr.store.active_policy_version() is not None
    with open_tribune(home, create=True) as tr:
        assert len(tr.store.list_policy_versions()) == 1


def test_an_insecure_private_key_is_refused(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home")
    (key,) = private_keys(home)
    key.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        open_tribune(home)
    assert info.value.code == "key_file_insecure"
    assert "chmod 600" in (info.value.hint or "")


def test_close_signs_a_checkpoint(tmp_path: Path) -> None:
    home = init_home(tmp_path / "home")
    with open_tribune(home) as tr:
        tr.registry.add_group("sre")
        head = tr.store.head()
    with open_tribune(home) as tr:
        assert tr.store.checkpoints()[-1].seq == head[0]
        assert tr.audit.verify().ok


def test_resolve_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUNE_HOME", str(tmp_path / "env"))
    assert resolve_home(None) == (tmp_path / "env").resolve()
    assert resolve_home(tmp_path / "x" / ".." / "y") == (tmp_path / "y").resolve()
    monkeypatch.delenv("TRIBUNE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert resolve_home(None) == (tmp_path / "user" / ".tribune").resolve()
    assert resolve_home("~/elsewhere") == (tmp_path / "user" / "elsewhere").resolve()


def test_pack_files_and_copy_pack(tmp_path: Path) -> None:
    files = pack_files()
    assert "schema.cedarschema" in files
    assert {"permits.cedar", "guards.cedar"} <= set(files)
    assert any(rel.startswith("tests/") for rel in files)
    assert not any("__pycache__" in rel or rel.endswith(".py") for rel in files)
    copy_pack(tmp_path / "pack")
    written = {
        p.relative_to(tmp_path / "pack").as_posix()
        for p in (tmp_path / "pack").rglob("*")
        if p.is_file()
    }
    assert written == set(files)
