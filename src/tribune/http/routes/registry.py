"""People, agents (and their keys) and tools."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from tribune.core.model import AgentKey, AgentStatus, Role, User
from tribune.errors import InvalidInput, UnknownAgent, UnknownTool
from tribune.http import models as m
from tribune.http.convert import agent_out, entitlements_in, tool_in, tool_out, ts
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


@router.post("/agents", response_model=m.AgentRegistered, status_code=201)
def register_agent(body: m.AgentIn, tr: Any = Depends(tribune), _: Caller = admin) -> JSONResponse:
    """Register an agent; with `key`, also its key pair (generated: the private key is in the
    answer, once) or its own public key."""
    if body.key is not None:
        _check_key_body(tr, body.key)  # a bad key refuses the whole registration
    agent = tr.registry.register_agent(
        body.name,
        owner=body.owner,
        purpose=body.purpose,
        environment=body.environment,
        entitlements=entitlements_in(body.entitlements),
    )
    out = agent_out(agent)
    if body.key is not None:
        out.update(_add_keys(tr, agent.id, body.key))
    return JSONResponse(out, status_code=201, headers={"Cache-Control": "no-store"})


def _check_key_body(tr: Any, body: m.AgentKeyIn) -> None:
    given = sum((body.generate, body.public_key is not None, body.jwks is not None))
    if given != 1:
        raise InvalidInput("give exactly one of `generate`, `public_key` or `jwks`")
    tr.identity.check_public(body.public_key, body.jwks)


def _add_keys(tr: Any, agent_id: str, body: m.AgentKeyIn) -> dict[str, Any]:
    if body.generate:
        key, private_pem = tr.identity.create_key(agent_id)
        return {"keys": [agent_key_out(key)], "private_key": private_pem}
    if body.jwks is not None:
        keys = tr.identity.add_jwks(agent_id, body.jwks)
    else:
        keys = [tr.identity.add_key(agent_id, body.public_key)]
    return {"keys": [agent_key_out(k) for k in keys], "private_key": None}


def agent_key_out(key: AgentKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "agent": key.agent_id,
        "alg": key.jwk.get("alg"),
        "source": key.source,
        "status": "active" if key.active() else "revoked",
        "created_at": ts(key.created_at),
        "revoked_at": ts(key.revoked_at),
    }


@router.post("/agents/{agent}/keys", response_model=m.AgentKeysOut, status_code=201)
def add_agent_keys(
    agent: str, body: m.AgentKeyIn, tr: Any = Depends(tribune), _: Caller = admin
) -> JSONResponse:
    """Give an agent a key pair (generated: the private key is in the answer, once) or bind
    its own public key or JWKS."""
    _check_key_body(tr, body)
    found = tr.registry.resolve_agent(agent)
    return JSONResponse(
        _add_keys(tr, found.id, body), status_code=201, headers={"Cache-Control": "no-store"}
    )


@router.get("/agents/{agent}/keys", response_model=list[m.AgentKeyOut])
def list_agent_keys(
    agent: str,
    tr: Any = Depends(tribune),
    caller: Caller = Depends(allow(Role.ADMIN, Role.AUDITOR, Role.AGENT)),
) -> list[dict[str, Any]]:
    found = tr.registry.resolve_agent(agent)
    if caller.role is Role.AGENT and found.id != caller.agent_id:
        raise UnknownAgent(f"unknown agent `{agent}`")
    return [agent_key_out(k) for k in tr.identity.list_keys(found.id)]


@router.delete("/agents/{agent}/keys/{kid}", response_model=m.AgentKeyOut)
def revoke_agent_key(
    agent: str, kid: str, tr: Any = Depends(tribune), _: Caller = admin
) -> dict[str, Any]:
    return agent_key_out(tr.identity.revoke_key(agent, kid))


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
