"""The credentials part of the store contract (agent keys, token ids, leases, sealed secrets),
on every backend."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tribune.core.model import AgentKey, AgentStatus, Lease, LeaseState, SealedSecret, TaskState
from tribune.errors import Conflict, InvalidInput, UnknownTask
from tribune.ports import Store

from .contract_helpers import IST, T0, agent, task

JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}


def agent_key(kid: str = "k" * 43, **changes: object) -> AgentKey:
    values: dict[str, object] = {
        "agent_id": agent().id,
        "kid": kid,
        "jwk": dict(JWK),
        "created_at": T0.astimezone(IST),
    }
    values.update(changes)
    return AgentKey(**values)  # type: ignore[arg-type]


def lease(lease_id: str, task_id: str = "t1", **changes: object) -> Lease:
    values: dict[str, object] = {
        "id": lease_id,
        "task_id": task_id,
        "agent_id": agent().id,
        "backend": "token",
        "scope": {"audience": "https://crm.example", "tools": ["crm.read"], "ünï": True},
        "issued_at": T0,
        "expires_at": T0 + timedelta(minutes=5),
        "max_expires_at": T0 + timedelta(hours=1),
        "handle": "jti-1",
    }
    values.update(changes)
    return Lease(**values)  # type: ignore[arg-type]


@pytest.fixture
def with_task(store: Store) -> Store:
    store.add_agent(agent())
    store.add_task(task("t1", agent().id, T0))
    store.add_task(task("t2", agent().id, T0))
    return store


# --------------------------------------------------------------------------- agent keys


def test_agent_keys_round_trip_and_revoke_once(store: Store) -> None:
    assert store.list_agent_keys(agent().id) == []
    first = agent_key("a" * 43)
    second = agent_key("b" * 43, created_at=T0 + timedelta(seconds=1), source="given")
    store.add_agent_key(second)
    store.add_agent_key(first)
    assert store.list_agent_keys(agent().id) == [first, second]
    assert store.list_agent_keys("spiffe://example.org/agent/other") == []
    with pytest.raises(Conflict):
        store.add_agent_key(agent_key("a" * 43, jwk={"kty": "OKP"}))
    assert store.revoke_agent_key(agent().id, "a" * 43, T0 + timedelta(minutes=1)) is True
    assert store.revoke_agent_key(agent().id, "a" * 43, T0 + timedelta(minutes=2)) is False
    assert store.revoke_agent_key(agent().id, "z" * 43, T0) is False
    got = store.list_agent_keys(agent().id)
    assert got[0].revoked_at == T0 + timedelta(minutes=1)
    assert not got[0].active() and got[1].active()
    assert got[1] == second


# --------------------------------------------------------------------------- token ids


def test_a_jti_is_used_once_per_issuer(store: Store) -> None:
    exp = T0 + timedelta(minutes=5)
    assert store.use_jti("agent-a", "j1", exp) is True
    assert store.use_jti("agent-a", "j1", exp) is False
    assert store.use_jti("agent-b", "j1", exp) is True  # another issuer's ids are its own


def test_racing_uses_of_one_jti_let_exactly_one_through(store: Store) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def use() -> None:
        barrier.wait()
        results.append(store.use_jti("agent-a", "raced", T0 + timedelta(minutes=5)))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_revocation_list_and_pruning(store: Store) -> None:
    assert store.token_revoked("j1") is False
    assert store.revoke_token("j1", T0 + timedelta(minutes=5), T0) is True
    assert store.revoke_token("j1", T0 + timedelta(minutes=5), T0) is False
    assert store.revoke_token("j2", T0 + timedelta(hours=2), T0) is True
    assert store.token_revoked("j1") and store.token_revoked("j2")
    store.use_jti("a", "used-old", T0 + timedelta(minutes=1))
    store.use_jti("a", "used-new", T0 + timedelta(hours=3))
    # Ids of tokens that expired before the cut are forgotten; the rest stay.
    assert store.prune_token_ids(T0 + timedelta(hours=1)) == 2
    assert store.token_revoked("j1") is False and store.token_revoked("j2") is True
    assert store.use_jti("a", "used-old", T0 + timedelta(minutes=1)) is True
    assert store.use_jti("a", "used-new", T0 + timedelta(hours=3)) is False


# --------------------------------------------------------------------------- leases


def test_a_lease_round_trips_exactly(with_task: Store) -> None:
    store = with_task
    assert store.get_lease("l1") is None
    one = lease("l1", action_id="act-1", issued_at=T0.astimezone(IST))
    store.add_lease(one)
    got = store.get_lease("l1")
    assert got == one
    assert got is not None and got.issued_at.utcoffset() == timedelta(0)
    assert got.state is LeaseState.ACTIVE and got.live(T0) and not got.live(got.expires_at)
    with pytest.raises(Conflict):
        store.add_lease(lease("l1", backend="postgres"))
    assert store.get_lease("l1") == one


def test_a_lease_needs_its_task(with_task: Store) -> None:
    with pytest.raises(UnknownTask):
        with_task.add_lease(lease("l1", task_id="missing"))
    assert with_task.list_leases() == []


def test_leases_are_listed_by_task_state_and_expiry(with_task: Store) -> None:
    store = with_task
    a = lease("a", "t1")
    b = lease("b", "t2", issued_at=T0 + timedelta(seconds=1), expires_at=T0 + timedelta(hours=1))
    c = lease("c", "t1", issued_at=T0 + timedelta(seconds=2), state=LeaseState.REVOKED)
    for one in (c, a, b):
        store.add_lease(one)
    assert store.list_leases() == [a, b, c]
    assert store.list_leases(task_ids=["t1"]) == [a, c]
    assert store.list_leases(task_ids=["t1", "t2", "t1"]) == [a, b, c]
    assert store.list_leases(task_ids=[]) == []
    assert store.list_leases(state=LeaseState.ACTIVE) == [a, b]
    due = T0 + timedelta(minutes=5)
    assert store.list_leases(state=LeaseState.ACTIVE, expired_at=due) == [a]
    assert store.list_leases(expired_at=due - timedelta(microseconds=1)) == []
    assert store.list_leases(limit=2) == [a, b]
    for bad in (0, 10_001):
        with pytest.raises(InvalidInput):
            store.list_leases(limit=bad)


def test_replacing_a_lease_is_compare_and_set(with_task: Store) -> None:
    store = with_task
    store.add_lease(lease("l1"))
    renewed = lease("l1", expires_at=T0 + timedelta(minutes=10), renewals=1)
    assert store.replace_lease(renewed, LeaseState.ACTIVE) is True
    revoked = lease(
        "l1",
        state=LeaseState.REVOKED,
        ended_at=T0 + timedelta(minutes=1),
        end_reason="task_ended",
    )
    assert store.replace_lease(revoked, LeaseState.ACTIVE) is True
    # A second writer that still thinks it is active loses, and changes nothing.
    assert store.replace_lease(renewed, LeaseState.ACTIVE) is False
    assert store.get_lease("l1") == revoked
    assert store.list_leases(state=LeaseState.ACTIVE) == []
    # The task and issue time are fixed for a lease's life; so is existence.
    moved = lease("l1", task_id="t2", state=LeaseState.EXPIRED)
    assert store.replace_lease(moved, LeaseState.REVOKED) is False
    assert store.replace_lease(lease("nope"), LeaseState.ACTIVE) is False
    assert store.get_lease("l1") == revoked


def test_racing_revocations_win_once(with_task: Store) -> None:
    store = with_task
    store.add_lease(lease("l1"))
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def end(i: int) -> None:
        barrier.wait()
        done = lease("l1", state=LeaseState.REVOKED, end_reason=f"r{i}", ended_at=T0)
        results.append(store.replace_lease(done, LeaseState.ACTIVE))

    threads = [threading.Thread(target=end, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


# --------------------------------------------------------------------------- sealed secrets


def test_sealed_secrets_put_replace_list_delete(store: Store) -> None:
    one = SealedSecret("crm-api-key", "c2VhbGVk", "k1", T0.astimezone(IST), note="CRM ✓")
    two = SealedSecret("a-first", "b3RoZXI", "k1", T0)
    assert store.get_secret("crm-api-key") is None
    store.put_secret(one)
    store.put_secret(two)
    assert store.get_secret("crm-api-key") == one
    assert store.list_secrets() == [two, one]
    newer = SealedSecret("crm-api-key", "bmV3ZXI", "k2", T0 + timedelta(days=1))
    store.put_secret(newer)
    assert store.get_secret("crm-api-key") == newer
    assert store.delete_secret("crm-api-key") is True
    assert store.delete_secret("crm-api-key") is False
    assert store.list_secrets() == [two]


def test_token_state_reads_task_agent_and_revocation_at_once(with_task: Store) -> None:
    store = with_task
    state = store.token_state("t1", "j1")
    assert state is not None
    assert state.agent_id == agent().id and state.agent_status is AgentStatus.ACTIVE
    assert state.task_state is TaskState.ACTIVE and not state.revoked
    assert state.task_active(T0) and not state.task_active(T0 + timedelta(hours=1))
    store.revoke_token("j1", T0 + timedelta(hours=1), T0)
    store.set_agent_status(agent().id, AgentStatus.SUSPENDED)
    store.end_task("t1", T0 + timedelta(minutes=1))
    state = store.token_state("t1", "j1")
    assert state is not None and state.revoked
    assert state.agent_status is AgentStatus.SUSPENDED
    assert state.task_state is TaskState.ENDED and not state.task_active(T0)
    assert store.token_state("missing", "j1") is None
