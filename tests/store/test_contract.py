"""The store contract, run against every backend: memory, SQLite and PostgreSQL.

``store`` is a fresh open store on each backend; ``store_url`` a fresh durable one (SQLite,
PostgreSQL) for the tests that reopen, kill a writer or race processes.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from tribune.core.model import (
    AgentStatus,
    ExtractorSpec,
    Group,
    PolicyVersion,
    RecordKind,
    RiskFacts,
    SessionState,
    TaskState,
    Tool,
    User,
)
from tribune.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    StoreError,
    UnknownAgent,
    UnknownTask,
)
from tribune.ports import Store
from tribune.store import open_store
from tribune.store.factory import store_url as parse_store_url
from tribune.store.migrations import LATEST

from .contract_helpers import IST, T0, agent, policy, task

# --------------------------------------------------------------------------- registry


def test_a_closed_store_refuses_work(store: Store) -> None:
    store.put_group(Group("sre"))
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.append(RecordKind.EVENT, T0, {})
    with pytest.raises(StoreError, match="closed"):
        store.get_group("sre")
    with pytest.raises(StoreError, match="closed"):
        list(store.records())
    store.close()  # closing twice is harmless


def test_users_upsert_and_list_in_name_order(store: Store) -> None:
    assert store.get_user("alice") is None
    for name in ["bob", "Zed", "alice", "émile", "Alice"]:
        store.put_user(User(name, display_name=name.title(), groups=("sre", "ops")))
    store.put_user(User("bob", "Robert", "bob@example.com", ("finance",)))
    assert store.get_user("bob") == User("bob", "Robert", "bob@example.com", ("finance",))
    assert [u.name for u in store.list_users()] == ["Alice", "Zed", "alice", "bob", "émile"]


def test_groups_upsert_and_list(store: Store) -> None:
    assert store.get_group("sre") is None
    store.put_group(Group("sre", "site reliability"))
    store.put_group(Group("finance"))
    store.put_group(Group("sre", "on call"))
    assert store.get_group("sre") == Group("sre", "on call")
    assert store.list_groups() == [Group("finance"), Group("sre", "on call")]


def test_agent_round_trips_exactly(store: Store) -> None:
    a = agent()
    store.add_agent(a)
    got = store.get_agent(a.id)
    assert got == a
    assert got is not None and got.created_at.utcoffset() == timedelta(0)
    assert store.get_agent("spiffe://example.org/agent/nobody") is None


def test_duplicate_agent_conflicts_and_keeps_the_first(store: Store) -> None:
    store.add_agent(agent())
    with pytest.raises(Conflict):
        store.add_agent(agent(purpose="impostor"))
    got = store.get_agent(agent().id)
    assert got is not None and got.purpose == agent().purpose


def test_agent_status_and_list_order(store: Store) -> None:
    for name in ["zeta", "alpha", "mid"]:
        store.add_agent(agent(name))
    store.set_agent_status(agent("mid").id, AgentStatus.SUSPENDED)
    got = store.get_agent(agent("mid").id)
    assert got is not None and got.status is AgentStatus.SUSPENDED
    assert [a.name for a in store.list_agents()] == ["alpha", "mid", "zeta"]
    with pytest.raises(UnknownAgent):
        store.set_agent_status("spiffe://example.org/agent/ghost", AgentStatus.RETIRED)


def test_tools_upsert_round_trip(store: Store) -> None:
    tool = Tool(
        "pay",
        "pays an invoice",
        {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0.5}}},
        RiskFacts(read_only=False, destructive=False, untrusted_output=True),
        ("payments", "finance"),
        (
            ExtractorSpec("iban", "/to", role="payee", target=True, required=True),
            ExtractorSpec("amount", "/items/*/amount", aggregate="sum"),
        ),
        sensitive_args=("/card",),
        data_classes=("confidential",),
    )
    assert store.get_tool("pay") is None
    store.put_tool(tool)
    assert store.get_tool("pay") == tool
    store.put_tool(Tool("pay", "v2"))
    store.put_tool(Tool("audit.read"))
    assert store.get_tool("pay") == Tool("pay", "v2")
    assert [t.name for t in store.list_tools()] == ["audit.read", "pay"]


def test_returned_values_do_not_alias_the_store(store: Store) -> None:
    store.put_tool(Tool("pay", input_schema={"type": "object"}))
    got = store.get_tool("pay")
    assert got is not None
    got.input_schema["type"] = "tampered"
    again = store.get_tool("pay")
    assert again is not None and again.input_schema == {"type": "object"}


# --------------------------------------------------------------------------- tasks


def test_task_round_trips_exactly(store: Store) -> None:
    store.add_agent(agent())
    t = task("t1", agent().id, T0, parent_id="t0", root_id="t0", depth=1)
    store.add_task(t)
    assert store.get_task("t1") == t
    assert store.get_task("missing") is None


def test_task_needs_a_known_agent_and_a_new_id(store: Store) -> None:
    with pytest.raises(UnknownAgent):
        store.add_task(task("t1", "spiffe://example.org/agent/ghost", T0))
    store.add_agent(agent())
    store.add_task(task("t1", agent().id, T0))
    with pytest.raises(Conflict):
        store.add_task(task("t1", agent().id, T0 + timedelta(days=1)))
    got = store.get_task("t1")
    assert got is not None and got.created_at == T0


def test_list_tasks_newest_first_with_filters(store: Store) -> None:
    a, b = agent("a"), agent("b")
    store.add_agent(a)
    store.add_agent(b)
    store.add_task(task("t-old", a.id, T0))
    store.add_task(task("t-new", a.id, T0 + timedelta(minutes=30)))
    store.add_task(task("t-b", b.id, T0 + timedelta(minutes=10)))
    store.add_task(task("t-tie", b.id, T0 + timedelta(minutes=10)))
    assert [t.id for t in store.list_tasks()] == ["t-new", "t-tie", "t-b", "t-old"]
    assert [t.id for t in store.list_tasks(agent_id=a.id)] == ["t-new", "t-old"]
    # t-old expires at T0+1h; t-b has ended
    assert store.end_task("t-b", T0 + timedelta(minutes=20))
    at = T0 + timedelta(minutes=65)
    assert [t.id for t in store.list_tasks(active_at=at)] == ["t-new", "t-tie"]
    assert [t.id for t in store.list_tasks(agent_id=a.id, active_at=at)] == ["t-new"]
    assert store.list_tasks(agent_id="nobody") == []


def test_end_task_once(store: Store) -> None:
    store.add_agent(agent())
    store.add_task(task("t1", agent().id, T0))
    ended = T0 + timedelta(minutes=5)
    assert store.end_task("t1", ended.astimezone(IST)) is True
    assert store.end_task("t1", ended + timedelta(minutes=1)) is False
    assert store.end_task("missing", ended) is False
    got = store.get_task("t1")
    assert got is not None
    assert (got.state, got.ended_at) == (TaskState.ENDED, ended)
    assert not got.is_active(ended)


def test_update_session_persists(store: Store) -> None:
    store.add_agent(agent())
    store.add_task(task("t1", agent().id, T0))
    session = SessionState(tainted=True, data_read=frozenset({"pii", "financial"}), calls=9)
    store.update_session("t1", session)
    got = store.get_task("t1")
    assert got is not None and got.session == session
    with pytest.raises(UnknownTask):
        store.update_session("missing", session)


def test_merge_session_folds_effects_and_never_loses_one(store: Store) -> None:
    store.add_agent(agent())
    store.add_task(task("t1", agent().id, T0, session=SessionState()))
    got = store.merge_session("t1", tainted=False, data_read=frozenset({"pii"}), calls=1)
    assert got == SessionState(tainted=False, data_read=frozenset({"pii"}), calls=1)
    got = store.merge_session("t1", tainted=True, data_read=frozenset(), calls=1)
    got = store.merge_session("t1", tainted=False, data_read=frozenset({"financial"}), calls=1)
    assert got == SessionState(True, frozenset({"pii", "financial"}), 3)  # taint stays on
    with pytest.raises(UnknownTask):
        store.merge_session("missing", tainted=True, data_read=frozenset(), calls=1)

    def call(i: int) -> None:
        store.merge_session("t1", tainted=i == 7, data_read=frozenset({f"c{i % 3}"}), calls=1)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get_task("t1")
    assert final is not None
    assert final.session.calls == 27 and final.session.tainted
    assert final.session.data_read == {"pii", "financial", "c0", "c1", "c2"}


def test_reserve_call_counts_up_to_the_limit_atomically(store: Store) -> None:
    store.add_agent(agent())
    store.add_task(task("t1", agent().id, T0, session=SessionState(calls=1)))
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.reserve_call("t1", 5)))
        for _ in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 4
    final = store.get_task("t1")
    assert final is not None and final.session.calls == 5
    assert store.reserve_call("t1", 5) is False
    with pytest.raises(UnknownTask):
        store.reserve_call("missing", 5)


def test_naive_times_are_refused(store: Store) -> None:
    store.add_agent(agent())
    naive = datetime(2026, 3, 1, 9, 0)
    with pytest.raises(InvalidInput):
        store.add_task(task("t1", agent().id, naive))
    with pytest.raises(InvalidInput):
        store.append(RecordKind.EVENT, naive, {})
    assert store.get_task("t1") is None
    assert store.count() == 0


# --------------------------------------------------------------------------- policy versions


def test_policy_versions_are_immutable(store: Store) -> None:
    store.add_policy_version(policy("v1"))
    assert store.get_policy_version("v1") == policy("v1")
    changed = PolicyVersion("v1", T0, {"x.cedar": "forbid(principal, action, resource);"}, "d")
    with pytest.raises(Conflict):
        store.add_policy_version(changed)
    assert store.get_policy_version("v1") == policy("v1")
    assert store.get_policy_version("v9") is None
    with pytest.raises(InvalidInput):
        store.add_policy_version(PolicyVersion("v2", T0, {}, "d", active=True))


def test_activation_keeps_exactly_one_active(store: Store) -> None:
    assert store.active_policy_version() is None and store.active_policy_id() is None
    for i in range(3):
        store.add_policy_version(policy(f"v{i}", T0 + timedelta(minutes=i)))
    assert store.active_policy_id() is None
    store.activate_policy_version("v1")
    assert store.active_policy_id() == "v1"
    store.activate_policy_version("v2")
    store.activate_policy_version("v2")
    active = store.active_policy_version()
    assert active is not None and active.id == "v2" and active.active
    assert store.active_policy_id() == "v2"
    assert [(p.id, p.active) for p in store.list_policy_versions()] == [
        ("v0", False),
        ("v1", False),
        ("v2", True),
    ]
    with pytest.raises(NotFound):
        store.activate_policy_version("v404")
    active = store.active_policy_version()
    assert active is not None and active.id == "v2"


def test_concurrent_activations_leave_one_active(store: Store) -> None:
    ids = [f"v{i}" for i in range(6)]
    for i, version_id in enumerate(ids):
        store.add_policy_version(policy(version_id, T0 + timedelta(seconds=i)))
    errors: list[BaseException] = []

    def flip(version_id: str) -> None:
        try:
            for _ in range(5):
                store.activate_policy_version(version_id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=flip, args=(v,)) for v in ids]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert sum(p.active for p in store.list_policy_versions()) == 1


# --------------------------------------------------------------------------- learned targets


def test_learned_targets_are_a_set(store: Store) -> None:
    assert store.learned_targets() == frozenset()
    store.learn_targets(["bob@example.com", "bob@example.com", "host.example"], T0)
    store.learn_targets([], T0)
    store.learn_targets(["host.example", "DE89370400440532013000"], T0 + timedelta(days=1))
    assert store.learned_targets() == {"bob@example.com", "host.example", "DE89370400440532013000"}


def test_learned_target_keeps_first_seen(store_url: str) -> None:
    store = open_store(store_url)
    store.learn_targets(["a@example.com"], T0)
    store.learn_targets(["a@example.com", "b@example.com"], T0 + timedelta(days=1))
    store.close()
    engine = create_engine(parse_store_url(store_url))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT target, first_seen FROM learned_targets ORDER BY 1"))
        seen = {r.target: r.first_seen for r in rows}
    engine.dispose()
    day = 86_400_000_000
    assert seen["b@example.com"] - seen["a@example.com"] == day


# --------------------------------------------------------------------------- migrations


def _versions(url: str) -> list[int]:
    engine = create_engine(parse_store_url(url))
    with engine.connect() as conn:
        found = [r[0] for r in conn.execute(text("SELECT version FROM schema_migrations"))]
    engine.dispose()
    return sorted(found)


def test_reopen_is_idempotent_and_keeps_data(store_url: str) -> None:
    store = open_store(store_url)
    store.add_agent(agent())
    rec = store.append(RecordKind.EVENT, T0, {"x": 1})
    store.close()
    for _ in range(2):
        store = open_store(store_url)
        assert store.get_agent(agent().id) == agent()
        assert list(store.records()) == [rec]
        store.close()
    assert _versions(store_url) == list(range(1, LATEST + 1))


def test_concurrent_first_opens_migrate_once(store_url: str) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            opened.append(open_store(store_url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert _versions(store_url) == list(range(1, LATEST + 1))
    opened[0].append(RecordKind.EVENT, T0, {})
    assert opened[-1].count() == 1
    for s in opened:
        s.close()


def test_newer_schema_refuses_to_open(store_url: str) -> None:
    store = open_store(store_url)
    store.append(RecordKind.EVENT, T0, {})
    store.close()
    engine = create_engine(parse_store_url(store_url))
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO schema_migrations (version) VALUES ({LATEST + 1})"))
    engine.dispose()
    with pytest.raises(StoreError, match=f"version {LATEST + 1} is newer"):
        open_store(store_url)
    assert _versions(store_url)[-1] == LATEST + 1
