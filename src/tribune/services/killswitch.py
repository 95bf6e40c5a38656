"""The kill switch: end tasks and take back their credentials at once.

Selected by task (with every task delegated from it), agent, owner, or everything. Ending a task
kills its task tokens (every check reads the task) and revokes its leases (downstream tokens go
on the revocation list, database roles are dropped with their sessions). Leases of tasks that
already ended are swept up too. ``suspend`` also stops the agents from starting new tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from tribune.core.model import AgentStatus, LeaseState, OwnerRef, RecordKind, Task
from tribune.errors import InvalidInput
from tribune.ports import Clock, Store
from tribune.services.approvals import ApprovalService
from tribune.services.leases import LeaseService
from tribune.services.registry import Events, RegistryService
from tribune.services.tasks import TaskService

REASON = "kill_switch"


@dataclass(frozen=True, slots=True)
class Revocation:
    """What one use of the kill switch did."""

    tasks_ended: int
    leases_revoked: int
    leases_failed: int  # backend unreachable: the sweeper retries; the task is over regardless
    agents_suspended: int


class KillSwitch:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        events: Events,
        registry: RegistryService,
        tasks: TaskService,
        leases: LeaseService,
        approvals: ApprovalService | None = None,
    ) -> None:
        self.approvals = approvals
        self.store = store
        self.clock = clock
        self.events = events
        self.registry = registry
        self.tasks = tasks
        self.leases = leases

    def revoke(
        self,
        *,
        task: str | None = None,
        agent: str | None = None,
        owner: str | None = None,
        everything: bool = False,
        suspend: bool = False,
        actor: str = "",
    ) -> Revocation:
        """Revoke what one selector picks; exactly one of ``task``, ``agent``, ``owner`` and
        ``everything`` must be given."""
        if sum(x is not None for x in (task, agent, owner)) + everything != 1:
            raise InvalidInput("choose exactly one of task, agent, owner or all")
        if suspend and task is not None:
            raise InvalidInput(
                "`suspend` acts on agents, not on one task",
                hint="revoke by agent or owner to suspend",
            )
        now = self.clock.now()
        active = self.store.list_tasks(active_at=now)
        agent_ids: set[str] | None  # None: every agent
        selector: dict[str, str | bool]
        if task is not None:
            root = self.tasks.get(task)
            chosen = _tree(root, active)
            agent_ids = {t.agent_id for t in chosen}
            selector = {"task": root.id}
        elif agent is not None:
            agent_ids = {self.registry.resolve_agent(agent).id}
            selector = {"agent": next(iter(agent_ids))}
        elif owner is not None:
            ref = OwnerRef.parse(owner)
            agent_ids = {a.id for a in self.store.list_agents() if a.owner == ref}
            selector = {"owner": str(ref)}
        else:
            agent_ids = None
            selector = {"all": True}
        if task is None:
            chosen = [t for t in active if agent_ids is None or t.agent_id in agent_ids]
        ended = 0
        for one in chosen:
            if self.store.end_task(one.id, now):
                ended += 1
                self.events.record(
                    RecordKind.EVENT,
                    {"event": "task_ended", "reason": REASON},
                    task_id=one.id,
                    agent_id=one.agent_id,
                )
                if self.approvals is not None:
                    self.approvals.close_task(one.id, REASON)
        # Every live lease of the chosen tasks, and of any ended task the selector covers.
        task_ids = {t.id for t in chosen}
        for lease in self.store.list_leases(state=LeaseState.ACTIVE, limit=10_000):
            if task is None and (agent_ids is None or lease.agent_id in agent_ids):
                task_ids.add(lease.task_id)
        revoked, failed = self.leases.revoke_tasks(sorted(task_ids), REASON)
        suspended = 0
        if suspend:
            for agent_id in sorted(agent_ids or {a.id for a in self.store.list_agents()}):
                found = self.store.get_agent(agent_id)
                if found is not None and found.status is AgentStatus.ACTIVE:
                    self.registry.set_status(agent_id, AgentStatus.SUSPENDED)
                    suspended += 1
        result = Revocation(ended, revoked, failed, suspended)
        self.events.record(
            RecordKind.EVENT,
            {
                "event": "kill_switch",
                "actor": actor,
                **selector,
                "tasks_ended": ended,
                "leases_revoked": revoked,
                "leases_failed": failed,
                "agents_suspended": suspended,
            },
        )
        return result


def _tree(root: Task, active: list[Task]) -> list[Task]:
    """``root`` and every active task delegated from it, at any depth."""
    children: dict[str, list[Task]] = {}
    for t in active:
        if t.parent_id:
            children.setdefault(t.parent_id, []).append(t)
    found, todo = [root], [root.id]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.id)
    return found
