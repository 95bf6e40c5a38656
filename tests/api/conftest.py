"""The HTTP API over the governed ``world`` (SQLite and PostgreSQL): the real app through
FastAPI's test client (in-process ASGI, real request parsing, routing, auth and encoding),
with one API key per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.conftest import World, world
from tribune.http.app import create_app

__all__ = ["Api", "World", "api", "world"]


@dataclass
class Api:
    world: World
    client: TestClient
    app: FastAPI
    tokens: dict[str, str]  # role or agent name -> token

    def call(self, who: str | None, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, who: str | None, path: str, **kwargs: Any) -> Any:
        return self.call(who, "GET", path, **kwargs)

    def post(self, who: str | None, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.call(who, "POST", path, json=json, **kwargs)

    def start(self, who: str = "helper", **scope: Any) -> dict[str, Any]:
        scope.setdefault("purpose", "help a customer")
        scope.setdefault("tools", ["crm.read", "email.send", "web.fetch", "ticket.update"])
        response = self.post(who, "/v1/tasks", scope)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def api(world: World) -> Iterator[Api]:
    tr = world.tr
    tr.registry.add_group("auditors")
    tr.registry.add_user("carol", email="carol@acme.com", groups=("auditors",))
    admin = tr.access.ensure_admin()
    assert admin is not None
    tokens = {
        "admin": admin,
        "auditor": tr.access.create_key("user:carol", "auditor")[1],
        "approver": tr.access.create_key("user:bob", "approver")[1],
        "helper": tr.access.create_key("agent:helper", "agent")[1],
        "ops": tr.access.create_key("agent:ops", "agent")[1],
        "service": tr.access.create_key("service:crm", "resource")[1],
    }
    app = create_app(tr)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(world, client, app, tokens)
