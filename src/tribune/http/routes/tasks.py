"""Tasks: start (within the agent's entitlements; returns the task token), read, list, end."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from tribune.core.model import Role
from tribune.http import models as m
from tribune.http.convert import limits_in, task_out
from tribune.http.security import allow, not_task_bound, own_agent, own_task, tribune
from tribune.services.access import Caller
from tribune.services.tasks import ScopeRequest

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=m.ERROR_RESPONSES)
actors = Depends(allow(Role.ADMIN, Role.AGENT))
readers = Depends(allow(Role.ADMIN, Role.AUDITOR, Role.APPROVER, Role.AGENT))


@router.post("", response_model=m.TaskStarted, status_code=201)
def start_task(
    body: m.TaskIn, tr: Any = Depends(tribune), caller: Caller = actors
) -> dict[str, Any]:
    not_task_bound(caller)
    agent = own_agent(tr, caller, body.agent)
    request = ScopeRequest(
        purpose=body.purpose,
        tools=body.tools,
        tool_groups=body.tool_groups,
        targets=body.targets,
        literals=body.literals,
        environment=body.environment,
        limits=limits_in(body.limits),
        open_scope=body.open_scope,
    )
    task = tr.tasks.start(agent, request, ttl=body.ttl)
    started_by = tr.registry.resolve_agent(task.agent_id)
    token = tr.tokens.issue(task, started_by, str(started_by.owner))
    return {**task_out(task, tr.clock.now()), "token": token}


@router.get("", response_model=list[m.TaskOut])
def list_tasks(
    agent: str | None = Query(None, max_length=512),
    active: bool = False,
    tr: Any = Depends(tribune),
    caller: Caller = readers,
) -> list[dict[str, Any]]:
    if caller.role is Role.AGENT:
        not_task_bound(caller)
        agent = own_agent(tr, caller, agent)
    now = tr.clock.now()
    return [task_out(t, now) for t in tr.tasks.list(agent_ref=agent, active_only=active)]


@router.get("/{task_id}", response_model=m.TaskOut)
def get_task(task_id: str, tr: Any = Depends(tribune), caller: Caller = readers) -> dict[str, Any]:
    if caller.role is Role.AGENT:
        own_task(tr, caller, task_id)
    return task_out(tr.tasks.get(task_id), tr.clock.now())


@router.post("/{task_id}/end", response_model=m.TaskOut)
def end_task(task_id: str, tr: Any = Depends(tribune), caller: Caller = actors) -> dict[str, Any]:
    own_task(tr, caller, task_id)
    return task_out(tr.tasks.end(task_id), tr.clock.now())
