"""Who is calling: a bearer credential checked on every non-public route, and the role rules.

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
from tribune.services.access import TOKEN_PREFIX, Caller

bearer = HTTPBearer(
    auto_error=False,
    description="an API key (`trb_...`), or an agent's task token, signed assertion (RFC 7523)"
    " or SPIFFE JWT-SVID",
)


async def tribune(request: Request) -> Any:
    return request.app.state.tribune


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    # async on purpose: a key check is one indexed read, cheaper inline than a thread hop
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("invalid or missing credential", hint="send Authorization: Bearer")
    caller = caller_for(request.app.state.tribune, credentials.credentials)
    request.state.caller = caller
    return caller


def caller_for(tr: Any, token: str) -> Caller:
    """The caller a bearer credential stands for: an API key (``trb_...``), or an agent's
    task token, signed assertion or SPIFFE JWT-SVID. Refusals are recorded (with their reason)
    by the identity service; the caller only ever learns "invalid or missing credential"."""
    if token.startswith(TOKEN_PREFIX):
        caller: Caller = tr.access.authenticate(token)
        return caller
    try:
        who = tr.identity.authenticate(token)
    except Unauthenticated:
        raise Unauthenticated("invalid or missing credential") from None
    return Caller(
        key_id=f"{who.via}:{who.jti or ''}",
        principal=f"agent:{who.agent_id}",
        role=Role.AGENT,
        task_id=who.task_id,
        via=who.via,
    )


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
    if caller.task_id is not None and task.id != caller.task_id:
        raise UnknownTask(f"unknown task `{task_id}`")
    return task


def not_task_bound(caller: Caller) -> None:
    """Refuse a task token where the route acts beyond one task."""
    if caller.task_id is not None:
        raise Forbidden(
            "a task token acts only in its own task",
            hint="use the agent's key or a signed assertion",
        )


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
