"""People, agents and tools."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from tribune.core.model import AgentStatus, Role, User
from tribune.errors import UnknownAgent, UnknownTool
from tribune.http import models as m
from tribune.http.convert import agent_out, entitlements_in, tool_in, tool_out
from tribune.http.security import allow, tribune
from tribune.services.access import Caller


def user_out(u: User) -> dict[str, Any]:
    return {
        "name": u.name,
        "email": u.email,
        "display_name": u.display_name,
        "groups": list(u.groups),
    }


router = APIRouter(prefix="/v1", tags=["registry"], responses=m.ERROR_RESPONSES)
admin = Depends(allow(Role.ADMIN))
readers = Depends(allow(Role.ADMIN, Role.AUDITOR, Role.APPROVER))


@router.get("/users", response_model=list[m.UserOut])
def list_users(tr: Any = Depends(tribune), _: Caller = readers) -> list[dict[str, Any]]:
    return [user_out(u) for u in tr.store.list_users()]


@router.post("/users", response_model=m.UserOut, status_code=201)
def add_user(body: m.UserIn, tr: Any = Depends(tribune), _: Caller = admin) -> dict[str, Any]:
    u = tr.registry.add_user(
        body.name, email=body.email, display_name=body.display_name, groups=tuple(body.groups)
    )
    return {
        "name": u.name,
        "email": u.email,
        "display_name": u.display_name,
        "groups": list(u.groups),
    }


@router.get("/groups", response_model=list[m.GroupOut])
def list_groups(tr: Any = Depends(tribune), _: Caller = readers) -> list[dict[str, Any]]:
    return [{"name": g.name, "description": g.description} for g in tr.store.list_groups()]


@router.post("/groups", response_model=m.GroupOut, status_code=201)
def add_group(body: m.GroupIn, tr: Any = Depends(tribune), _: Caller = admin) -> dict[str, Any]:
    g = tr.registry.add_group(body.name, body.description)
    return {"name": g.name, "description": g.description}


@router.get("/agents", response_model=list[m.AgentOut])
def list_agents(tr: Any = Depends(tribune), _: Caller = readers) -> list[dict[str, Any]]:
    return [agent_out(a) for a in tr.store.list_agents()]


@router.post("/agents", response_model=m.AgentOut, status_code=201)
def register_agent(
    body: m.AgentIn, tr: Any = Depends(tribune), _: Caller = admin
) -> dict[str, Any]:
    agent = tr.registry.register_agent(
        body.name,
        owner=body.owner,
        purpose=body.purpose,
        environment=body.environment,
        entitlements=entitlements_in(body.entitlements),
    )
    return agent_out(agent)


@router.get("/agents/{agent}", response_model=m.AgentOut)
def get_agent(
    agent: str,
    tr: Any = Depends(tribune),
    caller: Caller = Depends(allow(Role.ADMIN, Role.AUDITOR, Role.APPROVER, Role.AGENT)),
) -> dict[str, Any]:
    found = tr.registry.resolve_agent(agent)
    if caller.role is Role.AGENT and found.id != caller.agent_id:
        raise UnknownAgent(f"unknown agent `{agent}`")
    return agent_out(found)


@router.put("/agents/{agent}/status", response_model=m.AgentOut)
def set_agent_status(
    agent: str, body: m.AgentStatusIn, tr: Any = Depends(tribune), _: Caller = admin
) -> dict[str, Any]:
    return agent_out(tr.registry.set_status(agent, AgentStatus(body.status)))


@router.get("/tools", response_model=list[m.ToolOut])
def list_tools(
    tr: Any = Depends(tribune),
    _: Caller = Depends(allow(Role.ADMIN, Role.AUDITOR, Role.APPROVER, Role.AGENT)),
) -> list[dict[str, Any]]:
    return [tool_out(t) for t in tr.store.list_tools()]


@router.get("/tools/{name}", response_model=m.ToolOut)
def get_tool(
    name: str,
    tr: Any = Depends(tribune),
    _: Caller = Depends(allow(Role.ADMIN, Role.AUDITOR, Role.APPROVER, Role.AGENT)),
) -> dict[str, Any]:
    tool = tr.store.get_tool(name)
    if tool is None:
        raise UnknownTool(f"unknown tool `{name}`")
    return tool_out(tool)


@router.put("/tools/{name}", response_model=m.ToolOut)
def put_tool(
    name: m.PathName, body: m.ToolIn, tr: Any = Depends(tribune), _: Caller = admin
) -> dict[str, Any]:
    return tool_out(tr.registry.register_tool(tool_in(name, body)))
