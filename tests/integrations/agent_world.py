"""A small governed world for the framework adapters: a real Tribune home on SQLite.

``open_home(tmp_path)`` yields an open Tribune with three tools, ``crm.read`` (a read),
``email.send`` (open world, its recipient a target) and ``db.drop`` (destructive), and the agent
``bot`` (owned by alice) entitled to all three in development and production. Bob and carol are
in the group ``approvers``. With the default pack, an e-mail to an unknown recipient needs one
approval from anyone but alice; ``db.drop`` in production needs two from ``approvers``.
``records(tr)`` reads the intent, decision and result records of the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tribune
from tribune import Entitlements, ExtractorSpec, RiskFacts, Tool
from tribune.bootstrap import Tribune


def open_home(tmp_path: Path) -> Iterator[Tribune]:
    """Use as ``yield from open_home(tmp_path)`` in a fixture: the home is closed after."""
    tr = tribune.open(tmp_path / "home")
    tr.registry.add_group("support")
    tr.registry.add_group("approvers")
    tr.registry.add_user("alice", email="alice@example.com", groups=("support",))
    tr.registry.add_user("bob", email="bob@example.com", groups=("approvers",))
    tr.registry.add_user("carol", email="carol@example.com", groups=("approvers",))
    tr.registry.register_tool(Tool("crm.read", risk=RiskFacts(read_only=True), groups=("crm",)))
    tr.registry.register_tool(
        Tool(
            "email.send",
            risk=RiskFacts(read_only=False, open_world=True),
            groups=("email",),
            extractors=(ExtractorSpec("email", "/to", role="recipient", target=True),),
        )
    )
    tr.registry.register_tool(
        Tool(
            "db.drop",
            risk=RiskFacts(read_only=False, destructive=True, open_world=False),
            groups=("database",),
        )
    )
    tr.registry.register_agent(
        "bot",
        owner="user:alice",
        purpose="tests",
        environment="development",
        entitlements=Entitlements(
            tools=frozenset({"crm.read", "email.send", "db.drop"}),
            environments=frozenset({"development", "production"}),
        ),
    )
    yield tr
    tr.close()


def records(tr: Tribune, action_id: str | None = None) -> list[dict[str, Any]]:
    """The intent, decision and result records (of one action when ``action_id`` is given)."""
    found = [json.loads(r.body) for r in tr.store.records()]
    found = [r for r in found if r["kind"] in ("intent", "decision", "result")]
    if action_id is not None:
        found = [r for r in found if r["action_id"] == action_id]
    return found


def tickets(tr: Tribune) -> list[str]:
    """The ids of every approval ticket asked for so far, oldest first."""
    found = [json.loads(r.body)["data"] for r in tr.store.records()]
    return [d["ticket"] for d in found if d.get("event") == "approval_requested"]


def state_of(tr: Tribune, ticket: str) -> str:
    return tr.approvals.get(ticket).state.value


def vote(tr: Tribune, ticket: str, *users: str, approve: bool = True) -> str:
    """Each user's vote on ``ticket``; the ticket's state after."""
    for user in users:
        tr.approvals.vote(ticket, user, approve)
    return state_of(tr, ticket)


def only_action(tr: Tribune) -> list[dict[str, Any]]:
    """The records of the one action decided so far (fails if there were several)."""
    found = records(tr)
    ids = {r["action_id"] for r in found}
    assert len(ids) == 1, ids
    return found


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return [r["kind"] for r in found]


def raw_log(tr: Tribune) -> str:
    return "\n".join(r.body for r in tr.store.records())


# The approval tests of every adapter share these calls and the home fixture.
UNKNOWN = {"to": "eve@elsewhere.example", "body": "hi"}  # one approval, not alice's
MAIL = {"purpose": "ticket 42", "tools": ["crm.read", "email.send"]}
DROP = {"purpose": "clean up", "tools": ["db.drop"], "environment": "production"}


@pytest.fixture
def tr(tmp_path: Path) -> Iterator[Tribune]:
    """A fresh home with the shared world, closed afterwards."""
    yield from open_home(tmp_path)
