"""The OpenID AuthZEN Authorization API 1.0 shape, so gateways and other enforcement points can
ask Tribune as a standard PDP.

    POST /access/v1/evaluation  {subject: {type: "agent", id}, action: {name: "call"},
                                 resource: {type: "tool", id, properties: {arguments}},
                                 context: {task, environment?, expects_result?}}
    -> {decision: bool, context: {action_id, effect, policy_ids, reasons, approval?}}

Each evaluation is a governed decision with its intent and decision recorded. ``approval``
required reads as ``decision: false`` with the requirement in the context. ``expects_result``
defaults to false here (a PEP asking a PDP); a PEP that will report the result sets it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from tribune.core.model import Role
from tribune.errors import Forbidden, InvalidInput
from tribune.http import models as m
from tribune.http.metrics import observe_decision
from tribune.http.security import allow, own_task, tribune
from tribune.services.access import Caller

router = APIRouter(prefix="/access/v1", tags=["authzen"], responses=m.ERROR_RESPONSES)
actors = Depends(allow(Role.ADMIN, Role.AGENT))
ACTIONS = frozenset({"call", "tools/call", "can_call"})


def evaluate(tr: Any, caller: Caller, req: m.AzEvaluationIn) -> dict[str, Any]:
    if req.subject.type.lower() not in ("agent", "workload"):
        raise InvalidInput("`subject.type` must be `agent`")
    if req.action.name not in ACTIONS:
        raise InvalidInput(f"unknown action `{req.action.name}`", hint="use `call`")
    if req.resource.type.lower() not in ("tool", "mcp_tool"):
        raise InvalidInput("`resource.type` must be `tool`")
    task_id = req.context.get("task")
    if not isinstance(task_id, str) or not task_id or len(task_id) > 128:
        raise InvalidInput("`context.task` must name the task this call belongs to")
    arguments = req.resource.properties.get("arguments", {})
    if not isinstance(arguments, dict):
        raise InvalidInput("`resource.properties.arguments` must be an object")
    environment = req.context.get("environment")
    if environment is not None and not isinstance(environment, str):
        raise InvalidInput("`context.environment` must be text")
    task = own_task(tr, caller, task_id)
    if tr.registry.resolve_agent(req.subject.id).id != task.agent_id:
        raise Forbidden("`subject` is not the agent of `context.task`")
    started = time.perf_counter()
    verdict = tr.governor.decide(
        task_id,
        req.resource.id,
        arguments,
        environment=environment,
        expects_result=req.context.get("expects_result") is True,
    )
    decision = verdict.decision
    observe_decision(decision.effect.value, "authzen", time.perf_counter() - started)
    context: dict[str, Any] = {
        "action_id": verdict.action_id,
        "effect": decision.effect.value,
        "policy_ids": list(decision.policy_ids),
        "reasons": list(decision.reasons) or [e.message for e in decision.errors],
    }
    if decision.approval is not None:
        context["approval"] = decision.to_dict()["approval"]
    return {"decision": verdict.allowed, "context": context}


@router.post("/evaluation", response_model=m.AzEvaluationOut)
async def evaluation(
    body: m.AzEvaluationIn, tr: Any = Depends(tribune), caller: Caller = actors
) -> Response:
    return Response(orjson.dumps(evaluate(tr, caller, body)), media_type="application/json")


@router.post("/evaluations", response_model=m.AzEvaluationsOut)
async def evaluations(
    body: m.AzEvaluationsIn, tr: Any = Depends(tribune), caller: Caller = actors
) -> Response:
    """Several evaluations: top-level fields are defaults each item may replace. Semantics per
    `options.evaluations_semantic`; with no items, the top level is one evaluation."""
    items = body.evaluations or [m.AzPartial()]
    semantic = body.options.evaluations_semantic
    out: list[dict[str, Any]] = []
    for item in items:
        merged = m.AzEvaluationIn(
            subject=_need(item.subject or body.subject, "subject"),
            action=_need(item.action or body.action, "action"),
            resource=_need(item.resource or body.resource, "resource"),
            context=item.context if item.context is not None else (body.context or {}),
        )
        result = evaluate(tr, caller, merged)
        out.append(result)
        if (semantic == "deny_on_first_deny" and not result["decision"]) or (
            semantic == "permit_on_first_permit" and result["decision"]
        ):
            break
    return Response(orjson.dumps({"evaluations": out}), media_type="application/json")


def _need(value: Any, name: str) -> Any:
    if value is None:
        raise InvalidInput(f"`{name}` is missing (neither in the item nor at the top level)")
    return value
