"""Decisions: check one call, and record what happened to it afterwards.

The decision route is the hot path: it runs inline on the event loop (a decision is a few
hundred microseconds of CPU and local I/O; a thread hop would cost more) and writes its JSON
with orjson. Throughput comes from worker processes, not threads.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tribune.core.model import ResultStatus, Role
from tribune.http import models as m
from tribune.http import waiting
from tribune.http.convert import verdict_out
from tribune.http.metrics import observe_decision
from tribune.http.security import allow, own_task, tribune
from tribune.services.access import Caller

router = APIRouter(prefix="/v1", tags=["decisions"], responses=m.ERROR_RESPONSES)
actors = Depends(allow(Role.ADMIN, Role.AGENT))


def json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.post(
    "/decisions",
    response_model=m.VerdictOut,
    responses={503: {"model": m.Problem, "description": "store unavailable: nothing may run"}},
)
async def decide(
    request: Request, body: m.DecisionIn, tr: Any = Depends(tribune), caller: Caller = actors
) -> Response:
    """Decide one call and record its intent and decision durably before answering. Run the
    call only when `allowed` is true, then report its result to `/v1/actions/{id}/result`.
    A call that needs approval answers `approval_required` with its `ticket`; with `wait`, the
    answer is held until the ticket is decided (then the call is decided again) or the wait
    ends. Retrying the same call later finds an approved ticket by itself."""
    started = time.perf_counter()
    own_task(tr, caller, body.task)
    verdict, ticket = await waiting.decide(tr, body)
    observe_decision(verdict.decision.effect.value, "decisions", time.perf_counter() - started)
    annotate = getattr(request.app.state, "annotate", None)
    if annotate is not None:  # tracing on
        annotate(verdict)
    return json(verdict_out(verdict, ticket))


@router.post("/actions/{action_id}/result", response_model=m.ResultOut, status_code=201)
def record_result(
    action_id: str, body: m.ResultIn, tr: Any = Depends(tribune), caller: Caller = actors
) -> dict[str, Any]:
    """Record the outcome of an allowed call: once per action, by the agent that asked."""
    verdict = tr.governor.verdict_of(action_id)
    own_task(tr, caller, verdict.task_id)
    record = tr.governor.finish(
        verdict,
        ResultStatus(body.status),
        output=body.output,
        duration_ms=body.duration_ms,
        error=body.error,
    )
    return {"action_id": action_id, "status": body.status, "seq": record.seq}
