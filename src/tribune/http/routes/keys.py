"""API keys: create (the token is shown once), list, revoke; and who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from tribune.core.model import ApiKey, Role
from tribune.http import models as m
from tribune.http.convert import ts
from tribune.http.security import allow, authenticate, tribune
from tribune.services.access import Caller

router = APIRouter(prefix="/v1", tags=["access"], responses=m.ERROR_RESPONSES)
admin = Depends(allow(Role.ADMIN))


def key_out(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "principal": key.principal,
        "role": key.role.value,
        "created_at": ts(key.created_at),
        "expires_at": ts(key.expires_at),
        "revoked_at": ts(key.revoked_at),
        "note": key.note,
    }


@router.get("/me")
async def whoami(caller: Caller = Depends(authenticate)) -> dict[str, str]:
    """The authenticated caller: key id, principal and role."""
    return {"key_id": caller.key_id, "principal": caller.principal, "role": caller.role.value}


@router.get("/keys", response_model=list[m.KeyOut])
def list_keys(tr: Any = Depends(tribune), _: Caller = admin) -> list[dict[str, Any]]:
    return [key_out(k) for k in tr.access.list()]


@router.post("/keys", response_model=m.NewKeyOut, status_code=201)
def create_key(body: m.KeyIn, tr: Any = Depends(tribune), _: Caller = admin) -> dict[str, Any]:
    key, token = tr.access.create_key(body.principal, body.role, note=body.note, ttl=body.ttl)
    return {**key_out(key), "token": token}


@router.delete("/keys/{key_id}", response_model=m.KeyOut)
def revoke_key(key_id: str, tr: Any = Depends(tribune), _: Caller = admin) -> dict[str, Any]:
    return key_out(tr.access.revoke(key_id))
