"""Fixtures for end-to-end CLI tests: the real ``tribune`` app run in-process by typer's
``CliRunner`` against a home in a temporary directory.

Initialising a home compiles and tests the default policy pack, so it happens once per session
into a template that each test gets a private copy of:

- ``home``: an initialised, empty home;
- ``org``: a home with people, tools and agents (see ``ORG``) registered through the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
import typer.testing
from typer.testing import CliRunner, Result

from tribune.cli.main import app

# Tool overrides and a directory, so targets in e-mails are extracted and classified.
TOML_EXTRA = """
[tools."email.send"]
groups = ["email"]
read_only = false
destructive = false
open_world = true
extractors = [{ kind = "email", pointer = "/to/*", role = "recipient", target = true }]
"""

# What the `org` home holds, as CLI arguments.
ORG: list[list[str]] = [
    ["group", "add", "support"],
    ["group", "add", "approvers"],
    ["user", "add", "alice", "--email", "alice@example.com", "-g", "support"],
    ["user", "add", "bob", "--email", "bob@example.com", "-g", "approvers"],
    ["tool", "add", '{"name": "kb.search", "read_only": true, "groups": ["kb"]}'],
    ["tool", "add", '{"name": "email.send"}'],
    [
        "tool",
        "add",
        '{"name": "db.drop", "destructive": true, "open_world": false, "groups": ["database"]}',
    ],
    [
        "agent",
        "register",
        "helper",
        "--owner",
        "user:alice",
        "--purpose",
        "answer support tickets",
        "--tool",
        "kb.search",
        "--tool",
        "email.send",
    ],
    [
        "agent",
        "register",
        "ops",
        "--owner",
        "group:approvers",
        "--purpose",
        "database maintenance",
        "--env",
        "production",
        "--tool-group",
        "database",
    ],
]


@dataclass
class Cli:
    """Runs ``tribune`` commands against one home."""

    runner: CliRunner
    home: Path

    def __call__(self, *args: str, input: str | None = None, home: bool = True) -> Result:
        """Run ``tribune ARGS --home HOME`` (without ``--home`` for commands that take none);
        a crash (not an exit) fails the test at once."""
        argv = [*args, "--home", str(self.home)] if home else list(args)
        result = self.runner.invoke(app, argv, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(
                f"`tribune {' '.join(args)}` crashed: {result.exception!r}\n{result.output}"
            ) from result.exception
        return result

    def ok(self, *args: str, input: str | None = None, home: bool = True) -> Result:
        """Run a command that must succeed."""
        result = self(*args, input=input, home=home)
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str, input: str | None = None, code: int = 0) -> Any:
        """Run a command and parse its standard output as JSON."""
        result = self(*args, input=input)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return json.loads(result.stdout)

    def error(
        self, code: str, exit_code: int, *args: str, input: str | None = None, home: bool = True
    ) -> Result:
        """Run a command that must fail with ``error[code]`` on stderr and ``exit_code``."""
        result = self(*args, input=input, home=home)
        assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
        assert f"error[{code}]:" in result.stderr, result.stderr
        assert "Traceback" not in result.output
        return result

    def start(self, agent: str, *args: str) -> str:
        """Start a task; return its id."""
        task: dict[str, Any] = self.json("task", "start", agent, *args)
        return str(task["id"])

    def audit_count(self) -> int:
        """Records in the audit log, read with plain sqlite3."""
        with sqlite3.connect(self.home / "tribune.db") as db:
            (n,) = db.execute("SELECT count(*) FROM audit_records").fetchone()
        return int(n)


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``tribune`` console script (not in-process) with ARGS."""
    script = Path(sys.executable).with_name("tribune")
    found = str(script) if script.exists() else shutil.which("tribune")
    assert found, "the `tribune` console script is not installed"
    env = {k: v for k, v in os.environ.items() if k != "TRIBUNE_HOME"}
    return subprocess.run(
        [found, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def copy_home(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest)
    return dest


@pytest.fixture(scope="session")
def runner() -> Iterator[CliRunner]:
    """typer's runner, with the click command built from ``app`` once rather than on every
    invoke (that rebuild is most of an in-process command's cost). Should typer's private
    ``_get_command`` go away, the patch does nothing and the tests only run slower."""
    command = typer.main.get_command(app)
    patch = pytest.MonkeyPatch()
    patch.setattr(
        typer.testing,
        "_get_command",
        lambda given: command if given is app else typer.main.get_command(given),
        raising=False,
    )
    yield CliRunner()
    patch.undo()


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory, runner: CliRunner) -> Path:
    """An initialised home, with tool overrides and a directory in its tribune.toml."""
    path = tmp_path_factory.mktemp("template") / "home"
    result = runner.invoke(app, ["init", "--home", str(path)])
    assert result.exit_code == 0, result.output
    config = path / "tribune.toml"
    text = config.read_text(encoding="utf-8")
    assert "domains = []" in text
    text = text.replace("domains = []", 'domains = ["example.com"]', 1)
    config.write_text(text + TOML_EXTRA, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def org_template(
    tmp_path_factory: pytest.TempPathFactory, runner: CliRunner, template_home: Path
) -> Path:
    path = copy_home(template_home, tmp_path_factory.mktemp("org") / "home")
    cli = Cli(runner, path)
    for args in ORG:
        cli.ok(*args)
    return path


@pytest.fixture
def home(tmp_path: Path, template_home: Path) -> Path:
    """A private copy of an initialised home."""
    return copy_home(template_home, tmp_path / "home")


@pytest.fixture
def cli(runner: CliRunner, home: Path) -> Cli:
    """The CLI on an initialised, empty home."""
    return Cli(runner, home)


@pytest.fixture
def org(runner: CliRunner, tmp_path: Path, org_template: Path) -> Cli:
    """The CLI on a home holding ``ORG``."""
    return Cli(runner, copy_home(org_template, tmp_path / "org"))


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a file under tmp_path; return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write
