"""``MemoryStore``: the whole ``tribune.ports.Store`` in memory, for tests and throwaway runs.

It behaves as the SQL store does (the same contract suite runs on both): values are kept as
codec JSON text, so what comes back is a fresh copy normalised exactly as a database would
return it (UTC times, no aliasing of mutable dicts). One lock makes it thread-safe.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from tribune.core.audit import GENESIS, link
from tribune.core.model import (
    Agent,
    AgentStatus,
    ApiKey,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    Group,
    PolicyVersion,
    RecordKind,
    SessionState,
    Task,
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
from tribune.store import codec
from tribune.store.memory_approvals import MemoryApprovals
from tribune.store.memory_credentials import MemoryCredentials

T = TypeVar("T")
MAX_FIND = 10_000  # as the SQL store


class MemoryStore(MemoryCredentials, MemoryApprovals):
    """``tribune.ports.Store`` held in process memory; gone when the process ends."""

    def __init__(self) -> None:
        self._mutex = threading.RLock()
        self._closed = False
        self._users: dict[str, str] = {}
        self._groups: dict[str, str] = {}
        self._agents: dict[str, str] = {}
        self._tools: dict[str, str] = {}
        self._api_keys: dict[str, str] = {}
        self._tasks: dict[str, str] = {}
        self._policies: dict[str, str] = {}
        self._active_policy: str | None = None
        self._learned: dict[str, datetime] = {}
        self._records: list[AuditRecord] = []
        self._checkpoints: dict[tuple[int, str], Checkpoint] = {}
        self._init_credentials()
        self._init_approvals()

    def close(self) -> None:
        """Using the store afterwards raises ``StoreError``, as the SQL store does."""
        with self._mutex:
            self._closed = True

    @property
    def _lock(self) -> threading.RLock:
        if self._closed:
            raise StoreError("the store is closed")
        return self._mutex

    def _get(self, table: dict[str, str], tp: type[T], key: str) -> T | None:
        with self._lock:
            text = table.get(key)
        return codec.loads(tp, text) if text is not None else None

    def _list(self, table: dict[str, str], tp: type[T]) -> list[T]:
        with self._lock:
            texts = [table[k] for k in sorted(table)]
        return [codec.loads(tp, t) for t in texts]

    # ------------------------------------------------------------------ users and groups

    def put_user(self, user: User) -> None:
        text = codec.dumps(user)
        with self._lock:
            self._users[user.name] = text

    def get_user(self, name: str) -> User | None:
        return self._get(self._users, User, name)

    def list_users(self) -> list[User]:
        return self._list(self._users, User)

    def put_group(self, group: Group) -> None:
        text = codec.dumps(group)
        with self._lock:
            self._groups[group.name] = text

    def get_group(self, name: str) -> Group | None:
        return self._get(self._groups, Group, name)

    def list_groups(self) -> list[Group]:
        return self._list(self._groups, Group)

    # ------------------------------------------------------------------ agents and tools

    def add_agent(self, agent: Agent) -> None:
        text = codec.dumps(agent)
        with self._lock:
            if agent.id in self._agents:
                raise Conflict(f"agent `{agent.id}` already exists")
            self._agents[agent.id] = text

    def get_agent(self, agent_id: str) -> Agent | None:
        return self._get(self._agents, Agent, agent_id)

    def _agent_of(self, agent_id: str) -> Agent | None:
        return self.get_agent(agent_id)

    def list_agents(self) -> list[Agent]:
        return self._list(self._agents, Agent)

    def set_agent_status(self, agent_id: str, status: AgentStatus) -> None:
        with self._lock:
            agent = self._get(self._agents, Agent, agent_id)
            if agent is None:
                raise UnknownAgent(f"unknown agent `{agent_id}`")
            changed = dataclasses.replace(agent, status=AgentStatus(status))
            self._agents[agent_id] = codec.dumps(changed)

    def put_tool(self, tool: Tool) -> None:
        text = codec.dumps(tool)
        with self._lock:
            self._tools[tool.name] = text

    def get_tool(self, name: str) -> Tool | None:
        return self._get(self._tools, Tool, name)

    def list_tools(self) -> list[Tool]:
        return self._list(self._tools, Tool)

    # ------------------------------------------------------------------ api keys

    def add_api_key(self, key: ApiKey) -> None:
        text = codec.dumps(key)
        with self._lock:
            if key.id in self._api_keys:
                raise Conflict(f"api key `{key.id}` already exists")
            self._api_keys[key.id] = text

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._get(self._api_keys, ApiKey, key_id)

    def list_api_keys(self) -> list[ApiKey]:
        found = self._list(self._api_keys, ApiKey)
        return sorted(found, key=lambda k: (k.created_at, k.id))

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        codec.check_aware(at)
        with self._lock:
            key = self._get(self._api_keys, ApiKey, key_id)
            if key is None or not key.active(at):
                return False
            self._api_keys[key_id] = codec.dumps(dataclasses.replace(key, revoked_at=at))
            return True

    # ------------------------------------------------------------------ tasks

    def add_task(self, task: Task) -> None:
        text = codec.dumps(task)
        with self._lock:
            if task.agent_id not in self._agents:
                raise UnknownAgent(f"unknown agent `{task.agent_id}`")
            if task.id in self._tasks:
                raise Conflict(f"task `{task.id}` already exists")
            self._tasks[task.id] = text

    def get_task(self, task_id: str) -> Task | None:
        return self._get(self._tasks, Task, task_id)

    def list_tasks(
        self, *, agent_id: str | None = None, active_at: datetime | None = None
    ) -> list[Task]:
        if active_at is not None:
            codec.check_aware(active_at)
        found = [
            t
            for t in self._list(self._tasks, Task)
            if (agent_id is None or t.agent_id == agent_id)
            and (active_at is None or t.is_active(active_at))
        ]
        # newest first, then by id descending (what the SQL store's ORDER BY gives)
        return sorted(found, key=lambda t: (t.created_at, t.id), reverse=True)

    def end_task(self, task_id: str, ended_at: datetime) -> bool:
        codec.check_aware(ended_at)
        with self._lock:
            task = self._get(self._tasks, Task, task_id)
            if task is None or task.state is not TaskState.ACTIVE:
                return False
            ended = dataclasses.replace(task, state=TaskState.ENDED, ended_at=ended_at)
            self._tasks[task_id] = codec.dumps(ended)
            return True

    def update_session(self, task_id: str, session: SessionState) -> None:
        with self._lock:
            task = self._get(self._tasks, Task, task_id)
            if task is None:
                raise UnknownTask(f"unknown task `{task_id}`")
            self._tasks[task_id] = codec.dumps(dataclasses.replace(task, session=session))

    def merge_session(
        self, task_id: str, *, tainted: bool, data_read: frozenset[str], calls: int
    ) -> SessionState:
        merged = self._change_session(
            task_id, lambda old: old.merged(tainted=tainted, data_read=data_read, calls=calls)
        )
        assert merged is not None  # INVARIANT: merging always yields a state
        return merged

    def reserve_call(self, task_id: str, limit: int) -> bool:
        return self._change_session(task_id, lambda old: old.reserved(limit)) is not None

    def _change_session(
        self, task_id: str, change: Callable[[SessionState], SessionState | None]
    ) -> SessionState | None:
        with self._lock:
            task = self._get(self._tasks, Task, task_id)
            if task is None:
                raise UnknownTask(f"unknown task `{task_id}`")
            new = change(task.session)
            if new is not None:
                self._tasks[task_id] = codec.dumps(dataclasses.replace(task, session=new))
            return new

    # ------------------------------------------------------------------ policy versions

    def add_policy_version(self, version: PolicyVersion) -> None:
        if version.active:
            raise InvalidInput(
                f"policy version `{version.id}` must be added inactive",
                hint="add it, then activate it",
            )
        text = codec.dumps(version)
        with self._lock:
            if version.id in self._policies:
                raise Conflict(f"policy version `{version.id}` already exists")
            self._policies[version.id] = text

    def _policy(self, version_id: str) -> PolicyVersion | None:
        found = self._get(self._policies, PolicyVersion, version_id)
        if found is None or version_id != self._active_policy:
            return found
        return dataclasses.replace(found, active=True)

    def get_policy_version(self, version_id: str) -> PolicyVersion | None:
        with self._lock:
            return self._policy(version_id)

    def active_policy_version(self) -> PolicyVersion | None:
        with self._lock:
            return self._policy(self._active_policy) if self._active_policy else None

    def active_policy_id(self) -> str | None:
        with self._lock:
            return self._active_policy

    def activate_policy_version(self, version_id: str) -> None:
        with self._lock:
            if version_id not in self._policies:
                raise NotFound(f"unknown policy version `{version_id}`")
            self._active_policy = version_id

    def list_policy_versions(self) -> list[PolicyVersion]:
        with self._lock:
            found = [self._policy(k) for k in self._policies]
        return sorted((p for p in found if p), key=lambda p: (p.created_at, p.id))

    # ------------------------------------------------------------------ learned targets

    def learn_targets(self, targets: Sequence[str], at: datetime) -> None:
        codec.check_aware(at)
        with self._lock:
            for target in targets:
                self._learned.setdefault(target, at)

    def learned_targets(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._learned)

    # ------------------------------------------------------------------ audit log

    def append(
        self,
        kind: RecordKind,
        ts: datetime,
        body: dict[str, object],
        *,
        action_id: str | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
    ) -> AuditRecord:
        entry = AuditEntry(kind, ts, body, action_id, task_id, agent_id)
        return self.append_many((entry,))[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        for entry in entries:
            codec.check_aware(entry.ts)
        out: list[AuditRecord] = []
        with self._lock:
            seq, prev = self._head()
            for entry in entries:
                seq += 1
                try:
                    record = link(
                        seq,
                        prev,
                        entry.kind,
                        entry.ts,
                        entry.body,
                        action_id=entry.action_id,
                        task_id=entry.task_id,
                        agent_id=entry.agent_id,
                    )
                except (ValueError, TypeError) as e:
                    raise InvalidInput(f"audit body is not JSON: {e}") from None
                out.append(record)
                prev = record.hash
            # all or nothing: kept (with times in UTC, as a database returns them) only now
            self._records.extend(dataclasses.replace(r, ts=r.ts.astimezone(UTC)) for r in out)
        return out

    def _head(self) -> tuple[int, str]:
        if not self._records:
            return 0, GENESIS
        last = self._records[-1]
        return last.seq, last.hash

    def head(self) -> tuple[int, str]:
        with self._lock:
            return self._head()

    def records(self, *, after_seq: int = 0, limit: int | None = None) -> Iterator[AuditRecord]:
        if limit is not None and limit < 0:
            raise InvalidInput(f"invalid limit `{limit}`")
        # INVARIANT: record seq n sits at index n - 1 (seqs start at 1 with no gaps).
        with self._lock:
            start = max(after_seq, 0)
            stop = None if limit is None else start + limit
            chosen = self._records[start:stop]
        yield from chosen

    def find_records(
        self,
        *,
        after_seq: int = 0,
        limit: int = 100,
        kinds: Sequence[RecordKind] = (),
        action_id: str | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditRecord]:
        if not 0 < limit <= MAX_FIND:
            raise InvalidInput(f"limit must be between 1 and {MAX_FIND}")
        wanted = frozenset(kinds)

        def matches(r: AuditRecord) -> bool:
            return (
                (not wanted or r.kind in wanted)
                and (action_id is None or r.action_id == action_id)
                and (task_id is None or r.task_id == task_id)
                and (agent_id is None or r.agent_id == agent_id)
                and (since is None or r.ts >= codec.check_aware(since))
                and (until is None or r.ts < codec.check_aware(until))
            )

        with self._lock:
            chosen = self._records[max(after_seq, 0) :]
        return list(itertools.islice(filter(matches, chosen), limit))

    def count(self) -> int:
        with self._lock:
            return len(self._records)

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        codec.check_aware(checkpoint.ts)
        key = (checkpoint.seq, checkpoint.key_id)
        with self._lock:
            if key in self._checkpoints:
                raise Conflict(
                    f"checkpoint at seq {checkpoint.seq} by key `{checkpoint.key_id}` exists"
                )
            self._checkpoints[key] = dataclasses.replace(
                checkpoint, ts=checkpoint.ts.astimezone(UTC)
            )

    def checkpoints(self) -> list[Checkpoint]:
        with self._lock:
            return [self._checkpoints[k] for k in sorted(self._checkpoints)]
