"""Leases (credentials minted for a task or one call), the kill switch, and the OAuth token
endpoints downstream services use: RFC 7662 introspection and RFC 7009 revocation."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from tribune.core.model import Lease, Role
from tribune.errors import InvalidInput
from tribune.http import models as m
from tribune.http.convert import ts
from tribune.http.security import allow, own_task, tribune
from tribune.services.access import Caller

router = APIRouter(prefix="/v1", tags=["credentials"], responses=m.ERROR_RESPONSES)
actors = Depends(allow(Role.ADMIN, Role.AGENT))
readers = Depends(allow(Role.ADMIN, Role.AUDITOR, Role.AGENT))
admin = Depends(allow(Role.ADMIN))
MAX_FORM = 32 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def lease_out(lease: Lease) -> dict[str, Any]:
    return {
        "id": lease.id,
        "task": lease.task_id,
        "agent": lease.agent_id,
        "backend": lease.backend,
        "source": lease.scope.get("source"),
        "action": lease.action_id,
        "handle": lease.handle,
        "state": lease.state.value,
        "issued_at": ts(lease.issued_at),
        "expires_at": ts(lease.expires_at),
        "max_expires_at": ts(lease.max_expires_at),
        "renewals": lease.renewals,
        "ended_at": ts(lease.ended_at),
        "end_reason": lease.end_reason or None,
    }


def _agent(caller: Caller) -> str | None:
    return caller.agent_id if caller.role is Role.AGENT else None


def _own_lease(tr: Any, caller: Caller, lease_id: str) -> Lease:
    lease: Lease = tr.leases.get(lease_id, agent_id=_agent(caller))
    if caller.role is Role.AGENT:
        own_task(tr, caller, lease.task_id)
    return lease


@router.post("/tasks/{task_id}/leases", response_model=m.LeaseIssued, status_code=201)
def issue_lease(
    task_id: str, body: m.LeaseIn, tr: Any = Depends(tribune), caller: Caller = actors
) -> JSONResponse:
    """Mint a credential for the task, or for one allowed call of it (`action`)."""
    own_task(tr, caller, task_id)
    issued = tr.leases.issue(
        task_id, body.source, action_id=body.action, ttl=body.ttl, agent_id=_agent(caller)
    )
    out = {**lease_out(issued.lease), "credential": issued.credential}
    return JSONResponse(out, status_code=201, headers=NO_STORE)


@router.get("/tasks/{task_id}/leases", response_model=list[m.LeaseOut])
def list_leases(
    task_id: str, active: bool = False, tr: Any = Depends(tribune), caller: Caller = readers
) -> list[dict[str, Any]]:
    if caller.role is Role.AGENT:
        own_task(tr, caller, task_id)
    return [lease_out(x) for x in tr.leases.list(task_id, active_only=active)]


@router.get("/leases/{lease_id}", response_model=m.LeaseOut)
def get_lease(
    lease_id: str, tr: Any = Depends(tribune), caller: Caller = readers
) -> dict[str, Any]:
    return lease_out(_own_lease(tr, caller, lease_id))


@router.post("/leases/{lease_id}/renew", response_model=m.LeaseIssued)
def renew_lease(
    lease_id: str, body: m.LeaseRenewIn, tr: Any = Depends(tribune), caller: Caller = actors
) -> JSONResponse:
    """Extend a live lease within its maximum; a new credential where the backend makes one."""
    _own_lease(tr, caller, lease_id)
    renewed = tr.leases.renew(lease_id, body.ttl, agent_id=_agent(caller))
    return JSONResponse(
        {**lease_out(renewed.lease), "credential": renewed.credential}, headers=NO_STORE
    )


@router.post("/leases/{lease_id}/revoke", response_model=m.LeaseOut)
def revoke_lease(
    lease_id: str,
    body: m.LeaseRevokeIn | None = None,
    tr: Any = Depends(tribune),
    caller: Caller = actors,
) -> dict[str, Any]:
    _own_lease(tr, caller, lease_id)
    reason = body.reason if body is not None else "requested"
    return lease_out(tr.leases.revoke(lease_id, reason, agent_id=_agent(caller)))


@router.post("/revocations", response_model=m.RevocationOut)
def kill_switch(
    body: m.RevocationIn, tr: Any = Depends(tribune), caller: Caller = admin
) -> dict[str, Any]:
    """The kill switch: end the chosen tasks and revoke their tokens and leases at once."""
    done = tr.killswitch.revoke(
        task=body.task,
        agent=body.agent,
        owner=body.owner,
        everything=body.all,
        suspend=body.suspend,
        actor=caller.principal,
    )
    return {
        "tasks_ended": done.tasks_ended,
        "leases_revoked": done.leases_revoked,
        "leases_failed": done.leases_failed,
        "agents_suspended": done.agents_suspended,
    }


# ----------------------------------------------------------------------------- OAuth endpoints


async def _form_token(request: Request) -> str | None:
    """The ``token`` field of an ``application/x-www-form-urlencoded`` body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput("send the token as application/x-www-form-urlencoded")
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise InvalidInput("form too large")
    try:
        fields = parse_qs(raw.decode("ascii"), strict_parsing=bool(raw), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("malformed form body") from None
    tokens = fields.get("token", [])
    if len(tokens) > 1:
        raise InvalidInput("one `token` only")
    return tokens[0] if tokens else None


@router.post(
    "/oauth/introspect",
    tags=["oauth"],
    response_model=dict[str, Any],
    dependencies=[Depends(allow(Role.ADMIN, Role.RESOURCE))],
)
async def introspect(request: Request, tr: Any = Depends(tribune)) -> JSONResponse:
    """RFC 7662: is this Tribune token (task or downstream) active, and what does it say?
    Anything that does not verify, has expired or was revoked is `{"active": false}`."""
    token = await _form_token(request)
    if token is None:
        raise InvalidInput("`token` is required")
    return JSONResponse(tr.introspection.introspect(token), headers=NO_STORE)


@router.post(
    "/oauth/revoke",
    tags=["oauth"],
    dependencies=[Depends(allow(Role.ADMIN, Role.RESOURCE, Role.AGENT))],
)
async def revoke_token(request: Request, tr: Any = Depends(tribune)) -> JSONResponse:
    """RFC 7009: revoke a downstream token (its lease) or a task token (its task ends).
    Answers 200 whether or not the token was valid, as the RFC asks."""
    token = await _form_token(request)
    if token is None:
        raise InvalidInput("`token` is required")
    tr.introspection.revoke(token, caller=request.state.caller)
    return JSONResponse({}, headers=NO_STORE)
