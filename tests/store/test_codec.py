"""The store codec round-trips every model dataclass exactly and refuses what does not fit."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core import model
from tribune.core.model import (
    Agent,
    AgentKey,
    AgentStatus,
    ApiKey,
    ApprovalRequirement,
    ApprovalTicket,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    Decision,
    DecisionError,
    Directory,
    Effect,
    Entitlements,
    ExtractorSpec,
    Group,
    Lease,
    LeaseState,
    Limits,
    OwnerRef,
    PolicyVersion,
    RecordKind,
    RiskFacts,
    Role,
    Scope,
    SealedSecret,
    SessionState,
    Task,
    TaskState,
    TicketState,
    TokenState,
    Tool,
    User,
    Verdict,
    Vote,
)
from tribune.errors import InvalidInput
from tribune.store import codec

T0 = datetime(2026, 3, 1, 9, 30, 15, 999999, tzinfo=UTC)

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
times = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=zones
)
names = st.text(min_size=0, max_size=12)
name_sets = st.frozensets(names, max_size=5)
maybe_int = st.none() | st.integers(min_value=0, max_value=2**62)
limits = st.builds(Limits, maybe_int, maybe_int, maybe_int)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=10,
)
scopes = st.builds(
    Scope,
    names,
    name_sets,
    name_sets,
    name_sets,
    st.dictionaries(names, names, max_size=3),
    st.none() | names,
    limits,
    st.booleans(),
)
sessions = st.builds(SessionState, st.booleans(), name_sets, st.integers(0, 10**6))
tasks = st.builds(
    Task,
    names,
    names,
    scopes,
    st.sampled_from(TaskState),
    times,
    times,
    st.none() | times,
    st.none() | names,
    names,
    st.integers(0, 9),
    sessions,
)
agents = st.builds(
    Agent,
    names,
    names,
    st.builds(OwnerRef, st.sampled_from(["user", "group"]), names),
    names,
    names,
    st.builds(Entitlements, name_sets, name_sets, name_sets, limits, st.booleans()),
    st.sampled_from(AgentStatus),
    times,
)
extractors = st.builds(
    ExtractorSpec, names, names, names, st.booleans(), names, st.booleans(), names
)
tools = st.builds(
    Tool,
    names,
    names,
    st.dictionaries(names, json_values, max_size=3),
    st.builds(RiskFacts, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    st.lists(names, max_size=3).map(tuple),
    st.lists(extractors, max_size=3).map(tuple),
    st.lists(names, max_size=2).map(tuple),
    st.lists(names, max_size=2).map(tuple),
)
policies = st.builds(
    PolicyVersion,
    names,
    times,
    st.dictionaries(names, names, max_size=4),
    names,
    st.booleans(),
    names,
)


def round_trip(value: Any) -> Any:
    text = codec.dumps(value)
    back = codec.loads(type(value), text)
    assert codec.dumps(back) == text  # the text is stable too
    return back


@settings(max_examples=60, deadline=None)
@given(st.one_of(tasks, agents, tools, policies))
def test_generated_values_round_trip(value: Any) -> None:
    back = round_trip(value)
    assert back == value
    for f in dataclasses.fields(back):
        got = getattr(back, f.name)
        assert type(got) is type(getattr(value, f.name))
        if isinstance(got, datetime):
            assert got.utcoffset() == timedelta(0)


EXAMPLES: list[Any] = [
    User("alice", "Alice Ä", "alice@example.com", ("sre", "ops")),
    Group("sre", "site reliability"),
    OwnerRef("user", "alice"),
    Limits(1, None, 3),
    Entitlements(frozenset({"b", "a"}), open_scope=True),
    RiskFacts(read_only=True),
    ExtractorSpec("amount", "/items/*/amount", aggregate="sum"),
    SessionState(True, frozenset({"pii"}), 4),
    Directory(frozenset({"example.com"}), counterparties=frozenset({"x@y.z"})),
    ApprovalRequirement(2, ("sre-leads",), True),
    DecisionError("policy_error", "bad `x`"),
    Decision(
        Effect.APPROVAL_REQUIRED,
        "pay",
        ("p1",),
        "v1",
        (DecisionError("c", "m"),),
        ApprovalRequirement(2, ()),
    ),
    Decision(Effect.ALLOW, "read"),
    AuditRecord(1, RecordKind.INTENT, T0, "a", None, "ag", "{}", "0" * 64, "f" * 64),
    AuditEntry(RecordKind.DECISION, T0, {"effect": "allow", "n": [1, 2]}, "a", "t", "ag"),
    Checkpoint(10, "ab" * 32, T0, "key", "c2ln"),
    ApiKey("abcdefghijklmnop", "user:alice", Role.AUDITOR, "ab" * 32, T0, T0, None, "ci"),
    AgentKey("spiffe://x/agent/a", "k" * 43, {"kty": "OKP", "x": "AA"}, T0, T0, "given"),
    Lease(
        "l1",
        "t1",
        "spiffe://x/agent/a",
        "postgres",
        {"grants": ["SELECT"]},
        T0,
        T0,
        T0,
        LeaseState.REVOKED,
        "a1",
        "tribune_l1",
        2,
        T0,
        "kill_switch",
    ),
    SealedSecret("crm", "c2VhbGVk", "k1", T0, "note"),
    Vote("bob", True, T0, "ok", "cli", "key1"),
    ApprovalTicket(
        "tk",
        "a1",
        "sha256:aa",
        "t1",
        "spiffe://x/agent/a",
        "user:alice",
        "db.drop",
        ApprovalRequirement(2, ("sre",), True),
        ("why",),
        T0,
        T0,
        {"arguments": {"x": 1}},
        TicketState.CONSUMED,
        T0,
        "a2",
        (Vote("bob", False, T0),),
    ),
    TokenState("spiffe://x/agent/a", TaskState.ENDED, T0, AgentStatus.SUSPENDED, True),
    Verdict(
        "a1", "d" * 64, Decision(Effect.ALLOW, "read"), "t1", None, "read", ("x@y.z",), 1, True
    ),
]


@pytest.mark.parametrize("value", EXAMPLES, ids=lambda v: type(v).__name__)
def test_every_model_dataclass_round_trips(value: Any) -> None:
    assert round_trip(value) == value


def test_examples_cover_every_model_dataclass() -> None:
    covered = {type(v) for v in EXAMPLES} | {Agent, Task, Tool, Scope, PolicyVersion}
    every = {
        obj
        for obj in vars(model).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj)
    }
    assert every <= covered


def test_sets_are_written_sorted() -> None:
    one = Entitlements(tools=frozenset(["z", "a", "m"]))
    assert json.loads(codec.dumps(one))["tools"] == ["a", "m", "z"]


def test_times_are_utc_with_microseconds() -> None:
    ist = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
    data = json.loads(codec.dumps(Checkpoint(1, "h", ist, "k", "s")))
    assert data["ts"] == "2026-03-01T09:30:15.999999Z"
    assert codec.from_micros(codec.to_micros(ist)) == T0
    before_epoch = datetime(1960, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert codec.from_micros(codec.to_micros(before_epoch)) == before_epoch


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidInput):
        codec.dumps(Checkpoint(1, "h", datetime(2026, 1, 1), "k", "s"))
    with pytest.raises(InvalidInput):
        codec.to_micros(datetime(2026, 1, 1))
    with pytest.raises(InvalidInput):
        codec.loads(
            Checkpoint,
            '{"seq":1,"hash":"h","ts":"2026-01-01T00:00:00","key_id":"k","signature":"s"}',
        )


def test_missing_field_with_a_default_takes_it() -> None:
    assert codec.loads(RiskFacts, '{"read_only": true}') == RiskFacts(read_only=True)


@pytest.mark.parametrize(
    ("tp", "text"),
    [
        (Group, '{"description": "no name"}'),
        (Group, '{"name": 7}'),
        (Group, '["sre"]'),
        (Limits, '{"max_amount": true}'),
        (Limits, '{"max_amount": "12"}'),
        (Limits, '{"max_amount": -1}'),
        (SessionState, '{"data_read": "pii"}'),
        (Agent, '{"status": "bogus"}'),
        (Decision, '{"effect": "maybe", "tool": "x"}'),
        (Checkpoint, '{"seq":1,"hash":"h","ts":"yesterday","key_id":"k","signature":"s"}'),
        (User, "not json"),
    ],
)
def test_values_that_do_not_fit_are_refused(tp: type, text: str) -> None:
    with pytest.raises(InvalidInput):
        codec.loads(tp, text)


def test_unencodable_values_are_refused() -> None:
    with pytest.raises(InvalidInput):
        codec.dumps(Tool("x", input_schema={"n": float("nan")}))
    with pytest.raises(InvalidInput):
        codec.dumps(Tool("x", input_schema={1: "int key"}))
    with pytest.raises(InvalidInput):
        codec.dumps(Tool("x", input_schema={"o": object()}))
