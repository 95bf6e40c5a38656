"""``mcp-server-git`` (the reference Git server, from PyPI) behind the gateway, over stdio, in
both protocol eras: its tools listed under ``git.`` with their annotations, reads forwarded and
their real output returned, writes that policy holds back never reaching the repository.

The repository is a real one made with the ``git`` command in ``tmp_path``: one commit, and a
file staged after it, so both ``git_reset`` (unstages it) and ``git_commit`` (records it) would
change something a test can see.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tribune.core.model import Entitlements, RecordKind

from .conftest import ERAS, Home, stdio_gateway, text_of

HAS_GIT = importlib.util.find_spec("mcp_server_git") is not None
GIT_TOOLS = (
    "git_add",
    "git_branch",
    "git_checkout",
    "git_commit",
    "git_create_branch",
    "git_diff",
    "git_diff_staged",
    "git_diff_unstaged",
    "git_log",
    "git_reset",
    "git_show",
    "git_status",
)
GIT_ENV = {  # no user or system configuration: the same repository on every machine
    "PATH": os.environ.get("PATH", ""),
    "HOME": "/nonexistent",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@acme.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@acme.com",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if not HAS_GIT:  # it is in the `test` extra
        if os.environ.get("CI"):
            pytest.fail("mcp-server-git is required in CI")
        pytest.skip("mcp-server-git is not installed")
    if shutil.which("git") is None:
        pytest.skip("the git command is not installed")
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# demo\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "first commit")
    (path / "notes.txt").write_text("staged, not committed\n")
    git(path, "add", "notes.txt")
    return path


@pytest.fixture
def git_home(home: Home, repo: Path) -> Home:
    """The home with `git` as its only upstream, and an agent entitled to its tools."""
    home.config.write_text(
        f"""
[[gateway.upstreams]]
name = "git"
command = {json.dumps(sys.executable)}
args = ["-m", "mcp_server_git", "--repository", {json.dumps(str(repo))}]
timeout = 30
"""
    )
    home.tr.registry.register_agent(
        "coder",
        owner="user:alice",
        purpose="works on a repository",
        environment="development",
        entitlements=Entitlements(
            tools=frozenset(f"git.{t}" for t in GIT_TOOLS),
            tool_groups=frozenset({"git"}),
            environments=frozenset({"development", "production"}),
            open_scope=True,
        ),
    )
    return home


def snapshot(repo: Path) -> tuple[str, str]:
    """What a write would change: the commit HEAD names, and the index and working tree."""
    return git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")


@pytest.mark.parametrize("mode", ERAS)
def test_git_tools_are_listed_with_their_annotations(git_home: Home, mode: str) -> None:
    _, everything = git_home.task("coder", tool_groups=["git"])
    _, reads = git_home.task("coder", tools=["git.git_status", "git.git_log"])

    async def body() -> None:
        async with stdio_gateway(git_home, everything, mode) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert sorted(listed) == [f"git.{t}" for t in GIT_TOOLS]
            status = listed["git.git_status"].annotations
            assert status is not None
            assert status.read_only_hint is True and status.open_world_hint is False
            reset = listed["git.git_reset"].annotations
            assert reset is not None
            assert reset.read_only_hint is False and reset.destructive_hint is True
            commit = listed["git.git_commit"].annotations
            assert commit is not None
            assert commit.read_only_hint is False and commit.destructive_hint is False
            assert listed["git.git_log"].input_schema["required"] == ["repo_path"]
        async with stdio_gateway(git_home, reads, mode) as client:
            listed_reads = sorted(t.name for t in (await client.list_tools()).tools)
            assert listed_reads == ["git.git_log", "git.git_status"]

    anyio.run(body)
    reset = git_home.tr.store.get_tool("git.git_reset")
    assert reset is not None and reset.groups == ("git",)
    assert reset.risk.destructive and not reset.risk.read_only and not reset.risk.open_world


@pytest.mark.parametrize("mode", ERAS)
def test_git_reads_are_forwarded_and_recorded(git_home: Home, repo: Path, mode: str) -> None:
    task_id, token = git_home.task("coder", tools=["git.git_status", "git.git_log"])
    head = git(repo, "rev-parse", "HEAD").strip()

    async def body() -> None:
        async with stdio_gateway(git_home, token, mode) as client:
            status = await client.call_tool("git.git_status", {"repo_path": str(repo)})
            assert not status.is_error, text_of(status)
            text = text_of(status)
            assert text.startswith("Repository status:")
            assert "On branch main" in text and "new file:   notes.txt" in text
            log = await client.call_tool("git.git_log", {"repo_path": str(repo)})
            assert not log.is_error, text_of(log)
            assert f"Commit: {head}" in text_of(log) and "Message: first commit" in text_of(log)

    anyio.run(body)
    records = git_home.records(task_id)[1:]  # after the task's start
    one_call = [
        (RecordKind.INTENT, None, None),
        (RecordKind.DECISION, "allow", None),
        (RecordKind.RESULT, None, "ok"),
    ]
    assert [(k, d.get("effect"), d.get("status")) for k, _, d in records] == one_call * 2
    intents = [d for k, _, d in records if k is RecordKind.INTENT]
    assert [i["tool"] for i in intents] == ["git.git_status", "git.git_log"]
    assert intents[0]["arguments"] == {"repo_path": str(repo)}
    assert len({a for _, a, _ in records[:3]}) == 1  # intent, decision, result: one action
    assert all(r["output_digest"] for r in git_home.results(task_id))


@pytest.mark.parametrize("mode", ERAS)
def test_git_writes_held_for_approval_never_reach_the_repository(
    git_home: Home, repo: Path, mode: str
) -> None:
    # configuration over annotations: `git_commit` says it is not destructive; here it is
    toml = git_home.path / "tribune.toml"
    toml.write_text(
        toml.read_text()
        + '\n[tools."git.git_commit"]\ndestructive = true\n'  # one fact; the rest as annotated
    )
    task_id, token = git_home.task("coder", tool_groups=["git"], environment="production")
    before = snapshot(repo)
    calls = [
        ("git.git_reset", {"repo_path": str(repo)}),
        ("git.git_commit", {"repo_path": str(repo), "message": "sneaky"}),
    ]

    async def body() -> None:
        async with stdio_gateway(git_home, token, mode) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            commit = listed["git.git_commit"].annotations
            assert commit is not None and commit.destructive_hint is True  # the override
            for name, args in calls:
                result = await client.call_tool(name, args)
                assert result.is_error, name
                assert "approval" in text_of(result), text_of(result)
            assert snapshot(repo) == before  # checked while the upstream is still up

    anyio.run(body)
    assert snapshot(repo) == before
    assert git(repo, "log", "--format=%s") == "first commit\n"
    assert "A  notes.txt" in before[1]  # still staged: `git_reset` did not run
    decisions = git_home.decisions(task_id)
    assert [(d["tool"], d["effect"], d["policy_ids"]) for d in decisions] == [
        ("git.git_reset", "approval_required", ["production-destructive-approval"]),
        ("git.git_commit", "approval_required", ["production-destructive-approval"]),
    ]
    assert all(d["ticket"] for d in decisions)
    assert git_home.results(task_id) == []  # nothing ran
    intents = [d for k, _, d in git_home.records(task_id) if k is RecordKind.INTENT]
    assert [i["tool"] for i in intents] == ["git.git_reset", "git.git_commit"]
    commit = git_home.tr.store.get_tool("git.git_commit")  # registered from its annotations
    assert commit is not None and commit.groups == ("git",) and not commit.risk.destructive
