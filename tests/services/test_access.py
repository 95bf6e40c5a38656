"""API keys: create and authenticate, every way a token can be wrong, roles, audit, bootstrap."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta
from typing import Any

import pytest

from tribune.bootstrap import open_tribune
from tribune.core.model import AgentStatus, ApiKey, Role
from tribune.errors import TribuneError, Unauthenticated
from tribune.services.access import TOKEN_PREFIX, AccessService, Caller

from .conftest import START, World

HELPER = "spiffe://acme.test/agent/helper"


def refused(world: World, token: Any) -> None:
    """Assert that ``token`` is refused with the one opaque error, and nothing is written."""
    before = world.tr.store.count()
    with pytest.raises(Unauthenticated) as info:
        world.tr.access.authenticate(token)
    assert info.value.to_dict() == {
        "code": "unauthenticated",
        "message": "invalid or missing credential",
    }
    assert world.tr.store.count() == before


def code_of(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(TribuneError) as info:
        fn(*args, **kw)
    return info.value.code


def split(token: str) -> tuple[str, str]:
    key_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
    return key_id, secret


def events(world: World) -> list[dict[str, Any]]:
    return [r["data"] for r in world.records() if str(r["data"].get("event", "")).startswith("api")]


# --------------------------------------------------------------------------- round trip


def test_user_key_round_trip(world: World) -> None:
    key, token = world.tr.access.create_key("user:alice", "approver", note="laptop")
    assert token.startswith("trb_") and len(token) == 64
    key_id, secret = split(token)
    assert key_id == key.id and len(key_id) == 16 and "_" not in key_id
    assert key.principal == "user:alice" and key.role is Role.APPROVER
    assert key.created_at == START and key.expires_at is None and key.note == "laptop"
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert world.tr.store.get_api_key(key.id) == key
    caller = world.tr.access.authenticate(token)
    assert caller == Caller(key.id, "user:alice", Role.APPROVER)
    assert (caller.user, caller.agent_id) == ("alice", None)


@pytest.mark.parametrize("name", ["helper", HELPER])
def test_agent_key_by_name_or_spiffe_id(world: World, name: str) -> None:
    key, token = world.tr.access.create_key(f"agent:{name}", Role.AGENT)
    assert key.principal == f"agent:{HELPER}"
    caller = world.tr.access.authenticate(token)
    assert caller.role is Role.AGENT
    assert (caller.user, caller.agent_id) == (None, HELPER)


def test_keys_are_random_and_distinct(world: World) -> None:
    made = [world.tr.access.create_key("user:bob", "auditor") for _ in range(5)]
    assert len({k.id for k, _ in made}) == 5
    assert len({split(t)[1] for _, t in made}) == 5
    for key, token in made:
        assert world.tr.access.authenticate(token).key_id == key.id


def test_keys_survive_a_reopen(world: World) -> None:
    _, token = world.tr.access.create_key("user:alice", "admin")
    world.reopen()
    assert world.tr.access.authenticate(token).principal == "user:alice"


def test_list_shows_every_key_oldest_first(world: World) -> None:
    first, _ = world.tr.access.create_key("user:alice", "admin")
    world.clock.advance(1)
    second, _ = world.tr.access.create_key("agent:ops", "agent")
    world.tr.access.revoke(first.id)
    listed = world.tr.access.list()
    assert [k.id for k in listed] == [first.id, second.id]
    assert listed[0].revoked_at == START + timedelta(seconds=1)


# --------------------------------------------------------------------------- attacks


def test_wrong_secret_is_refused(world: World) -> None:
    _, token = world.tr.access.create_key("user:alice", "admin")
    key_id, secret = split(token)
    other = ("A" if secret[0] != "A" else "B") + secret[1:]
    refused(world, f"trb_{key_id}_{other}")
    refused(world, f"trb_{key_id}_{'A' * 43}")


def test_tampered_id_is_refused(world: World) -> None:
    _, token = world.tr.access.create_key("user:alice", "admin")
    key_id, secret = split(token)
    flipped = ("a" if key_id[0] != "a" else "b") + key_id[1:]
    refused(world, f"trb_{flipped}_{secret}")
    refused(world, f"trb_{key_id.upper()}_{secret}")


def test_truncated_token_is_refused(world: World) -> None:
    _, token = world.tr.access.create_key("user:alice", "admin")
    for cut in (token[:-1], token[:21], token[:4], "trb", token[1:]):
        refused(world, cut)


def test_another_keys_id_with_this_secret_is_refused(world: World) -> None:
    _, mine = world.tr.access.create_key("user:bob", "auditor")
    theirs, _ = world.tr.access.create_key("user:alice", "admin")
    refused(world, f"trb_{theirs.id}_{split(mine)[1]}")


def test_revoked_key_is_refused(world: World) -> None:
    key, token = world.tr.access.create_key("user:alice", "admin")
    revoked = world.tr.access.revoke(key.id)
    assert revoked.revoked_at == START and not revoked.active(START)
    refused(world, token)


def test_expired_key_is_refused(world: World) -> None:
    key, token = world.tr.access.create_key("user:alice", "admin", ttl=60)
    assert key.expires_at == START + timedelta(seconds=60)
    world.clock.advance(59.999)
    assert world.tr.access.authenticate(token).key_id == key.id
    world.clock.advance(0.001)
    refused(world, token)


@pytest.mark.parametrize("status", [AgentStatus.SUSPENDED, AgentStatus.RETIRED])
def test_inactive_agents_key_is_refused(world: World, status: AgentStatus) -> None:
    _, token = world.tr.access.create_key("agent:helper", "agent")
    world.tr.registry.set_status("helper", status)
    refused(world, token)
    world.tr.registry.set_status("helper", AgentStatus.ACTIVE)
    assert world.tr.access.authenticate(token).agent_id == HELPER


def test_key_of_a_user_who_is_gone_is_refused(world: World) -> None:
    # There is no way to delete a user yet; a key left behind by one is written directly.
    _, token = world.tr.access.create_key("user:alice", "admin")
    stored = world.tr.store.get_api_key(split(token)[0])
    assert stored is not None
    orphan = ApiKey("orphanorphan2345", "user:ghost", Role.ADMIN, stored.secret_hash, START)
    world.tr.store.add_api_key(orphan)
    refused(world, f"trb_{orphan.id}_{split(token)[1]}")


@pytest.mark.parametrize(
    ("principal", "role"),
    [("agent:" + HELPER, Role.ADMIN), ("user:alice", Role.AGENT), ("group:support", Role.ADMIN)],
)
def test_a_stored_key_breaking_the_role_rules_is_refused(
    world: World, principal: str, role: Role
) -> None:
    _, token = world.tr.access.create_key("user:bob", "auditor")
    stored = world.tr.store.get_api_key(split(token)[0])
    assert stored is not None
    odd = ApiKey("oddoddoddoddodd2", principal, role, stored.secret_hash, START)
    world.tr.store.add_api_key(odd)
    refused(world, f"trb_{odd.id}_{split(token)[1]}")


@pytest.mark.parametrize("token", [None, "", " ", "Bearer", 42, b"trb_x"])
def test_missing_or_empty_token_is_refused(world: World, token: Any) -> None:
    refused(world, token)


def test_junk_is_refused(world: World) -> None:
    _, token = world.tr.access.create_key("user:alice", "admin")
    key_id, secret = split(token)
    junk = [
        "trb_" + "é" * 16 + "_" + secret,  # right length in characters, not ASCII
        "trb_" + key_id + "_" + "ü" * 43,
        "\uff54\uff52\uff42_" + key_id + "_" + secret,  # full-width prefix
        token[:-1] + "\u0661",  # Arabic-Indic digit one: a `\d` but not ASCII
        token[:-1] + "\x00",
        token + "\n",
        " " + token,
        token.replace("trb_", "TRB_"),
        token.replace("_", "-", 1),
        f"trb_{key_id}-{secret}",
        "trb_" + "\U0001f511" * 60,
        token * 2,
        "x" * 1_000_000,
        "\udcff" * 64,  # a lone surrogate: not encodable as UTF-8
    ]
    for bad in junk:
        refused(world, bad)
    assert world.tr.access.authenticate(token).key_id == key_id


def test_every_failure_reads_the_same(world: World) -> None:
    _, token = world.tr.access.create_key("user:alice", "admin", ttl=10)
    messages = set()
    for bad in (None, "junk", token[:-1], token.replace(split(token)[1], "A" * 43)):
        with pytest.raises(Unauthenticated) as info:
            world.tr.access.authenticate(bad)
        messages.add(str(info.value))
    world.clock.advance(10)
    with pytest.raises(Unauthenticated) as info:
        world.tr.access.authenticate(token)
    messages.add(str(info.value))
    assert messages == {"invalid or missing credential"}


# --------------------------------------------------------------------------- role rules


def test_agents_get_only_the_agent_role(world: World) -> None:
    before = world.tr.store.count()
    for role in ("admin", "approver", "auditor", Role.ADMIN):
        assert code_of(world.tr.access.create_key, "agent:helper", role) == "invalid_input"
    assert world.tr.access.list() == [] and world.tr.store.count() == before


def test_users_never_get_the_agent_role(world: World) -> None:
    for role in ("agent", Role.AGENT):
        assert code_of(world.tr.access.create_key, "user:alice", role) == "invalid_input"
    assert world.tr.access.list() == []


@pytest.mark.parametrize(
    ("principal", "role", "code"),
    [
        ("user:nobody", "admin", "unknown_principal"),
        ("agent:nobody", "agent", "unknown_agent"),
        ("agent:spiffe://acme.test/agent/nobody", "agent", "unknown_agent"),
        ("alice", "admin", "invalid_input"),
        ("group:support", "admin", "invalid_input"),
        ("user:", "admin", "invalid_input"),
        ("user:two words", "admin", "invalid_input"),
        ("user:alice", "root", "invalid_input"),
        ("user:alice", "", "invalid_input"),
    ],
)
def test_bad_input_is_refused(world: World, principal: str, role: str, code: str) -> None:
    before = world.tr.store.count()
    assert code_of(world.tr.access.create_key, principal, role) == code
    assert world.tr.access.list() == [] and world.tr.store.count() == before


def test_a_retired_agent_gets_no_key(world: World) -> None:
    world.tr.registry.set_status("ops", AgentStatus.RETIRED)
    assert code_of(world.tr.access.create_key, "agent:ops", "agent") == "agent_inactive"


@pytest.mark.parametrize("ttl", [0, -5, True, 10**12, 1.5])
def test_bad_ttl_is_refused(world: World, ttl: Any) -> None:
    assert code_of(world.tr.access.create_key, "user:alice", "admin", ttl=ttl) == "invalid_input"


def test_bad_note_is_refused(world: World) -> None:
    for note in ("line\nbreak", "x" * 201, "\x1b[31mred"):
        assert code_of(world.tr.access.create_key, "user:alice", "admin", note=note) == (
            "invalid_input"
        )


# --------------------------------------------------------------------------- audit


def test_events_record_create_and_revoke_and_never_the_secret(world: World) -> None:
    user_key, user_token = world.tr.access.create_key("user:alice", "admin")
    agent_key, agent_token = world.tr.access.create_key("agent:helper", "agent", ttl=600)
    for token in (user_token, agent_token):
        world.tr.access.authenticate(token)
    world.tr.access.revoke(user_key.id)
    world.tr.access.revoke(user_key.id)  # twice: no second event
    world.tr.access.revoke(agent_key.id)
    assert events(world) == [
        {
            "event": "api_key_created",
            "key_id": user_key.id,
            "principal": "user:alice",
            "role": "admin",
        },
        {
            "event": "api_key_created",
            "key_id": agent_key.id,
            "principal": f"agent:{HELPER}",
            "role": "agent",
        },
        {"event": "api_key_revoked", "key_id": user_key.id, "principal": "user:alice"},
        {"event": "api_key_revoked", "key_id": agent_key.id, "principal": f"agent:{HELPER}"},
    ]
    agent_events = [r for r in world.records() if r["data"].get("key_id") == agent_key.id]
    assert [r["agent_id"] for r in agent_events] == [HELPER, HELPER]
    forbidden = [
        user_token,
        agent_token,
        split(user_token)[1],
        split(agent_token)[1],
        user_key.secret_hash,
        agent_key.secret_hash,
    ]
    for record in world.tr.store.records():
        for text in forbidden:
            assert text not in record.body


def test_authenticating_writes_nothing(world: World) -> None:
    _, token = world.tr.access.create_key("user:alice", "admin")
    before = world.tr.store.count()
    for _ in range(20):
        world.tr.access.authenticate(token)
    assert world.tr.store.count() == before


def test_revoke_of_an_unknown_key_is_not_found(world: World) -> None:
    assert code_of(world.tr.access.revoke, "nosuchkey") == "unknown_api_key"
    with pytest.raises(TribuneError) as info:
        world.tr.access.revoke("nosuchkey")
    assert info.value.code == "unknown_api_key" and type(info.value).__name__ == "NotFound"


def test_revoking_an_expired_key_changes_nothing(world: World) -> None:
    key, _ = world.tr.access.create_key("user:alice", "admin", ttl=5)
    world.clock.advance(5)
    got = world.tr.access.revoke(key.id)
    assert got.revoked_at is None and not got.active(world.clock.now())
    assert [e["event"] for e in events(world)] == ["api_key_created"]


# --------------------------------------------------------------------------- bootstrap


def test_ensure_admin_creates_user_group_and_key_once(world: World) -> None:
    assert world.tr.store.get_user("admin") is None
    token = world.tr.access.ensure_admin()
    assert token is not None
    caller = world.tr.access.authenticate(token)
    assert (caller.user, caller.role) == ("admin", Role.ADMIN)
    user = world.tr.store.get_user("admin")
    assert user is not None and user.groups == ("admins",)
    assert world.tr.store.get_group("admins") is not None
    count = world.tr.store.count()
    assert world.tr.access.ensure_admin() is None
    world.reopen()
    assert world.tr.access.ensure_admin() is None
    assert world.tr.store.count() == count and len(world.tr.access.list()) == 1


def test_ensure_admin_leaves_an_existing_user_as_it_is(world: World) -> None:
    token = world.tr.access.ensure_admin("alice")
    assert token is not None and world.tr.access.authenticate(token).user == "alice"
    alice = world.tr.store.get_user("alice")
    assert alice is not None and alice.groups == ("support",)
    assert world.tr.store.get_group("admins") is None


def test_ensure_admin_counts_only_keys_that_work(world: World) -> None:
    world.tr.access.create_key("user:alice", "approver")  # not an admin key
    expiring, _ = world.tr.access.create_key("user:bob", "admin", ttl=60)
    assert world.tr.access.ensure_admin() is None  # bob's key is an active admin key
    world.clock.advance(60)
    first = world.tr.access.ensure_admin()
    assert first is not None
    world.tr.access.revoke(world.tr.access.authenticate(first).key_id)
    second = world.tr.access.ensure_admin()
    assert second is not None and second != first
    assert world.tr.access.ensure_admin() is None
    assert expiring.id in {k.id for k in world.tr.access.list()}


# --------------------------------------------------------------------------- the random source


def test_ids_and_secrets_come_from_the_random_source(world: World) -> None:
    counter = itertools.count()

    def fixed(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    tr = world.tr
    access = AccessService(tr.store, tr.clock, tr.ids, tr.audit, tr.registry, random=fixed)
    key, token = access.create_key("user:alice", "admin")
    assert key.id == "aaaaaaaaaaaaaaaa"  # ten zero bytes in base32
    assert tr.access.authenticate(token).key_id == key.id

    def stuck(n: int) -> bytes:
        return b"\x00" * n  # every id collides with the key above

    blocked = AccessService(tr.store, tr.clock, tr.ids, tr.audit, tr.registry, random=stuck)
    assert code_of(blocked.create_key, "user:bob", "admin") == "conflict"
    assert len(tr.access.list()) == 1


# --------------------------------------------------------------------------- holder cache


def test_a_suspension_elsewhere_takes_effect_within_a_second(world: World) -> None:
    _, token = world.tr.access.create_key("agent:helper", "agent")
    assert world.tr.access.authenticate(token).agent_id == HELPER  # holder now cached
    other = open_tribune(world.home, clock=world.clock)  # another replica, same store
    try:
        other.registry.set_status("helper", AgentStatus.SUSPENDED)
        with pytest.raises(Unauthenticated):
            other.access.authenticate(token)  # the replica that changed it knows at once
        world.clock.advance(0.5)
        assert world.tr.access.authenticate(token).agent_id == HELPER  # still cached here
        world.clock.advance(0.5)
        refused(world, token)
    finally:
        other.close()


def test_a_revocation_elsewhere_takes_effect_at_once(world: World) -> None:
    key, token = world.tr.access.create_key("user:alice", "admin")
    world.tr.access.authenticate(token)
    other = open_tribune(world.home, clock=world.clock)
    try:
        other.access.revoke(key.id)
    finally:
        other.close()
    refused(world, token)
