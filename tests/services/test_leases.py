"""Leases: credentials minted for a task or one call, renewed within bounds, revoked at task end
or by the kill switch, expired by the sweeper, and every step in the audit log (never the
credential). Real token keys, real stores, real audit chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest

from tribune.bootstrap import Tribune, init_home, open_tribune
from tribune.core.model import AgentStatus, LeaseState, RecordKind, Task
from tribune.crypto.token_keys import InvalidToken
from tribune.errors import Conflict, Forbidden, InvalidInput, NotFound
from tribune.services.access import Caller
from tribune.system import FixedClock

from .conftest import CONFIG, START, World, _populate

CREDENTIALS = """
[credentials.crm-api]
backend = "token"
audience = "https://crm.acme.test"
tools = ["crm.read"]
ttl = 120
max_ttl = 600

[credentials.mailer-key]
backend = "secret"
secret = "mailer-key"
tools = ["email.send"]
ttl = 60
"""
SECRET = "sk_live_51Hh7cQ2eZvKYlo2C0123456789"


@pytest.fixture
def world(store_url: str, tmp_path: Path) -> Iterator[World]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "tribune.toml").write_text(CONFIG.format(url=store_url) + CREDENTIALS)
    init_home(home)
    clock = FixedClock(START)
    tr = open_tribune(home, clock=clock)
    _populate(tr)
    tr.secrets.put("mailer-key", SECRET)
    w = World(tr, clock, home)
    yield w
    w.tr.close()


def events(world: World, name: str) -> list[dict[str, Any]]:
    found = []
    for rec in world.tr.store.records():
        data = json.loads(rec.body)["data"]
        if rec.kind is RecordKind.EVENT and data.get("event") == name:
            found.append(data)
    return found


def downstream_claims(tr: Tribune, token: str) -> dict[str, Any]:
    """Verify as a downstream service would: the published JWKS, its own audience."""
    jwks = jwt.PyJWKSet.from_dict(tr.token_keys.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["EdDSA"],
        audience="https://crm.acme.test",
        options={"verify_exp": False},  # the world's clock is not the wall clock
    )
    return claims


# --------------------------------------------------------------------------- issue


def test_a_task_lease_mints_an_audience_bound_token(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    issued = tr.leases.issue(task.id, "crm-api")
    lease = issued.lease
    assert (lease.task_id, lease.agent_id, lease.backend) == (task.id, task.agent_id, "token")
    assert lease.state is LeaseState.ACTIVE and lease.handle == lease.id
    assert (lease.expires_at - START).total_seconds() == 120
    assert (lease.max_expires_at - START).total_seconds() == 600
    assert "credential" not in repr(issued)  # the credential never shows in a repr
    claims = downstream_claims(tr, issued.credential["token"])
    assert claims["sub"] == task.agent_id and claims["task"] == task.id
    assert claims["jti"] == claims["lease"] == lease.id
    assert claims["owner"] == "user:alice"
    assert claims["exp"] == int(lease.expires_at.timestamp())
    assert claims["authorization_details"][0]["tools"] == ["crm.read"]
    # Never usable as a task token at Tribune itself.
    with pytest.raises(InvalidToken) as err:
        tr.tokens.verify(issued.credential["token"])
    assert err.value.reason == "wrong_audience"
    issued_events = events(world, "lease_issued")
    assert [e["lease"] for e in issued_events] == [lease.id]
    assert issued_events[0]["source"] == "crm-api"
    body = "".join(r.body for r in tr.store.records())
    assert issued.credential["token"] not in body


def test_a_lease_never_outlives_its_task(world: World) -> None:
    task = world.task(tools=["crm.read"], ttl=30)
    lease = world.tr.leases.issue(task.id, "crm-api", ttl=3000).lease
    assert lease.expires_at == lease.max_expires_at == task.expires_at


def test_the_task_must_have_declared_a_tool_the_source_serves(world: World) -> None:
    task = world.task(tools=["web.fetch"])
    with pytest.raises(Forbidden) as err:
        world.tr.leases.issue(task.id, "crm-api")
    assert err.value.code == "lease_not_in_scope"
    grouped = world.task(tool_groups=["crm"])  # crm.read is in the crm group
    assert world.tr.leases.issue(grouped.id, "crm-api").lease.state is LeaseState.ACTIVE
    with pytest.raises(NotFound):
        world.tr.leases.issue(task.id, "no-such-source")
    assert world.tr.store.list_leases(task_ids=[task.id]) == []


def test_an_ended_task_or_another_agent_gets_nothing(world: World) -> None:
    task = world.task(tools=["crm.read"])
    with pytest.raises(NotFound):
        world.tr.leases.issue(task.id, "crm-api", agent_id="spiffe://acme.test/agent/ops")
    world.tr.tasks.end(task.id)
    with pytest.raises(Conflict):
        world.tr.leases.issue(task.id, "crm-api")
    with pytest.raises(InvalidInput):
        world.tr.leases.issue(world.task(tools=["crm.read"]).id, "crm-api", ttl=0)


# --------------------------------------------------------------------------- one call


def test_a_call_lease_needs_that_call_allowed_and_served(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read", "email.send"])
    allowed = tr.governor.decide(task.id, "crm.read", {"customer_id": "c-1"})
    assert allowed.allowed
    issued = tr.leases.issue(task.id, "crm-api", action_id=allowed.action_id)
    assert issued.lease.action_id == allowed.action_id
    call = downstream_claims(tr, issued.credential["token"])["authorization_details"][0]["call"]
    assert call == {
        "tool": "crm.read",
        "action": allowed.action_id,
        "action_digest": allowed.action_digest,
    }
    # The secret for the mailer is released only for an allowed email.send call.
    mail = tr.governor.decide(task.id, "email.send", {"to": ["alice@acme.com"], "body": "hi"})
    assert mail.allowed
    with pytest.raises(Forbidden) as err:
        tr.leases.issue(task.id, "crm-api", action_id=mail.action_id)
    assert err.value.code == "lease_not_in_scope"
    secret = tr.leases.issue(task.id, "mailer-key", verdict=mail)
    assert secret.credential == {"value": SECRET}
    assert SECRET not in "".join(r.body for r in tr.store.records())


def test_no_lease_for_a_denied_call(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    denied = tr.governor.decide(task.id, "email.send", {"to": ["x@evil.example"], "body": "hi"})
    assert not denied.allowed
    with pytest.raises(Forbidden) as err:
        tr.leases.issue(task.id, "mailer-key", verdict=denied)
    assert err.value.code == "lease_not_allowed"
    with pytest.raises(Conflict) as by_id:
        tr.leases.issue(task.id, "mailer-key", action_id=denied.action_id)
    assert by_id.value.code == "action_not_allowed"
    other = world.task(tools=["crm.read"])
    allowed = tr.governor.decide(other.id, "crm.read", {"customer_id": "c-1"})
    with pytest.raises(Forbidden):  # a call of another task
        tr.leases.issue(task.id, "crm-api", verdict=allowed)


# --------------------------------------------------------------------------- renew, revoke


def test_renewal_extends_within_the_maximum_and_hands_a_new_token(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    first = tr.leases.issue(task.id, "crm-api")
    world.clock.advance(100)
    renewed = tr.leases.renew(first.lease.id, 300)
    assert renewed.lease.renewals == 1
    assert (renewed.lease.expires_at - START).total_seconds() == 400
    assert renewed.credential["token"] != first.credential["token"]
    assert downstream_claims(tr, renewed.credential["token"])["jti"] == first.lease.id
    world.clock.advance(250)
    capped = tr.leases.renew(first.lease.id, 3600)
    assert capped.lease.expires_at == first.lease.max_expires_at
    assert [e["renewals"] for e in events(world, "lease_renewed")] == [1, 2]
    with pytest.raises(NotFound):  # another agent's lease is not found
        tr.leases.renew(first.lease.id, agent_id="spiffe://acme.test/agent/ops")


def test_revocation_kills_the_token_at_introspection(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    issued = tr.leases.issue(task.id, "crm-api")
    token = issued.credential["token"]
    seen = tr.introspection.introspect(token)
    assert seen["active"] is True and seen["lease"] == issued.lease.id
    assert seen["aud"] == "https://crm.acme.test" and seen["client_id"] == task.agent_id
    revoked = tr.leases.revoke(issued.lease.id)
    assert revoked.state is LeaseState.REVOKED and revoked.end_reason == "requested"
    assert tr.introspection.introspect(token) == {"active": False}
    assert tr.store.token_revoked(issued.lease.id)
    assert tr.leases.revoke(issued.lease.id) == revoked  # a second revoke changes nothing
    assert [e["reason"] for e in events(world, "lease_revoked")] == ["requested"]
    with pytest.raises(Conflict):
        tr.leases.renew(issued.lease.id)


def test_introspection_refuses_forged_and_foreign_tokens(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    token = tr.leases.issue(task.id, "crm-api").credential["token"]
    header, payload, sig = token.split(".")
    assert tr.introspection.introspect(f"{header}.{payload}.{sig[:-4]}AAAA") == {"active": False}
    claims = downstream_claims(tr, token)
    other_key = jwt.encode(claims, "not-our-key-" * 4, algorithm="HS256")
    assert tr.introspection.introspect(other_key) == {"active": False}
    assert tr.introspection.introspect("garbage") == {"active": False}
    # A task token introspects as active while its task is.
    task_token = tr.tokens.issue(task, tr.registry.resolve_agent(task.agent_id), "user:alice")
    assert tr.introspection.introspect(task_token)["task"] == task.id
    tr.tasks.end(task.id)
    assert tr.introspection.introspect(task_token) == {"active": False}


def test_rfc7009_revocation_by_token(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    issued = tr.leases.issue(task.id, "crm-api")
    ops = Caller("k", "agent:spiffe://acme.test/agent/ops", role_agent())
    tr.introspection.revoke(issued.credential["token"], caller=ops)  # not ops' token
    assert tr.leases.get(issued.lease.id).state is LeaseState.ACTIVE
    helper = Caller("k", f"agent:{task.agent_id}", role_agent())
    tr.introspection.revoke(issued.credential["token"], caller=helper)
    assert tr.leases.get(issued.lease.id).end_reason == "token_revoked"
    tr.introspection.revoke("not-a-token", caller=helper)  # ignored, as RFC 7009 asks
    task_token = tr.tokens.issue(task, tr.registry.resolve_agent(task.agent_id), "user:alice")
    spare = tr.tokens.issue(task, tr.registry.resolve_agent(task.agent_id), "user:alice")
    tr.introspection.revoke(task_token, caller=helper)
    with pytest.raises(InvalidToken) as err:
        tr.tokens.verify(task_token)
    assert err.value.reason == "revoked"
    assert tr.tokens.verify(spare).task_id == task.id  # the task and its other tokens go on
    assert [e["jti"] for e in events(world, "token_revoked")] == [parts_jti(task_token)]


def parts_jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_a_suspended_agents_downstream_tokens_are_inactive(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    token = tr.leases.issue(task.id, "crm-api").credential["token"]
    tr.registry.set_status("helper", AgentStatus.SUSPENDED)
    assert tr.introspection.introspect(token) == {"active": False}
    tr.registry.set_status("helper", AgentStatus.ACTIVE)
    assert tr.introspection.introspect(token)["active"] is True


def role_agent() -> Any:
    from tribune.core.model import Role

    return Role.AGENT


# --------------------------------------------------------------------------- task end, sweeper


def test_ending_the_task_revokes_every_lease(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    leases = [tr.leases.issue(task.id, "crm-api").lease for _ in range(3)]
    other = tr.leases.issue(world.task(tools=["crm.read"]).id, "crm-api").lease
    tr.tasks.end(task.id)
    for lease in leases:
        got = tr.leases.get(lease.id)
        assert (got.state, got.end_reason) == (LeaseState.REVOKED, "task_ended")
    assert tr.leases.get(other.id).state is LeaseState.ACTIVE
    assert len(events(world, "lease_revoked")) == 3


def test_the_sweeper_expires_leases_and_catches_stragglers(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    short = tr.leases.issue(task.id, "crm-api", ttl=10).lease
    long = tr.leases.issue(task.id, "crm-api", ttl=500).lease
    assert tr.leases.sweep() == 0
    world.clock.advance(10)
    assert tr.leases.sweep() == 1
    got = tr.leases.get(short.id)
    assert (got.state, got.end_reason) == (LeaseState.EXPIRED, "expired")
    assert [e["lease"] for e in events(world, "lease_expired")] == [short.id]
    # A task that ran out of time (no explicit end) loses its leases at the next sweep.
    tr.store.add_task(
        replace(
            task,
            id="straggler",
            expires_at=world.clock.now(),
            created_at=world.clock.now(),
            root_id="straggler",
        )
    )
    assert tr.leases.get(long.id).state is LeaseState.ACTIVE
    tr.store.end_task(task.id, world.clock.now())  # ended behind the service's back
    assert tr.leases.sweep() == 1
    assert tr.leases.get(long.id).end_reason == "task_ended"


# --------------------------------------------------------------------------- kill switch


def _child(world: World, parent: Task, child_id: str) -> Task:
    child = replace(parent, id=child_id, parent_id=parent.id, depth=parent.depth + 1)
    world.tr.store.add_task(child)
    return child


def test_kill_switch_by_task_takes_the_delegation_tree(world: World) -> None:
    tr = world.tr
    root = world.task(tools=["crm.read"])
    child = _child(world, root, "child-1")
    grandchild = _child(world, child, "child-2")
    bystander = world.task(tools=["crm.read"])
    leases = [tr.leases.issue(t.id, "crm-api").lease for t in (root, child, grandchild)]
    spared = tr.leases.issue(bystander.id, "crm-api").lease
    token = tr.tokens.issue(root, tr.registry.resolve_agent(root.agent_id), "user:alice")
    done = tr.killswitch.revoke(task=root.id, actor="user:alice")
    assert (done.tasks_ended, done.leases_revoked, done.leases_failed) == (3, 3, 0)
    for lease in leases:
        assert tr.leases.get(lease.id).end_reason == "kill_switch"
    assert tr.leases.get(spared.id).state is LeaseState.ACTIVE
    with pytest.raises(InvalidToken) as err:
        tr.tokens.verify(token)
    assert err.value.reason == "task_inactive"
    (event,) = events(world, "kill_switch")
    assert event["task"] == root.id and event["actor"] == "user:alice"
    assert event["tasks_ended"] == 3


def test_kill_switch_by_agent_owner_and_all(world: World) -> None:
    tr = world.tr
    helper = [world.task(tools=["crm.read"]) for _ in range(2)]
    ops = world.task("ops", tool_groups=["tickets"], environment="production")
    lease = tr.leases.issue(helper[0].id, "crm-api").lease
    tr.tasks.end(helper[1].id)
    done = tr.killswitch.revoke(agent="helper", suspend=True)
    assert (done.tasks_ended, done.leases_revoked, done.agents_suspended) == (1, 1, 1)
    assert tr.leases.get(lease.id).end_reason == "kill_switch"
    assert tr.registry.resolve_agent("helper").status is AgentStatus.SUSPENDED
    assert tr.tasks.get(ops.id).is_active(world.clock.now())
    assert tr.killswitch.revoke(owner="user:alice").tasks_ended == 0
    assert tr.killswitch.revoke(owner="group:support").tasks_ended == 1
    tr.registry.set_status("helper", AgentStatus.ACTIVE)
    world.task(tools=["crm.read"])
    world.task("ops", tool_groups=["tickets"], environment="production")
    assert tr.killswitch.revoke(everything=True).tasks_ended == 2
    assert tr.store.list_tasks(active_at=world.clock.now()) == []
    bad_choices: list[dict[str, Any]] = [
        {},
        {"task": "x", "agent": "helper"},
        {"everything": True, "owner": "user:a"},
        {"task": "x", "suspend": True},
    ]
    for bad in bad_choices:
        with pytest.raises(InvalidInput):
            tr.killswitch.revoke(**bad)


def test_a_lease_issued_as_its_task_ends_is_taken_back(world: World) -> None:
    tr = world.tr
    task = world.task(tools=["crm.read"])
    backend = tr.leases.backends["token"]
    real_issue = backend.issue

    def issue_then_end(lease: Any) -> dict[str, Any]:
        credential = real_issue(lease)
        tr.store.end_task(task.id, world.clock.now())  # the kill switch lands mid-issue
        return credential

    backend.issue = issue_then_end  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        tr.leases.issue(task.id, "crm-api")
    (lease,) = tr.store.list_leases(task_ids=[task.id])
    assert (lease.state, lease.end_reason) == (LeaseState.REVOKED, "task_ended")
    assert tr.store.token_revoked(lease.id)


def test_a_source_for_tribunes_own_audience_is_refused(world: World, tmp_path: Path) -> None:
    from tribune.credentials.tokens import TokenBackend

    backend = TokenBackend(
        world.tr.store, world.clock, world.tr.token_keys, issuer=world.tr.tokens.issuer
    )
    with pytest.raises(InvalidInput):
        backend.check_scope({"audience": world.tr.tokens.issuer})
    with pytest.raises(InvalidInput):
        backend.check_scope({})


def test_a_process_on_the_real_clock_sweeps_by_itself(world: World) -> None:
    tr = open_tribune(world.home)  # the system clock: the sweeper starts with the first lease
    try:
        assert tr.leases.auto_sweep and tr.leases._sweeper is None
        task = tr.start_task("helper", purpose="p", tools=["crm.read"])
        tr.leases.issue(task.id, "crm-api")
        assert tr.leases._sweeper is not None and tr.leases._sweeper.is_alive()
    finally:
        tr.close()
    assert tr.leases._sweeper is None  # close stops it
    assert not world.tr.leases.auto_sweep  # the hand-moved clock of the tests does not
