"""Schemathesis over the API's own OpenAPI document, in-process (ASGI): no server errors, and
every response matches the schema.

Each operation is fuzzed (coverage, examples and random phases; valid and invalid input) with
an admin's key, then the agent routes with an agent's key, against a real app over a SQLite
home. Generated cases are sometimes pointed at real ids (a live task, an allowed action, a
registered agent and tool) so that some requests get past validation into the services.

Every check runs but ``positive_data_acceptance``: a schema-valid request may still break a
domain rule (a policy that does not compile, an owner that is not ``user:``/``group:``), and a
4xx is the right answer there.

CI runs a few examples per operation; ``-m slow`` runs 200.

The schema is loaded at import and bound to ``LIVE``, an ASGI app that forwards to the app the
module fixture builds: schemathesis's lazy ``from_fixture`` loader fails on pytest 9 (it sets
``request.node._nodeid``), and one home for the whole run keeps it quick.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi import checks
from starlette.testclient import TestClient

from services.conftest import CONFIG, TOOLS
from tribune.bootstrap import init_home, open_tribune
from tribune.core.model import Entitlements, Limits
from tribune.http.app import create_app

Scope = MutableMapping[str, Any]


class Live:
    """The app under test, its keys and some real ids. The schema is bound to this object at
    import; the ``live`` fixture puts a real app behind it."""

    def __init__(self) -> None:
        self.app: Any = create_app(None)  # serves /openapi.json, which needs no store
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


LIVE = Live()
schema = schemathesis.openapi.from_asgi("/openapi.json", LIVE)

EXCLUDED = [checks.positive_data_acceptance]
AGENT_ROUTES = {
    "GET /v1/agents/{agent}",
    "GET /v1/tools",
    "GET /v1/tools/{name}",
    "POST /v1/tasks",
    "GET /v1/tasks",
    "GET /v1/tasks/{task_id}",
    "POST /v1/tasks/{task_id}/end",
    "POST /v1/decisions",
    "POST /v1/actions/{action_id}/result",
    "GET /v1/me",
    "POST /access/v1/evaluation",
    "POST /access/v1/evaluations",
}

FEW = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
MANY = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("schemathesis")
    home = base / "home"
    home.mkdir()
    (home / "tribune.toml").write_text(CONFIG.format(url=f"sqlite://{base / 'tribune.db'}"))
    init_home(home)
    tr = open_tribune(home)
    _populate(tr)
    previous = LIVE.app
    LIVE.app = create_app(tr)
    try:
        yield LIVE
    finally:
        LIVE.app = previous
        tr.close()


def _populate(tr: Any) -> None:
    reg = tr.registry
    reg.add_group("approvers")
    reg.add_user("alice", email="alice@acme.com", groups=("approvers",))
    for tool in TOOLS:
        reg.register_tool(tool)
    names = frozenset(t.name for t in TOOLS)
    for name in ("helper", "spare"):
        reg.register_agent(
            name,
            owner="user:alice",
            purpose="customer support",
            environment="development",
            entitlements=Entitlements(
                tools=names,
                environments=frozenset({"development"}),
                limits=Limits(max_amount=1000),
            ),
        )
    task = tr.start_task("helper", purpose="help a customer", tools=sorted(names))
    spare_task = tr.start_task("helper", purpose="to be ended", tools=["crm.read"])
    verdict = tr.governor.decide(task.id, "crm.read", {"customer_id": "c-1"})
    assert verdict.allowed
    spare_key, _ = tr.access.create_key("user:alice", "auditor")
    LIVE.tokens = {
        "admin": tr.access.ensure_admin(),
        "agent": tr.access.create_key("agent:helper", "agent")[1],
    }
    LIVE.ids = {
        "task": task.id,
        "spare_task": spare_task.id,
        "action": verdict.action_id,
        "version": tr.store.active_policy_version().id,
        "spare_key": spare_key.id,
    }


# ----------------------------------------------------------------------------- realistic ids

# Path parameters pointed at real things (a key of LIVE.ids, or the value itself). Mutations go
# to spares, so the live task, agent and keys stay usable for the rest of the run.
REAL_PATHS: dict[str, dict[str, str]] = {
    "GET /v1/agents/{agent}": {"agent": "helper"},
    "PUT /v1/agents/{agent}/status": {"agent": "spare"},
    "GET /v1/tools/{name}": {"name": "crm.read"},
    "PUT /v1/tools/{name}": {"name": "scratch.tool"},
    "GET /v1/tasks/{task_id}": {"task_id": "task"},
    "POST /v1/tasks/{task_id}/end": {"task_id": "spare_task"},
    "POST /v1/actions/{action_id}/result": {"action_id": "action"},
    "POST /v1/policies/{version_id}/activate": {"version_id": "version"},
    "DELETE /v1/keys/{key_id}": {"key_id": "spare_key"},
}


def _realistic(case: Any) -> Any:
    label = case.operation.label
    for param, value in REAL_PATHS.get(label, {}).items():
        case.path_parameters[param] = LIVE.ids.get(value, value)
    body = case.body
    if not isinstance(body, dict):
        return case
    if label == "POST /v1/decisions":
        body.update(task=LIVE.ids["task"], tool="crm.read")
    elif label == "POST /v1/tasks":
        body.update(
            agent="helper", tools=["crm.read"], tool_groups=[], environment=None, open_scope=False
        )
        body.pop("limits", None)
    elif label in ("POST /access/v1/evaluation", "POST /access/v1/evaluations"):
        resource = body.get("resource")
        properties = resource.get("properties") if isinstance(resource, dict) else None
        arguments = properties.get("arguments") if isinstance(properties, dict) else None
        arguments = arguments if isinstance(arguments, dict) else {}
        context = body.get("context")
        context = context if isinstance(context, dict) else {}
        body.update(
            subject={"type": "agent", "id": "helper"},
            action={"name": "call"},
            resource={"type": "tool", "id": "crm.read", "properties": {"arguments": arguments}},
            context={**context, "task": LIVE.ids["task"]},
        )
    return case


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Half of the valid cases go to real ids (only valid ones: a mutation stays invalid)."""
    meta = case.meta
    if meta is None or meta.generation.mode is not GenerationMode.POSITIVE:
        return st.just(case)
    return st.booleans().map(lambda real: _realistic(case) if real else case)


