"""`tribune init`, a missing or broken home, and the installed console script."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tribune.bootstrap import pack_files
from tribune.cli.main import app

from .conftest import Cli, run_script


def _policy_versions(db: Path) -> list[tuple[str, bool]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, active FROM policy_versions ORDER BY id").fetchall()
    return [(str(i), bool(a)) for i, a in rows]


def test_init_creates_a_complete_home(tmp_path: Path, runner: CliRunner) -> None:
    home = tmp_path / "fresh"
    result = runner.invoke(app, ["init", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "initialised" in result.stdout

    assert (home / "tribune.toml").is_file()
    assert (home / "tribune.db").is_file()
    # The default pack, tests included, byte for byte.
    shipped = pack_files()
    assert any(name.startswith("tests/") and name.endswith(".yaml") for name in shipped)
    for name, text in shipped.items():
        assert (home / "policies" / name).read_text(encoding="utf-8") == text, name
    # The signing key is private; its public half sits next to it.
    keys = [p for p in (home / "keys").rglob("*") if p.is_file()]
    private = [k for k in keys if not k.name.endswith(".pub.pem") and k.suffix != ".json"]
    assert sorted(k.name for k in private) == ["active.key.pem", "digest.secret", "signing.key.pem"]
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in private)
    assert any(k.name.endswith(".pub.pem") for k in keys)
    # One policy version, active.
    versions = _policy_versions(home / "tribune.db")
    assert len(versions) == 1 and versions[0][1]


def test_init_twice_is_harmless(cli: Cli) -> None:
    keys_before = {
        p.relative_to(cli.home / "keys").as_posix(): p.read_bytes()
        for p in (cli.home / "keys").rglob("*")
        if p.is_file()
    }
    versions_before = _policy_versions(cli.home / "tribune.db")
    config_before = (cli.home / "tribune.toml").read_text(encoding="utf-8")
    edited = cli.home / "policies" / "permits.cedar"
    edited.write_text(edited.read_text(encoding="utf-8") + "\n// my edit\n", encoding="utf-8")

    result = cli("init")

    assert result.exit_code == 0, result.output
    assert {
        p.relative_to(cli.home / "keys").as_posix(): p.read_bytes()
        for p in (cli.home / "keys").rglob("*")
        if p.is_file()
    } == keys_before
    assert _policy_versions(cli.home / "tribune.db") == versions_before
    assert (cli.home / "tribune.toml").read_text(encoding="utf-8") == config_before
    assert edited.read_text(encoding="utf-8").endswith("// my edit\n")  # not overwritten
    assert cli.ok("audit", "verify").stdout.startswith("ok")


@pytest.mark.parametrize(
    "args",
    [
        ["agent", "list"],
        ["task", "list"],
        ["check", "--task", "t", "--tool", "x"],
        ["policy", "list"],
        ["audit", "verify"],
        ["audit", "tail"],
    ],
)
def test_a_missing_home_asks_for_init(tmp_path: Path, runner: CliRunner, args: list[str]) -> None:
    cli = Cli(runner, tmp_path / "nowhere")
    result = cli.error("config_invalid", 1, *args)
    assert "tribune init" in result.stderr
    assert str(tmp_path / "nowhere") in result.stderr
    assert not (tmp_path / "nowhere").exists()  # nothing created on the way


def test_tribune_home_comes_from_the_environment(
    runner: CliRunner, home: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["policy", "list"], env={"TRIBUNE_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert "*" in result.stdout
    missing = runner.invoke(app, ["agent", "list"], env={"TRIBUNE_HOME": str(tmp_path / "no")})
    assert missing.exit_code == 1
    assert "error[config_invalid]" in missing.stderr


def test_a_broken_config_is_reported_not_raised(cli: Cli) -> None:
    (cli.home / "tribune.toml").write_text("trust_domain = [unclosed\n", encoding="utf-8")
    result = cli.error("config_invalid", 1, "agent", "list")
    assert "tribune.toml" in result.stderr


def test_an_unknown_config_key_is_reported(cli: Cli) -> None:
    config = cli.home / "tribune.toml"
    config.write_text("colour = 'blue'\n" + config.read_text(encoding="utf-8"), encoding="utf-8")
    result = cli.error("config_invalid", 1, "agent", "list")
    assert "`colour`" in result.stderr


def test_error_messages_cannot_inject_markup(cli: Cli) -> None:
    # User input in a message is printed as is, not read as Rich markup.
    result = cli.error("invalid_input", 2, "agent", "show", "[bold]x[/bold]")
    assert "`[bold]x[/bold]`" in result.stderr


# ----------------------------------------------------------------- the installed script


def test_console_script_help() -> None:
    done = run_script("--help")
    assert done.returncode == 0, done.stderr
    for command in ("init", "demo", "check", "agent", "task", "policy", "audit"):
        assert command in done.stdout


def test_console_script_reports_a_missing_home(tmp_path: Path) -> None:
    done = run_script("agent", "list", "--home", str(tmp_path / "none"))
    assert done.returncode == 1
    assert "error[config_invalid]" in done.stderr
    assert "Traceback" not in done.stderr
