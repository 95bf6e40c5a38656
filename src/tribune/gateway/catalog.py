"""The gateway's catalog: upstream tools under namespaced names, routed back to where they live.

Pure: names, routes, risk facts from MCP annotations and the argument check, no I/O. A tool
``get_time`` of upstream ``time`` is ``time.get_time`` to agents, to policy and in the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp.types as types
from jsonschema import exceptions as schema_errors
from jsonschema import validators

from tribune.core.model import NAME_RE, RiskFacts, Tool

log = logging.getLogger(__name__)
MAX_ERROR_TEXT = 300


def namespaced(upstream: str, tool: str) -> str:
    return f"{upstream}.{tool}"


def risk_from_annotations(annotations: types.ToolAnnotations | None) -> RiskFacts:
    """Risk facts per MCP's defaults: a hint left out counts as not read-only, destructive,
    not idempotent and open-world. Output of an open-world tool is untrusted (it comes from
    outside the organisation), so it taints the task unless configuration says otherwise."""
    a = annotations or types.ToolAnnotations()
    read_only = a.read_only_hint is True
    open_world = a.open_world_hint is not False
    return RiskFacts(
        read_only=read_only,
        # the spec: destructive and idempotent are meaningful only when not read-only
        destructive=False if read_only else a.destructive_hint is not False,
        idempotent=a.idempotent_hint is True,
        open_world=open_world,
        untrusted_output=open_world,
    )


def annotations_of(risk: RiskFacts, title: str | None) -> types.ToolAnnotations:
    """The effective risk facts (configuration over hints) as MCP annotations, for agents."""
    return types.ToolAnnotations(
        title=title,
        read_only_hint=risk.read_only,
        destructive_hint=risk.destructive,
        idempotent_hint=risk.idempotent,
        open_world_hint=risk.open_world,
    )


@dataclass(frozen=True, slots=True)
class Route:
    """Where a namespaced tool lives: its upstream, its own name there, and how it looks."""

    name: str  # namespaced
    upstream: str
    original: str
    tool: types.Tool  # as the upstream lists it
    validator: Any = field(repr=False, compare=False)  # a jsonschema validator of its input

    def registered(self) -> Tool:
        """The Tribune tool this route registers when nothing defines it yet."""
        return Tool(
            name=self.name,
            description=self.tool.description or "",
            input_schema=dict(self.tool.input_schema),
            risk=risk_from_annotations(self.tool.annotations),
            # tasks and entitlements may name a whole upstream as a tool group
            groups=(self.upstream,),
        )

    def check(self, arguments: Mapping[str, Any]) -> str | None:
        """Why ``arguments`` fail the tool's input schema, or None when they pass."""
        error = schema_errors.best_match(self.validator.iter_errors(dict(arguments)))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        text = f"{error.message} (at `/{where}`)" if where else error.message
        return text[:MAX_ERROR_TEXT]


def route(upstream: str, tool: types.Tool) -> Route | None:
    """A route for ``tool`` of ``upstream``, or None (logged) when it cannot be offered: its
    namespaced name is not a valid Tribune name, or its input schema is not a valid schema."""
    name = namespaced(upstream, tool.name)
    if not NAME_RE.match(name):
        log.warning(
            "upstream `%s`: tool name `%.80s` cannot be namespaced; skipped", upstream, name
        )
        return None
    schema = dict(tool.input_schema)
    try:
        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        cls.check_schema(schema)
        validator = cls(schema)
    except (schema_errors.SchemaError, schema_errors.UnknownType, TypeError, ValueError):
        log.warning("upstream `%s`: tool `%s` has an invalid input schema; skipped", upstream, name)
        return None
    return Route(name, upstream, tool.name, tool, validator)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every namespaced tool the gateway offers, by name."""

    routes: Mapping[str, Route] = field(default_factory=dict)

    def get(self, name: str) -> Route | None:
        return self.routes.get(name) if isinstance(name, str) else None

    def replaced(self, upstream: str, tools: Iterable[types.Tool]) -> Catalog:
        """This catalog with ``upstream``'s tools replaced by ``tools``."""
        kept = {n: r for n, r in self.routes.items() if r.upstream != upstream}
        for tool in tools:
            found = route(upstream, tool)
            if found is None:
                continue
            if found.name in kept:
                log.warning("upstream `%s` lists `%s` twice; first kept", upstream, found.name)
                continue
            kept[found.name] = found
        return Catalog(dict(sorted(kept.items())))

    def of(self, upstream: str) -> list[Route]:
        return [r for r in self.routes.values() if r.upstream == upstream]
