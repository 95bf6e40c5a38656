"""Values shared by the store contract suites."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone

from tribune.core.audit import GENESIS
from tribune.core.model import (
    Agent,
    AgentStatus,
    AuditRecord,
    Entitlements,
    Limits,
    OwnerRef,
    PolicyVersion,
    Scope,
    SessionState,
    Task,
    TaskState,
)

T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))


def agent(name: str = "mailer", **changes: object) -> Agent:
    values: dict[str, object] = {
        "id": f"spiffe://example.org/agent/{name}",
        "name": name,
        "owner": OwnerRef("group", "sre"),
        "purpose": "sends mail — and reports ✉",
        "environment": "prod",
        "entitlements": Entitlements(
            tools=frozenset({"mail.send", "crm.read"}),
            tool_groups=frozenset({"mail"}),
            environments=frozenset({"prod", "staging"}),
            limits=Limits(max_amount=10_000, max_calls=50),
            open_scope=True,
        ),
        "status": AgentStatus.ACTIVE,
        "created_at": T0.astimezone(IST),
    }
    values.update(changes)
    return Agent(**values)


def task(task_id: str, agent_id: str, created: datetime, **changes: object) -> Task:
    values: dict[str, object] = {
        "id": task_id,
        "agent_id": agent_id,
        "scope": Scope(
            purpose="pay invoice 42",
            tools=frozenset({"pay"}),
            tool_groups=frozenset({"payments"}),
            targets=frozenset({"DE89370400440532013000", "bob@example.com"}),
            literal_digests={"iban": "ab" * 32},
            environment="prod",
            limits=Limits(max_amount=500),
        ),
        "state": TaskState.ACTIVE,
        "created_at": created,
        "expires_at": created + timedelta(hours=1),
        "root_id": task_id,
        "session": SessionState(tainted=True, data_read=frozenset({"pii"}), calls=3),
    }
    values.update(changes)
    return Task(**values)


def policy(version_id: str, created: datetime = T0) -> PolicyVersion:
    files = {"policies/main.cedar": "permit(principal, action, resource);", "ünï.txt": "ß"}
    return PolicyVersion(version_id, created, files, "sha256:" + "0" * 64, note="first")


def assert_linear(records: Iterable[AuditRecord]) -> int:
    """Assert the records form one unbroken chain from GENESIS; return how many."""
    prev, n = GENESIS, 0
    for n, rec in enumerate(records, 1):
        assert rec.seq == n
        assert rec.prev_hash == prev
        assert hashlib.sha256(rec.body.encode()).hexdigest() == rec.hash
        env = json.loads(rec.body)
        assert (env["seq"], env["prev"]) == (n, prev)
        prev = rec.hash
    return n
