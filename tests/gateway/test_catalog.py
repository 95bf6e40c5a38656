"""The catalog: namespacing, risk facts from MCP annotations (MCP's defaults when absent), and
the input-schema check that runs before anything is decided or sent."""

from __future__ import annotations

from typing import Any

import mcp.types as types
import pytest

from tribune.core.model import RiskFacts
from tribune.gateway.catalog import Catalog, annotations_of, risk_from_annotations, route

SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "n": {"type": "integer", "minimum": 0}},
    "required": ["path"],
    "additionalProperties": False,
}


def tool(name: str, schema: dict[str, Any] | None = None, **hints: Any) -> types.Tool:
    annotations = types.ToolAnnotations(**hints) if hints else None
    return types.Tool(name=name, input_schema=schema or SCHEMA, annotations=annotations)


def test_unannotated_tools_are_destructive_and_open_world() -> None:
    assert risk_from_annotations(None) == RiskFacts(
        read_only=False, destructive=True, idempotent=False, open_world=True, untrusted_output=True
    )
    assert risk_from_annotations(types.ToolAnnotations(title="x")) == risk_from_annotations(None)


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        (
            {"read_only_hint": True, "open_world_hint": False},
            RiskFacts(read_only=True, destructive=False, open_world=False),
        ),
        # destructive and idempotent mean nothing for a read-only tool
        (
            {"read_only_hint": True, "destructive_hint": True, "open_world_hint": False},
            RiskFacts(read_only=True, destructive=False, open_world=False),
        ),
        (
            {"destructive_hint": False, "idempotent_hint": True, "open_world_hint": False},
            RiskFacts(destructive=False, idempotent=True, open_world=False),
        ),
        # open-world output comes from outside: it taints the task
        (
            {"read_only_hint": True},
            RiskFacts(read_only=True, destructive=False, open_world=True, untrusted_output=True),
        ),
    ],
)
def test_hints_become_risk_facts(hints: dict[str, Any], expected: RiskFacts) -> None:
    assert risk_from_annotations(types.ToolAnnotations(**hints)) == expected


def test_effective_risk_is_shown_as_annotations() -> None:
    shown = annotations_of(RiskFacts(read_only=True, destructive=False), "Read")
    assert shown.read_only_hint is True and shown.destructive_hint is False
    assert shown.open_world_hint is True and shown.title == "Read"


def test_routes_are_namespaced_and_registered_with_the_upstream_as_group() -> None:
    found = route("files", tool("delete", destructive_hint=True, open_world_hint=False))
    assert found is not None
    assert (found.name, found.upstream, found.original) == ("files.delete", "files", "delete")
    registered = found.registered()
    assert registered.name == "files.delete" and registered.groups == ("files",)
    assert registered.risk == RiskFacts(destructive=True, open_world=False)
    assert registered.input_schema == SCHEMA


def test_tools_that_cannot_be_offered_are_skipped() -> None:
    assert route("files", tool("a/b")) is None  # not a Tribune name once namespaced
    assert route("files", tool("x" * 130)) is None  # too long
    assert route("files", tool("bad", {"type": "object", "properties": {"a": {"type": 5}}})) is None


def test_arguments_are_checked_against_the_input_schema() -> None:
    found = route("files", tool("delete"))
    assert found is not None
    assert found.check({"path": "/tmp/x", "n": 2}) is None
    assert "'path' is a required property" in (found.check({}) or "")
    assert "at `/n`" in (found.check({"path": "/x", "n": -1}) or "")
    assert "Additional properties" in (found.check({"path": "/x", "rm": True}) or "")


def test_catalog_replaces_one_upstream_at_a_time() -> None:
    catalog = Catalog().replaced("a", [tool("one"), tool("two")]).replaced("b", [tool("one")])
    assert list(catalog.routes) == ["a.one", "a.two", "b.one"]
    catalog = catalog.replaced("a", [tool("three"), tool("three")])  # listed twice: first kept
    assert list(catalog.routes) == ["a.three", "b.one"]
    assert catalog.get("a.one") is None and catalog.get(5) is None  # type: ignore[arg-type]
    assert [r.name for r in catalog.of("b")] == ["b.one"]
    assert list(catalog.replaced("b", []).routes) == ["a.three"]
