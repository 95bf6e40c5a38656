"""Policy versions: the active one, history, validate a candidate, upload and activate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from tribune.core.model import PolicyVersion, Role
from tribune.errors import NotFound
from tribune.http import models as m
from tribune.http.convert import ts
from tribune.http.security import allow, tribune
from tribune.services.access import Caller

router = APIRouter(prefix="/v1/policies", tags=["policies"], responses=m.ERROR_RESPONSES)
admin = Depends(allow(Role.ADMIN))
readers = Depends(allow(Role.ADMIN, Role.AUDITOR))


def version_out(v: PolicyVersion, *, texts: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": v.id,
        "digest": v.digest,
        "created_at": ts(v.created_at),
        "note": v.note,
        "active": v.active,
        "files": sorted(v.files),
    }
    if texts:
        out["texts"] = dict(v.files)
    return out


@router.get("", response_model=list[m.PolicyVersionOut])
def list_versions(tr: Any = Depends(tribune), _: Caller = readers) -> list[dict[str, Any]]:
    return [version_out(v) for v in tr.store.list_policy_versions()]


@router.get("/active", response_model=m.PolicyVersionFull)
def active(tr: Any = Depends(tribune), _: Caller = readers) -> dict[str, Any]:
    version = tr.store.active_policy_version()
    if version is None:
        raise NotFound("no policy version is active", code="no_active_policy")
    return version_out(version, texts=True)


@router.post("/validate", response_model=m.PolicyCheckOut)
def validate(
    body: m.PolicyFilesIn, tr: Any = Depends(tribune), _: Caller = admin
) -> dict[str, Any]:
    """Compile against the schema and run the policy tests; store nothing. A version that does
    not compile answers 422 `policy_invalid` with every problem (file:line)."""
    checked = tr.policies.check_files(body.files)
    return {
        "ok": not checked.failures,
        "policies": len(checked.compiled.policies),
        "tests": len(checked.results),
        "failures": [r.describe() for r in checked.failures],
    }


@router.post("", response_model=m.PolicyVersionOut, status_code=201)
def upload(
    body: m.PolicyVersionIn, tr: Any = Depends(tribune), _: Caller = admin
) -> dict[str, Any]:
    """Validate, test, store and activate a new immutable version. A broken one is refused
    (422) and the active version stays."""
    version = tr.policies.activate_files(
        body.files, note=body.note, allow_untested=body.allow_untested
    )
    stored = tr.store.get_policy_version(version.id) or version
    return version_out(stored)


@router.post("/{version_id}/activate", response_model=m.PolicyVersionOut)
def rollback(version_id: str, tr: Any = Depends(tribune), _: Caller = admin) -> dict[str, Any]:
    """Activate an earlier stored version again."""
    version = tr.policies.rollback(version_id)
    stored = tr.store.get_policy_version(version.id) or version
    return version_out(stored)
