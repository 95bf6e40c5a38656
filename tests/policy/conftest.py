"""Shared builders for policy tests: agents, tools and requests with neutral defaults."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tribune.core.model import Agent, AgentStatus, Entitlements, OwnerRef, RiskFacts, Tool
from tribune.policy import PolicyRequest, default_context

MakeRequest = Callable[..., PolicyRequest]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def build_request(
    *,
    tool: str = "crm.read",
    groups: tuple[str, ...] = ("crm",),
    risk: RiskFacts | None = None,
    context: dict[str, Any] | None = None,
    status: AgentStatus = AgentStatus.ACTIVE,
    owner: str = "user:alice",
    owner_groups: tuple[str, ...] = ("eng",),
    agent: str = "bot",
    action: str = "call",
    cache_key: str = "task-1",
) -> PolicyRequest:
    return PolicyRequest(
        agent=Agent(
            id=f"spiffe://example.org/agent/{agent}",
            name=agent,
            owner=OwnerRef.parse(owner),
            purpose="testing",
            environment="development",
            entitlements=Entitlements(),
            status=status,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
        ),
        owner_groups=owner_groups,
        owner_email="alice@example.org",
        tool=Tool(
            name=tool,
            risk=risk or RiskFacts(read_only=True, destructive=False, open_world=False),
            groups=groups,
        ),
        context=merge(default_context(), context or {}),
        action=action,
        cache_key=cache_key,
    )


@pytest.fixture
def make_request() -> MakeRequest:
    return build_request