# ----------------------------------------------------------------------------- keys


# Cases are built at collection, before the keys exist: they carry the role's name, and
# `_check` swaps in the key. A case testing a missing or broken header gets neither.


class AdminKey:
    role = "admin"

    def get(self, case: Any, context: Any) -> str:
        return self.role

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers["Authorization"] = f"{ROLE_PREFIX}{data}"


class AgentKey(AdminKey):
    role = "agent"


ROLE_PREFIX = "Bearer role:"


def _check(case: Any) -> None:
    value = case.headers.get("Authorization") if case.headers else None
    if isinstance(value, str) and value.startswith(ROLE_PREFIX):
        case.headers["Authorization"] = f"Bearer {LIVE.tokens[value[len(ROLE_PREFIX) :]]}"
    case.call_and_validate(excluded_checks=EXCLUDED)


agent_schema = schema.include(lambda ctx: ctx.operation.label in AGENT_ROUTES)


@schema.auth(AdminKey, refresh_interval=None)
@schema.parametrize()
@FEW
def test_admin_key(case: Any, live: Live) -> None:
    _check(case)


@agent_schema.auth(AgentKey, refresh_interval=None)
@agent_schema.parametrize()
@FEW
def test_agent_key(case: Any, live: Live) -> None:
    _check(case)


@pytest.mark.slow
@schema.auth(AdminKey, refresh_interval=None)
@schema.parametrize()
@MANY
def test_admin_key_long(case: Any, live: Live) -> None:
    _check(case)


@pytest.mark.slow
@agent_schema.auth(AgentKey, refresh_interval=None)
@agent_schema.parametrize()
@MANY
def test_agent_key_long(case: Any, live: Live) -> None:
    _check(case)


# ----------------------------------------------------------------------------- known gaps


def test_openapi_documents_error_statuses() -> None:
    """Every status the fuzzing saw (and 503 from a store outage) is documented, as a Problem."""
    doc = create_app(None).openapi()
    missing: list[str] = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            label = f"{method.upper()} {path}"
            wanted = {"401", "403", "503"} if op.get("security") else set()
            if op.get("parameters") or "requestBody" in op:
                wanted |= {"400", "422"}  # input that fails the schema, or a domain rule
            if "{" in path or "requestBody" in op or label == "GET /v1/tasks":
                wanted.add("404")  # names something that may not exist
            if "requestBody" in op:
                wanted.add("413")
            if label == "POST /v1/actions/{action_id}/result":
                wanted.add("409")  # a second result for the same action
            for status in sorted(wanted):
                if not {status, f"{status[0]}XX", "default"} & set(responses):
                    missing.append(f"{label}: {status}")
            for status, response in responses.items():
                if status[0] in "45" and label != "GET /readyz":
                    ref = str(response.get("content", {}).get("application/json", {}))
                    if "#/components/schemas/Problem" not in ref:
                        missing.append(f"{label}: {status} is not a Problem")
    assert not missing, "\n".join(missing)


def test_405_names_the_allowed_methods() -> None:
    client = TestClient(create_app(None))
    response = client.request("DELETE", "/healthz")
    assert response.status_code == 405
    assert "GET" in response.headers.get("allow", "")


def test_request_bodies_reject_numbers_for_booleans(live: Live) -> None:
    client = TestClient(live.app, raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {live.tokens['admin']}"}
    body = {"extractors": [{"kind": "url", "pointer": "/url", "required": 0}]}
    response = client.put("/v1/tools/scratch.lax", json=body, headers=headers)
    assert response.status_code == 422, response.text


def test_audit_query_rejects_a_number_for_a_date_time(live: Live) -> None:
    client = TestClient(live.app, raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {live.tokens['admin']}"}
    response = client.get("/v1/audit/records?until=0.5", headers=headers)
    assert response.status_code == 422, response.text
