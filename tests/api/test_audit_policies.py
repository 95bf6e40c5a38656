"""The audit log (query, verify) and policy versions (active, validate, upload, roll back)."""

from __future__ import annotations

from tribune.bootstrap import pack_files

from .conftest import Api


def test_audit_query_filters_and_pages(api: Api) -> None:
    task = api.start()
    for n in range(3):
        api.post(
            "helper",
            "/v1/decisions",
            {"task": task["id"], "tool": "crm.read", "arguments": {"customer_id": str(n)}},
        )
    page = api.get("auditor", f"/v1/audit/records?task={task['id']}&kind=decision").json()
    assert [r["kind"] for r in page["records"]] == ["decision"] * 3
    assert page["next_after"] is None
    assert all(r["task_id"] == task["id"] for r in page["records"])
    seqs = [r["seq"] for r in page["records"]]
    assert seqs == sorted(seqs)

    first = api.get("auditor", f"/v1/audit/records?task={task['id']}&limit=2").json()
    assert len(first["records"]) == 2 and first["next_after"] == first["records"][-1]["seq"]
    rest = api.get(
        "auditor", f"/v1/audit/records?task={task['id']}&limit=2&after={first['next_after']}"
    ).json()
    assert {r["seq"] for r in rest["records"]}.isdisjoint({r["seq"] for r in first["records"]})

    action = page["records"][0]["action_id"]
    linked = api.get("auditor", f"/v1/audit/records?action={action}").json()["records"]
    assert [r["kind"] for r in linked] == ["intent", "decision"]
    assert linked[1]["prev_hash"] and linked[1]["hash"]


def test_audit_query_by_time_and_agent(api: Api) -> None:
    api.start()
    records = api.get("auditor", "/v1/audit/records?limit=1000").json()["records"]
    agent = records[-1]["agent_id"]
    mine = api.get("auditor", f"/v1/audit/records?agent={agent}").json()["records"]
    assert mine and all(r["agent_id"] == agent for r in mine)
    future = api.get("auditor", "/v1/audit/records?since=2999-01-01T00:00:00Z").json()
    assert future["records"] == []
    bad = api.get("auditor", "/v1/audit/records?since=yesterday")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"


def test_audit_verify(api: Api) -> None:
    api.start()
    report = api.post("auditor", "/v1/audit/verify").json()
    assert report["ok"] is True and report["checked"] > 0 and report["first_bad_seq"] is None


def test_audit_verify_reports_tampering(api: Api) -> None:
    api.start()
    store = api.world.tr.store
    from sqlalchemy import text

    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(
            text(
                "UPDATE audit_records SET body = replace(body, 'help', 'HELP') "
                "WHERE seq = (SELECT max(seq) FROM audit_records)"
            )
        )
    report = api.post("auditor", "/v1/audit/verify").json()
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(text("UPDATE audit_records SET body = replace(body, 'HELP', 'help')"))
    assert report["ok"] is False and report["first_bad_seq"] is not None
    assert api.post("auditor", "/v1/audit/verify").json()["ok"] is True


def test_policy_active_and_history(api: Api) -> None:
    active = api.get("auditor", "/v1/policies/active").json()
    assert active["active"] is True
    assert any(name.endswith(".cedar") for name in active["files"])
    assert set(active["texts"]) == set(active["files"])
    versions = api.get("auditor", "/v1/policies").json()
    assert [v["id"] for v in versions if v["active"]] == [active["id"]]


def test_policy_validate_reports_problems_with_file_and_line(api: Api) -> None:
    files = pack_files()
    ok = api.post("admin", "/v1/policies/validate", {"files": files}).json()
    assert ok["ok"] is True and ok["policies"] > 0 and ok["tests"] > 0
    broken = {**files, "policies/zz-broken.cedar": "permit(principal, action, resource) when {"}
    response = api.post("admin", "/v1/policies/validate", {"files": broken})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "policy_invalid"
    assert any("zz-broken.cedar" in p for p in body["problems"] + [body["message"]])


def test_policy_upload_activates_and_a_broken_one_changes_nothing(api: Api) -> None:
    before = api.get("admin", "/v1/policies/active").json()["id"]
    broken = {
        **pack_files(),
        "policies/zz.cedar": "forbid(principal, action, resource) when { x };",
    }
    response = api.post("admin", "/v1/policies", {"files": broken, "note": "broken"})
    assert response.status_code == 422
    assert api.get("admin", "/v1/policies/active").json()["id"] == before

    untested = {k: v for k, v in pack_files().items() if not k.startswith("tests/")}
    refused = api.post("admin", "/v1/policies", {"files": untested})
    assert refused.status_code == 422
    made = api.post("admin", "/v1/policies", {"files": untested, "allow_untested": True})
    assert made.status_code == 201, made.text
    assert made.json()["active"] is True
    assert api.get("admin", "/v1/policies/active").json()["id"] == made.json()["id"]

    back = api.post("admin", f"/v1/policies/{before}/activate")
    assert back.status_code == 200
    assert api.get("admin", "/v1/policies/active").json()["id"] == before
    assert api.post("admin", "/v1/policies/nope/activate").status_code == 404
