"""`tribune agent key …`, `tribune tokens …`, `tribune leases …` and `tribune revoke`, run
through the real `tribune` app against a home with a credential source."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from tribune.bootstrap import open_tribune
from tribune.core.model import LeaseState
from tribune.crypto.assertions import sign_assertion

from .conftest import Cli

SOURCE = """
[credentials.kb-api]
backend = "token"
audience = "https://kb.example.com"
tools = ["kb.search"]
"""


@pytest.fixture
def creds(org: Cli) -> Cli:
    with (org.home / "tribune.toml").open("a", encoding="utf-8") as handle:
        handle.write(SOURCE)
    return org


def test_key_create_hands_the_private_key_over_once(org: Cli, tmp_path: Path) -> None:
    out = tmp_path / "helper.pem"
    result = org.ok("agent", "key", "create", "helper", "--out", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in result.output
    private_pem = out.read_text()
    (key,) = org.json("agent", "key", "list", "helper", "--json")
    assert key["status"] == "active" and key["source"] == "generated"
    assert private_pem.split("\n")[1] not in (org.home / "tribune.db").read_bytes().decode(
        "latin-1"
    )
    with open_tribune(org.home) as tr:
        agent_id = tr.registry.resolve_agent("helper").id
        assertion = sign_assertion(private_pem, agent_id, tr.tokens.audience, kid=key["kid"])
        assert tr.identity.authenticate(assertion).agent_id == agent_id
    org.error("invalid_input", 2, "agent", "key", "create", "helper", "--out", str(out))
    printed = org.ok("agent", "key", "create", "helper")
    assert printed.stdout.startswith("-----BEGIN PRIVATE KEY-----")
    assert "will not be shown again" in printed.stderr


def test_key_add_takes_a_public_key_and_refuses_a_private_one(org: Cli, tmp_path: Path) -> None:
    private = generate_private_key(SECP256R1())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(public_pem)
    org.ok("agent", "key", "add", "helper", str(tmp_path / "pub.pem"))
    (key,) = org.json("agent", "key", "list", "helper", "--json")
    assert (key["alg"], key["source"]) == ("ES256", "given")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "priv.pem").write_bytes(private_pem)
    result = org.error(
        "invalid_input", 2, "agent", "key", "add", "helper", str(tmp_path / "priv.pem")
    )
    assert "PRIVATE" not in result.stderr.replace("private", "")
    org.error("invalid_input", 2, "agent", "key", "add", "helper", str(tmp_path / "missing"))
    org.ok("agent", "key", "revoke", "helper", key["kid"])
    (after,) = org.json("agent", "key", "list", "helper", "--json")
    assert after["status"] == "revoked"
    org.error("unknown_agent_key", 2, "agent", "key", "revoke", "helper", key["kid"])


def test_token_keys_rotate_and_publish(org: Cli) -> None:
    before = org.json("tokens", "jwks")
    org.ok("tokens", "rotate")
    after = org.json("tokens", "jwks")
    assert len(after["keys"]) == len(before["keys"]) + 1
    jwt.PyJWKSet.from_dict(after)  # a valid JWKS document
    assert "pruned 0 key(s)" in org.ok("tokens", "prune").stderr


def test_leases_and_the_kill_switch(creds: Cli) -> None:
    task_id = creds.start("helper", "--purpose", "search", "--tool", "kb.search")
    with open_tribune(creds.home) as tr:
        lease = tr.leases.issue(task_id, "kb-api").lease
    (shown,) = creds.json("leases", "list", "--task", task_id, "--json")
    assert shown["id"] == lease.id and shown["state"] == "active"
    assert "credential" not in shown and "eyJ" not in json.dumps(shown)  # no JWS
    result = creds.ok("revoke", "--agent", "helper")
    assert "1 task(s) ended, 1 lease(s) revoked" in result.stderr
    with open_tribune(creds.home) as tr:
        assert tr.leases.get(lease.id).state is LeaseState.REVOKED
        assert tr.store.list_tasks(active_at=tr.clock.now()) == []
    creds.error("invalid_input", 2, "revoke")
    creds.error("invalid_input", 2, "revoke", "--all", "--agent", "helper")
    assert "0 task(s) ended" in creds.ok("revoke", "--all", "--suspend").stderr
    agents = {a["name"]: a["status"] for a in creds.json("agent", "list", "--json")}
    assert agents == {"helper": "suspended", "ops": "suspended"}


def test_lease_revoke_and_sweep(creds: Cli) -> None:
    task_id = creds.start("helper", "--purpose", "search", "--tool", "kb.search")
    with open_tribune(creds.home) as tr:
        lease = tr.leases.issue(task_id, "kb-api").lease
    assert "revoked" in creds.ok("leases", "revoke", lease.id).stderr
    assert "0 lease(s) ended" in creds.ok("leases", "sweep").stderr
    creds.error("unknown_lease", 2, "leases", "revoke", "nope")


def test_register_with_a_key_pair(org: Cli, tmp_path: Path) -> None:
    out = tmp_path / "reporter.pem"
    org.ok(
        "agent",
        "register",
        "reporter",
        "--owner",
        "user:alice",
        "--purpose",
        "reports",
        "--tool",
        "kb.search",
        "--key-out",
        str(out),
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    (key,) = org.json("agent", "key", "list", "reporter", "--json")
    with open_tribune(org.home) as tr:
        agent_id = tr.registry.resolve_agent("reporter").id
        signed = sign_assertion(out.read_text(), agent_id, tr.tokens.audience, kid=key["kid"])
        assert tr.identity.authenticate(signed).agent_id == agent_id
    # An existing file refuses the registration before anything is stored.
    org.error(
        "invalid_input",
        2,
        "agent",
        "register",
        "other",
        "--owner",
        "user:alice",
        "--purpose",
        "p",
        "--key-out",
        str(out),
    )
    assert "other" not in {a["name"] for a in org.json("agent", "list", "--json")}
