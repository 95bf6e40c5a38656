"""Bad requests get a 4xx with a stable code; nothing stored is lost; never a 5xx."""

from __future__ import annotations

from .conftest import Api


def test_unknown_fields_are_rejected(api: Api) -> None:
    task = api.start()
    body = {"task": task["id"], "tool": "crm.read", "arguments": {}, "sneaky": True}
    response = api.post("helper", "/v1/decisions", body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert "sneaky" in response.json()["message"]


def test_malformed_json_and_wrong_types(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    response = api.call("helper", "POST", "/v1/decisions", content=b"{not json", headers=headers)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"
    response = api.post("helper", "/v1/decisions", {"task": 5, "tool": ["x"]})
    assert response.status_code == 422
    response = api.post("helper", "/v1/decisions", [1, 2, 3])
    assert response.status_code == 422


def test_sizes_are_bounded(api: Api) -> None:
    task = api.start()
    huge = {"task": task["id"], "tool": "crm.read", "arguments": {"x": "a" * (3 << 20)}}
    before = len(api.world.records())
    response = api.post("helper", "/v1/decisions", huge)
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    assert len(api.world.records()) == before
    response = api.post("helper", "/v1/tasks", {"purpose": "p" * 5000})
    assert response.status_code == 422
    response = api.post("helper", "/v1/tasks", {"purpose": "p", "tools": ["t"] * 1001})
    assert response.status_code == 422


def test_streamed_body_over_the_limit_is_cut_off(api: Api) -> None:
    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield b" " * (64 << 10)

    response = api.call(
        "helper",
        "POST",
        "/v1/decisions",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_bad_names_and_unknown_things(api: Api) -> None:
    assert api.call("admin", "PUT", "/v1/tools/bad name!", json={}).status_code == 422
    assert api.get("admin", "/v1/tools/nope").json()["code"] == "unknown_tool"
    assert api.get("admin", "/v1/agents/nope").json()["code"] == "unknown_agent"
    assert api.get("admin", "/v1/tasks/nope").json()["code"] == "unknown_task"
    assert api.get("admin", "/v1/nothing-here").status_code == 404
    assert api.call("admin", "PATCH", "/v1/tasks").status_code == 405


def test_a_bad_request_changes_nothing_stored(api: Api) -> None:
    task = api.start()
    before = api.world.records()
    for body in (
        {"task": task["id"]},
        {"tool": "x"},
        {"task": task["id"], "tool": "crm.read", "arguments": "x"},
    ):
        assert api.post("helper", "/v1/decisions", body).status_code == 422
    assert api.world.records() == before
