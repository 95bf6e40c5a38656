"""`tribune secrets put|list|delete|rotate-key|reseal`, run through the real `tribune` app."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tribune.bootstrap import open_tribune
from tribune.crypto.keys import b64url
from tribune.crypto.sealing import ENV_KEY, KEY_FILE, OLD_DIR, sealing_key_id

from .conftest import Cli

VALUE = "sk_live_cli-Very-Secret-42"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)


def opened_value(cli: Cli, name: str) -> str:
    with open_tribune(cli.home) as tr:
        value: str = tr.secrets.open(name)
    return value


def listed(cli: Cli) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = cli.json("secrets", "list", "--json")
    return out


def audit_bodies(cli: Cli) -> list[str]:
    with sqlite3.connect(cli.home / "tribune.db") as db:
        return [body for (body,) in db.execute("SELECT body FROM audit_records")]


def test_put_reads_the_value_from_stdin(cli: Cli) -> None:
    before = cli.audit_count()
    result = cli.ok("secrets", "put", "stripe", "--note", "payments", input=VALUE + "\n")
    assert "stripe" in result.stdout
    assert VALUE not in result.output
    assert opened_value(cli, "stripe") == VALUE  # the trailing line break is not the value
    [secret] = listed(cli)
    assert secret["name"] == "stripe" and secret["note"] == "payments"
    assert set(secret) == {"name", "key_id", "updated_at", "note"}
    assert cli.audit_count() == before + 1
    key = (cli.home / "keys" / KEY_FILE).read_bytes()
    assert secret["key_id"] == sealing_key_id(key)
    assert stat.S_IMODE((cli.home / "keys" / KEY_FILE).stat().st_mode) == 0o600


def test_put_keeps_inner_whitespace_and_crlf_is_stripped(cli: Cli) -> None:
    cli.ok("secrets", "put", "multi", input="line one\nline two \r\n")
    assert opened_value(cli, "multi") == "line one\nline two "


def test_put_from_a_file(cli: Cli, write: Callable[[str, str], Path]) -> None:
    path = write("value.txt", VALUE + "\n")
    cli.ok("secrets", "put", "github", "--from-file", str(path))
    assert opened_value(cli, "github") == VALUE


def test_put_from_a_missing_file(cli: Cli, tmp_path: Path) -> None:
    cli.error("invalid_input", 2, "secrets", "put", "github", "--from-file", str(tmp_path / "no"))


@pytest.mark.parametrize("given", ["", "\n", "\r\n"])
def test_put_refuses_an_empty_value(cli: Cli, given: str) -> None:
    before = cli.audit_count()
    cli.error("invalid_input", 2, "secrets", "put", "stripe", input=given)
    assert listed(cli) == []
    assert cli.audit_count() == before


def test_put_refuses_an_empty_file(cli: Cli, write: Callable[[str, str], Path]) -> None:
    path = write("empty.txt", "")
    cli.error("invalid_input", 2, "secrets", "put", "stripe", "--from-file", str(path))


def test_put_refuses_a_too_large_value(cli: Cli) -> None:
    cli.error("invalid_input", 2, "secrets", "put", "big", input="x" * (64 * 1024 + 10))
    assert listed(cli) == []


def test_the_value_is_never_an_argument(cli: Cli) -> None:
    result = cli("secrets", "put", "stripe", VALUE, input="")
    assert result.exit_code == 2  # a usage error: there is no VALUE argument
    assert listed(cli) == []


def test_put_refuses_a_bad_name(cli: Cli) -> None:
    cli.error("invalid_input", 2, "secrets", "put", "bad name", input=VALUE)


def test_list_shows_no_values(cli: Cli) -> None:
    cli.ok("secrets", "put", "stripe", "--note", "payments", input=VALUE)
    cli.ok("secrets", "put", "github", input="ghp_value")
    table = cli.ok("secrets", "list")
    assert "stripe" in table.stdout and "github" in table.stdout and "payments" in table.stdout
    as_json = cli.ok("secrets", "list", "--json")
    with open_tribune(cli.home) as tr:
        sealed = [s.sealed for s in tr.store.list_secrets()]
    for out in (table.output, as_json.output):
        assert VALUE not in out and "ghp_value" not in out
        assert all(s not in out for s in sealed)
    assert [s["name"] for s in listed(cli)] == ["github", "stripe"]


def test_delete(cli: Cli) -> None:
    cli.ok("secrets", "put", "stripe", input=VALUE)
    cli.ok("secrets", "delete", "stripe")
    assert listed(cli) == []
    cli.error("not_found", 2, "secrets", "delete", "stripe")


def test_rotate_key_reseals_every_secret(cli: Cli) -> None:
    cli.ok("secrets", "put", "stripe", input=VALUE)
    cli.ok("secrets", "put", "github", input="ghp_value")
    [old_id] = {s["key_id"] for s in listed(cli)}
    result = cli.ok("secrets", "rotate-key")
    assert "2 secret(s) re-sealed" in result.stdout
    [new_id] = {s["key_id"] for s in listed(cli)}
    assert new_id != old_id and new_id in result.stdout
    kept = cli.home / "keys" / OLD_DIR / f"{old_id}.key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert opened_value(cli, "stripe") == VALUE
    assert opened_value(cli, "github") == "ghp_value"


def test_reseal_after_changing_the_env_key(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = os.urandom(32), os.urandom(32)
    monkeypatch.setenv(ENV_KEY, b64url(first))
    cli.ok("secrets", "put", "stripe", input=VALUE)
    assert not (cli.home / "keys" / KEY_FILE).exists()
    cli.error("config_invalid", 1, "secrets", "rotate-key")
    # The operator keeps the old key as a file and sets a new one.
    old = cli.home / "keys" / OLD_DIR / "previous.key"
    old.parent.mkdir(mode=0o700)
    old.write_bytes(first)
    old.chmod(0o600)
    monkeypatch.setenv(ENV_KEY, b64url(second))
    assert "1 secret(s) re-sealed" in cli.ok("secrets", "reseal").stdout
    assert [s["key_id"] for s in listed(cli)] == [sealing_key_id(second)]
    old.unlink()
    assert opened_value(cli, "stripe") == VALUE


def test_unreadable_secret_is_a_clear_error(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, b64url(os.urandom(32)))
    cli.ok("secrets", "put", "stripe", input=VALUE)
    monkeypatch.setenv(ENV_KEY, b64url(os.urandom(32)))  # the old key is lost
    result = cli.error("secret_unreadable", 1, "secrets", "reseal")
    assert "`stripe`" in result.stderr and VALUE not in result.output


def test_audit_holds_no_value(cli: Cli) -> None:
    cli.ok("secrets", "put", "stripe", input=VALUE)
    cli.ok("secrets", "rotate-key")
    cli.ok("secrets", "delete", "stripe")
    bodies = audit_bodies(cli)
    events = [b for b in bodies if '"secret' in b]
    assert len(events) == 3
    for body in bodies:
        assert VALUE not in body and b64url(VALUE.encode()) not in body
