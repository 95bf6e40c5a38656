"""A small governed world over each durable store: people, tools, agents and the default pack.

``world`` is a ``World`` with an open Tribune (SQLite and PostgreSQL), a hand-moved clock, and
helpers to start tasks. Tests talk to the real services; nothing is faked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tribune.bootstrap import Tribune, init_home, open_tribune
from tribune.core.model import Entitlements, ExtractorSpec, Limits, RiskFacts, Task, Tool
from tribune.system import FixedClock

TOOLS = (
    Tool(
        "crm.read",
        risk=RiskFacts(read_only=True, destructive=False, idempotent=True, open_world=False),
        groups=("crm",),
        extractors=(ExtractorSpec("object_id", "/customer_id", role="customer"),),
        data_classes=("confidential",),
    ),
    Tool(
        "web.fetch",
        risk=RiskFacts(read_only=True, destructive=False, open_world=True, untrusted_output=True),
        groups=("web",),
        extractors=(ExtractorSpec("url", "/url", role="fetch", target=True),),
    ),
    Tool(
        "email.send",
        risk=RiskFacts(read_only=False, destructive=False, open_world=True),
        groups=("email",),
        extractors=(
            ExtractorSpec("email", "/to/*", role="recipient", target=True),
            ExtractorSpec("text", "/body", role="body"),
        ),
        sensitive_args=("/attachment",),
    ),
    Tool(
        "payments.pay",
        risk=RiskFacts(read_only=False, destructive=True, open_world=True),
        groups=("payments",),
        extractors=(
            ExtractorSpec("iban", "/to_account", role="payee", target=True),
            ExtractorSpec("amount", "/amount", aggregate="sum"),
        ),
    ),
    Tool(
        "db.drop",
        risk=RiskFacts(read_only=False, destructive=True, open_world=False),
        groups=("database",),
        extractors=(ExtractorSpec("object_id", "/table", role="table"),),
    ),
    Tool(
        "account.set_password",
        risk=RiskFacts(read_only=False, destructive=False, open_world=False),
        groups=("accounts",),
        extractors=(ExtractorSpec("secret", "/password", literal="new_password"),),
    ),
    Tool(
        "ticket.update",
        risk=RiskFacts(read_only=False, destructive=False, open_world=False),
        groups=("tickets",),
    ),
)

CONFIG = """
trust_domain = "acme.test"
[store]
url = "{url}"
[directory]
domains = ["acme.com"]
members = ["alice@acme.com"]
accounts = ["DE89370400440532013000"]
counterparties = ["partner.com"]
"""

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@dataclass
class World:
    tr: Tribune
    clock: FixedClock
    home: Path

    def task(self, agent: str = "helper", **scope: Any) -> Task:
        scope.setdefault("purpose", "help a customer")
        if not any(k in scope for k in ("tools", "tool_groups", "open_scope")):
            scope["tools"] = [t.name for t in TOOLS if t.name not in ("db.drop",)]
        return self.tr.start_task(agent, **scope)

    def records(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(r.body) for r in self.tr.store.records()]

    def reopen(self) -> None:
        self.tr.close()
        self.tr = open_tribune(self.home, clock=self.clock)


def _populate(tr: Tribune) -> None:
    reg = tr.registry
    reg.add_group("approvers")
    reg.add_group("support")
    reg.add_user("alice", email="alice@acme.com", groups=("support",))
    reg.add_user("bob", email="bob@acme.com", groups=("approvers",))
    for tool in TOOLS:
        reg.register_tool(tool)
    everything = frozenset(t.name for t in TOOLS)
    reg.register_agent(
        "helper",
        owner="user:alice",
        purpose="customer support",
        environment="development",
        entitlements=Entitlements(
            tools=everything,
            tool_groups=frozenset({"crm", "email"}),
            environments=frozenset({"development", "production"}),
            limits=Limits(max_amount=100_000),
            open_scope=True,
        ),
    )
    reg.register_agent(
        "ops",
        owner="group:support",
        purpose="operations",
        environment="production",
        entitlements=Entitlements(
            tool_groups=frozenset({"database", "tickets"}), environments=frozenset({"production"})
        ),
    )


@pytest.fixture
def world(store_url: str, tmp_path: Path) -> Iterator[World]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "tribune.toml").write_text(CONFIG.format(url=store_url))
    init_home(home)
    clock = FixedClock(START)
    tr = open_tribune(home, clock=clock)
    _populate(tr)
    w = World(tr, clock, home)
    yield w
    w.tr.close()
