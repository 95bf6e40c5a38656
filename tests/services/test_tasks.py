"""Tasks: scope within entitlements, validation, literals as digests, targets, end and list.

Agents of the world (see conftest): ``helper`` may use every tool, the groups ``crm`` and
``email``, environments development and production, amounts up to 100000 and open scope;
``ops`` only the groups ``database`` and ``tickets`` in production, with no limits.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from tribune.core.model import AgentStatus, Limits, TaskState
from tribune.errors import TribuneError
from tribune.services.tasks import ScopeRequest

from .conftest import START, World


def started_events(world: World) -> list[dict[str, Any]]:
    return [r for r in world.records() if r["data"].get("event") == "task_started"]


def dump_store(world: World) -> str:
    """Every row of every table of the store, as text."""
    engine = world.tr.store.engine  # type: ignore[attr-defined]
    meta = MetaData()
    meta.reflect(bind=engine)
    with engine.connect() as conn:
        return "\n".join(
            repr(tuple(row))  # not repr(row): SQLAlchemy shortens long values there
            for table in meta.sorted_tables
            for row in conn.execute(select(table))
        )


# --------------------------------------------------------------------------- entitlements


# (agent, scope, what the message names): none of these may ever be granted
BEYOND = [
    ("ops", {"tools": ["crm.read"]}, "tool `crm.read`"),
    ("helper", {"tool_groups": ["payments"]}, "tool group `payments`"),
    ("helper", {"tools": ["crm.read"], "environment": "staging"}, "environment `staging`"),
    ("ops", {"tool_groups": ["database"], "environment": "development"}, "`development`"),
    ("helper", {"tools": ["crm.read"], "limits": Limits(max_amount=100_001)}, "limits"),
    ("ops", {"open_scope": True}, "open-scope"),
]


def test_scope_outside_entitlements_is_refused(world: World) -> None:
    for agent, scope, names in BEYOND:
        with pytest.raises(TribuneError) as info:
            world.tr.start_task(agent, purpose="try for more", **scope)
        assert info.value.code == "scope_exceeds_entitlements", scope
        assert names in info.value.message
    assert world.tr.tasks.list() == []
    assert started_events(world) == []


def test_scope_within_entitlements_is_granted(world: World) -> None:
    task = world.tr.start_task(
        "helper",
        purpose="  pay and write  ",
        tools=["payments.pay"],
        tool_groups=["crm", "email"],
        environment="production",
        limits=Limits(max_amount=100_000, max_calls=3),
        ttl=600,
    )
    assert task.state is TaskState.ACTIVE and task.root_id == task.id and task.depth == 0
    assert task.scope.purpose == "pay and write"
    assert task.scope.tools == {"payments.pay"} and task.scope.tool_groups == {"crm", "email"}
    assert task.scope.environment == "production"
    assert task.scope.limits == Limits(max_amount=100_000, max_calls=3)
    assert task.created_at == START and task.expires_at == START + timedelta(seconds=600)
    assert world.tr.tasks.get(task.id) == task
    ops = world.tr.start_task("ops", purpose="tidy", tool_groups=["tickets"])
    assert ops.scope.environment == "production"  # the agent's own environment by default


def test_unset_limits_inherit_the_entitlements(world: World) -> None:
    task = world.task(limits=Limits(max_calls=5))
    assert task.scope.limits == Limits(max_amount=100_000, max_count=None, max_calls=5)
    assert world.task().scope.limits == Limits(max_amount=100_000)
    # an agent without limits gets none, and may set any
    ops = world.tr.start_task("ops", purpose="x", tool_groups=["tickets"], limits=Limits(7, 8, 9))
    assert ops.scope.limits == Limits(7, 8, 9)


def test_open_scope_needs_the_entitlement(world: World) -> None:
    task = world.task(open_scope=True)
    assert task.scope.open_scope and not task.scope.tools


# --------------------------------------------------------------------------- invalid input


MALFORMED = [
    {"purpose": "", "tools": ["crm.read"]},
    {"purpose": "   \n", "tools": ["crm.read"]},
    {"purpose": "nothing declared"},
    {"purpose": "x", "tools": []},
    {"purpose": "x", "tools": ["crm.read"], "ttl": 0},
    {"purpose": "x", "tools": ["crm.read"], "ttl": -5},
    {"purpose": "x", "tools": ["crm.read"], "ttl": 86_401},
    {"purpose": "x", "tools": ["../etc/passwd"]},
    {"purpose": "x", "tool_groups": ["a group"]},
    {"purpose": "x", "tools": ["crm.read"], "environment": "dev/../prod"},
    {"purpose": "x", "tools": ["crm.read"], "literals": {"bad name": "v"}},
    {"purpose": "x", "tools": ["crm.read"], "targets": ["http://"]},
    {"purpose": "x", "tools": ["crm.read"], "targets": ["not a target!!"]},
    {"purpose": "x", "tools": ["crm.read"], "targets": ["email:nobody"]},
    # a lone string would be read letter by letter
    {"purpose": "x", "tools": "crm.read"},
    {"purpose": "x", "tool_groups": "crm"},
    {"purpose": "x", "tools": ["crm.read"], "targets": "bob@acme.com"},
    {"purpose": "x", "tools": ["crm.read"], "literals": {"pin": 1234}},
]


def test_malformed_scope_is_invalid_input_and_stores_nothing(world: World) -> None:
    before = world.tr.store.count()
    for scope in MALFORMED:
        with pytest.raises(TribuneError) as info:
            world.tr.start_task("helper", **scope)
        assert info.value.code == "invalid_input", scope
    assert world.tr.store.count() == before
    assert world.tr.tasks.list() == []


def test_ttl_bounds(world: World) -> None:
    longest = world.task(ttl=86_400)
    assert longest.expires_at == START + timedelta(days=1)
    assert world.task(ttl=1).expires_at == START + timedelta(seconds=1)
    assert world.task().expires_at == START + timedelta(seconds=3600)  # the default


@pytest.mark.parametrize("status", [AgentStatus.SUSPENDED, AgentStatus.RETIRED])
def test_inactive_agent_cannot_start_a_task(world: World, status: AgentStatus) -> None:
    world.tr.registry.set_status("helper", status)
    with pytest.raises(TribuneError) as info:
        world.task()
    assert info.value.code == "agent_inactive"
    assert status.value in info.value.message
    world.tr.registry.set_status("helper", AgentStatus.ACTIVE)
    assert world.task().state is TaskState.ACTIVE


def test_unknown_agent_cannot_start_a_task(world: World) -> None:
    with pytest.raises(TribuneError) as info:
        world.task("nobody")
    assert info.value.code == "unknown_agent"
    with pytest.raises(TribuneError) as info:
        world.task("spiffe://other.test/agent/helper")
    assert info.value.code == "unknown_agent"


# --------------------------------------------------------------------------- literals, targets


def test_literals_are_kept_only_as_digests(world: World) -> None:
    secret = "correct horse battery staple"
    task = world.task(literals={"new_password": secret})
    key = (world.home / "keys" / "digest.secret").read_bytes()
    expected = hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()
    assert task.scope.literal_digests == {"new_password": expected}
    assert expected != hashlib.sha256(secret.encode()).hexdigest()  # keyed, not guessable
    stored = world.tr.tasks.get(task.id)
    assert stored.scope.literal_digests == {"new_password": expected}
    assert started_events(world)[-1]["data"]["literals"] == ["new_password"]
    dump = dump_store(world)
    assert expected in dump  # the dump does see the task
    assert secret not in dump


def test_targets_are_normalised(world: World) -> None:
    task = world.task(
        targets=[
            "Bob@ACME.com",
            "  https://Docs.Example.com/a?b=1 ",
            "DE89 3704 0044 0532 0130 00",
            "mailto:Carol@Client.Example",
            "object:CUST-1",
        ]
    )
    expected = {
        "bob@acme.com",
        "docs.example.com",
        "DE89370400440532013000",
        "carol@client.example",
        "object:CUST-1",
    }
    assert task.scope.targets == expected
    assert world.tr.tasks.get(task.id).scope.targets == expected
    assert started_events(world)[-1]["data"]["targets"] == sorted(expected)


def test_the_same_target_twice_is_one_target(world: World) -> None:
    task = world.task(targets=["bob@acme.com", "BOB@acme.com", "email:bob@ACME.com"])
    assert task.scope.targets == {"bob@acme.com"}


# --------------------------------------------------------------------------- end, list, audit


def test_task_started_event_describes_the_scope(world: World) -> None:
    task = world.task(tools=["crm.read"], targets=["bob@acme.com"], ttl=60)
    event = started_events(world)[-1]
    assert event["task_id"] == task.id and event["agent_id"] == task.agent_id
    assert event["data"] == {
        "event": "task_started",
        "purpose": "help a customer",
        "tools": ["crm.read"],
        "tool_groups": [],
        "targets": ["bob@acme.com"],
        "literals": [],
        "environment": "development",
        "open_scope": False,
        "expires_at": (START + timedelta(seconds=60)).isoformat(),
    }


def test_end_is_idempotent_and_audited_once(world: World) -> None:
    task = world.task()
    world.clock.advance(5)
    ended = world.tr.tasks.end(task.id)
    assert ended.state is TaskState.ENDED
    assert ended.ended_at == START + timedelta(seconds=5)
    world.clock.advance(5)
    again = world.tr.tasks.end(task.id)
    assert again == ended  # the first end stands
    events = [r for r in world.records() if r["data"].get("event") == "task_ended"]
    assert len(events) == 1
    assert events[0]["task_id"] == task.id and events[0]["agent_id"] == task.agent_id


def test_ending_an_unknown_task_is_refused(world: World) -> None:
    before = world.tr.store.count()
    with pytest.raises(TribuneError) as info:
        world.tr.tasks.end("no-such-task")
    assert info.value.code == "unknown_task"
    assert world.tr.store.count() == before


def test_ending_an_expired_task_still_ends_it(world: World) -> None:
    task = world.task(ttl=10)
    world.clock.advance(11)
    assert world.tr.tasks.end(task.id).state is TaskState.ENDED


def test_list_by_agent_and_active_only(world: World) -> None:
    first = world.task()
    world.clock.advance(1)
    short = world.task(ttl=30)
    world.clock.advance(1)
    ended = world.task()
    world.tr.tasks.end(ended.id)
    world.clock.advance(1)
    ops = world.tr.start_task("ops", purpose="tidy", tool_groups=["tickets"])

    def ids(**kw: Any) -> list[str]:
        return [t.id for t in world.tr.tasks.list(**kw)]

    assert ids() == [ops.id, ended.id, short.id, first.id]  # newest first
    assert ids(agent_ref="helper") == [ended.id, short.id, first.id]
    assert ids(agent_ref=ops.agent_id) == [ops.id]  # by id as well as by name
    assert ids(active_only=True) == [ops.id, short.id, first.id]
    world.clock.advance(30)
    assert ids(agent_ref="helper", active_only=True) == [first.id]
    with pytest.raises(TribuneError) as info:
        world.tr.tasks.list(agent_ref="nobody")
    assert info.value.code == "unknown_agent"


def test_get_unknown_task(world: World) -> None:
    with pytest.raises(TribuneError) as info:
        world.tr.tasks.get("nope")
    assert info.value.code == "unknown_task"


def test_scope_request_through_the_service(world: World) -> None:
    """The service API directly (the SDK and CLI build a ``ScopeRequest``)."""
    request = ScopeRequest(purpose="direct", tools=("crm.read",), targets=("Bob@ACME.com",))
    task = world.tr.tasks.start("helper", request, ttl=120)
    assert task.scope.targets == {"bob@acme.com"}
    assert task.expires_at == START + timedelta(seconds=120)
