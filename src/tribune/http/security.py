"""Who is calling: a bearer API key checked on every non-public route, and the role rules.

    caller: Caller = Depends(allow(Role.ADMIN, Role.AUDITOR))

Each route names the roles it admits; admin is not implied anywhere. An agent's key acts only
for that agent: ``own_task`` and ``own_agent`` refuse anything else as not found (an agent
learns nothing about other agents' tasks).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tribune.core.model import Role, Task
from tribune.errors import Forbidden, Unauthenticated, UnknownTask
from tribune.services.access import Caller

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer trb_...`")


async def tribune(request: Request) -> Any:
    return request.app.state.tribune


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    # async on purpose: a key check is one indexed read, cheaper inline than a thread hop
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("invalid or missing credential", hint="send Authorization: Bearer")
    caller: Caller = request.app.state.tribune.access.authenticate(credentials.credentials)
    request.state.caller = caller
    return caller


def allow(*roles: Role) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency admitting callers whose key has one of ``roles``."""
    admitted = frozenset(roles)

    async def check(caller: Caller = Depends(authenticate)) -> Caller:
        if caller.role not in admitted:
            raise Forbidden(f"role `{caller.role.value}` may not do this")
        return caller

    return check


def own_task(tr: Any, caller: Caller, task_id: str) -> Task:
    """The task, if the caller may act in it: admins in any, agents in their own."""
    task: Task | None = tr.store.get_task(task_id)
    if task is None or (caller.role is Role.AGENT and task.agent_id != caller.agent_id):
        raise UnknownTask(f"unknown task `{task_id}`")
    return task


def own_agent(tr: Any, caller: Caller, ref: str | None) -> str:
    """The agent a caller acts for: agents only for themselves; others must name one."""
    if caller.role is Role.AGENT:
        assert caller.agent_id is not None
        if ref is not None and tr.registry.resolve_agent(ref).id != caller.agent_id:
            raise Forbidden("an agent's key acts only for that agent")
        return caller.agent_id
    if ref is None:
        raise Forbidden("name the agent", hint="set `agent`")
    return ref
