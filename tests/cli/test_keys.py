"""`tribune keys create|list|revoke`, run through the real `tribune` app."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import Result

from tribune.bootstrap import open_tribune
from tribune.cli.main import app as root
from tribune.errors import Unauthenticated

from .conftest import Cli


def run(cli: Cli, *args: str, code: int = 0) -> Result:
    """Run ``tribune keys ARGS --home HOME``; assert the exit code; never a crash."""
    result = cli.runner.invoke(root, ["keys", *args, "--home", str(cli.home)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"crashed: {result.exception!r}\n{result.output}")
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.output
    return result


def authenticate(cli: Cli, token: str) -> Any:
    with open_tribune(cli.home) as tr:
        return tr.access.authenticate(token)


def listed(cli: Cli) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(run(cli, "list", "--json").stdout)
    return out


def test_create_prints_the_token_once_with_a_warning(org: Cli) -> None:
    before = org.audit_count()
    result = run(org, "create", "user:alice", "--role", "admin", "--note", "laptop")
    token = result.stdout.strip()
    assert result.stdout == token + "\n"  # the token alone, for `$(tribune keys create …)`
    assert token.startswith("trb_") and len(token) == 64
    assert "will not be shown again" in result.stderr
    assert "user:alice" in result.stderr and "admin" in result.stderr
    caller = authenticate(org, token)
    assert (caller.user, caller.role.value) == ("alice", "admin")
    assert org.audit_count() == before + 1
    [key] = listed(org)
    assert (key["id"], key["note"], key["status"]) == (caller.key_id, "laptop", "active")


def test_create_an_agent_key_with_a_ttl(org: Cli) -> None:
    token = run(org, "create", "agent:helper", "--role", "agent", "--ttl", "600").stdout.strip()
    caller = authenticate(org, token)
    assert caller.agent_id == "spiffe://tribune.local/agent/helper"
    [key] = listed(org)
    assert key["principal"] == "agent:spiffe://tribune.local/agent/helper"
    assert key["expires_at"] is not None and key["role"] == "agent"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["agent:helper", "--role", "admin"], "invalid_input"),
        (["user:alice", "--role", "agent"], "invalid_input"),
        (["user:alice", "--role", "root"], "invalid_input"),
        (["user:alice", "--role", "admin", "--ttl", "0"], "invalid_input"),
        (["alice", "--role", "admin"], "invalid_input"),
        (["user:nobody", "--role", "admin"], "unknown_principal"),
        (["agent:nobody", "--role", "agent"], "unknown_agent"),
    ],
)
def test_bad_create_is_refused_and_stores_nothing(org: Cli, args: list[str], code: str) -> None:
    result = run(org, "create", *args, code=2)
    assert f"error[{code}]:" in result.stderr
    assert result.stdout == ""
    assert listed(org) == []


def test_list_never_shows_a_hash_or_a_secret(org: Cli) -> None:
    tokens = [
        run(org, "create", "user:bob", "--role", "auditor").stdout.strip(),
        run(org, "create", "agent:ops", "--role", "agent").stdout.strip(),
    ]
    with open_tribune(org.home) as tr:
        hashes = [k.secret_hash for k in tr.access.list()]
    table = run(org, "list").stdout
    as_json = run(org, "list", "--json").stdout
    for text in (table, as_json):
        # the secret part follows `trb_<16-char id>_` (it may itself hold `_`)
        for secret in [*hashes, *tokens, *(t[len("trb_") + 17 :] for t in tokens)]:
            assert secret not in text
    assert "user:bob" in table and "auditor" in table
    assert [k["role"] for k in json.loads(as_json)] == ["auditor", "agent"]
    assert all("secret_hash" not in k for k in json.loads(as_json))


def test_revoke_stops_the_key_and_twice_is_harmless(org: Cli) -> None:
    token = run(org, "create", "user:alice", "--role", "approver").stdout.strip()
    key_id = authenticate(org, token).key_id
    before = org.audit_count()
    assert "revoked" in run(org, "revoke", key_id).stdout
    with pytest.raises(Unauthenticated):
        authenticate(org, token)
    assert "already revoked" in run(org, "revoke", key_id).stdout
    assert org.audit_count() == before + 1
    [key] = listed(org)
    assert key["status"] == "revoked" and key["revoked_at"] is not None


def test_revoke_an_unknown_key_is_bad_input(org: Cli) -> None:
    result = run(org, "revoke", "nosuchkey", code=2)
    assert "error[unknown_api_key]:" in result.stderr
