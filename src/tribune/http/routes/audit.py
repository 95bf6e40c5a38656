"""The audit log: query with filters (keyset pages by seq) and verify the chain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from tribune.core.model import RecordKind, Role
from tribune.http import models as m
from tribune.http.convert import record_out
from tribune.http.security import allow, tribune
from tribune.services.access import Caller

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=m.ERROR_RESPONSES)
auditors = Depends(allow(Role.ADMIN, Role.AUDITOR))

KindName = RecordKind  # query values are the record kinds' names


@router.get("/records", response_model=m.RecordPage)
def records(
    after: Annotated[int, Query(ge=0, le=2**62, description="records with seq above this")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    kind: Annotated[list[KindName] | None, Query(max_length=10)] = None,
    task: Annotated[str | None, Query(max_length=128)] = None,
    agent: Annotated[str | None, Query(max_length=512)] = None,
    action: Annotated[str | None, Query(max_length=128)] = None,
    since: m.IsoTime | None = None,
    until: m.IsoTime | None = None,
    tr: Any = Depends(tribune),
    _: Caller = auditors,
) -> dict[str, Any]:
    """Records in chain order, filtered; follow `next_after` for the next page."""
    found = tr.store.find_records(
        after_seq=after,
        limit=limit,
        kinds=tuple(kind or ()),
        task_id=task,
        agent_id=agent,
        action_id=action,
        since=since,
        until=until,
    )
    return {
        "records": [record_out(r) for r in found],
        "next_after": found[-1].seq if len(found) == limit else None,
    }


@router.post("/verify", response_model=m.VerifyOut)
def verify(tr: Any = Depends(tribune), _: Caller = auditors) -> dict[str, Any]:
    """Check the whole chain: hashes, links, indexed columns and signed checkpoints."""
    report = tr.audit.verify()
    return {
        "ok": report.ok,
        "checked": report.checked,
        "checkpoints_verified": report.checkpoints_verified,
        "first_bad_seq": report.first_bad_seq,
        "problem": report.problem,
        "message": report.message,
        "last_seq": report.last_seq,
    }
