"""`tribune user|group|agent|tool …`: people, agents and tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tribune.cli.common import (
    HomeOption,
    console,
    emit_json,
    err_console,
    errors,
    limits,
    opened,
    read_json_arg,
    write_private,
)
from tribune.core.model import Agent, AgentStatus, Entitlements
from tribune.errors import InvalidInput

users = typer.Typer(help="Humans: owners and approvers.", no_args_is_help=True)
groups = typer.Typer(help="Teams of users.", no_args_is_help=True)
agents = typer.Typer(
    help="Agents: workload identities with an owner and entitlements.", no_args_is_help=True
)
tools = typer.Typer(help="Tools agents call, with their risk facts.", no_args_is_help=True)


@groups.command("add")
def group_add(name: str, description: str = "", home: HomeOption = None) -> None:
    """Add (or update) a group."""
    with opened(home) as tr:
        tr.registry.add_group(name, description)
    console.print(f"group [bold]{name}[/] saved")


@users.command("add")
def user_add(
    name: str,
    email: str = "",
    display_name: str = "",
    group: Annotated[list[str] | None, typer.Option("--group", "-g")] = None,
    home: HomeOption = None,
) -> None:
    """Add (or update) a user and the groups they belong to."""
    with opened(home) as tr:
        tr.registry.add_user(
            name, email=email, display_name=display_name, groups=tuple(group or ())
        )
    console.print(f"user [bold]{name}[/] saved")


@users.command("list")
def user_list(home: HomeOption = None) -> None:
    with opened(home) as tr:
        table = Table("name", "email", "groups")
        for u in tr.store.list_users():
            table.add_row(u.name, u.email, ", ".join(u.groups))
    console.print(table)


def agent_dict(agent: Agent) -> dict[str, Any]:
    ent = agent.entitlements
    return {
        "id": agent.id,
        "name": agent.name,
        "owner": str(agent.owner),
        "purpose": agent.purpose,
        "environment": agent.environment,
        "status": agent.status.value,
        "created_at": agent.created_at.isoformat(),
        "entitlements": {
            "tools": sorted(ent.tools),
            "tool_groups": sorted(ent.tool_groups),
            "environments": sorted(ent.environments),
            "max_amount": ent.limits.max_amount,
            "max_count": ent.limits.max_count,
            "max_calls": ent.limits.max_calls,
            "open_scope": ent.open_scope,
        },
    }


@agents.command("register")
def agent_register(
    name: str,
    owner: Annotated[str, typer.Option(help="`user:NAME` or `group:NAME`.")],
    purpose: Annotated[str, typer.Option(help="What the agent is for.")],
    environment: Annotated[
        str | None,
        typer.Option("--env", help="Where it runs (default: `environment` in tribune.toml)."),
    ] = None,
    tool: Annotated[list[str] | None, typer.Option("--tool", help="Entitled tool.")] = None,
    tool_group: Annotated[
        list[str] | None, typer.Option("--tool-group", help="Entitled tool group.")
    ] = None,
    allow_env: Annotated[
        list[str] | None, typer.Option("--allow-env", help="Entitled environments.")
    ] = None,
    max_amount: Annotated[int | None, typer.Option(help="Per call, minor units.")] = None,
    max_count: Annotated[int | None, typer.Option(help="Most items a call affects.")] = None,
    max_calls: Annotated[int | None, typer.Option(help="Most calls in one task.")] = None,
    open_scope: Annotated[bool, typer.Option(help="May start open-scope tasks.")] = False,
    key_out: Annotated[
        Path | None,
        typer.Option(help="Also make its Ed25519 key pair; write the private key here (0600)."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Register an agent: its SPIFFE id, owner and entitlements (the most it may be granted)."""
    with opened(home) as tr:
        if key_out is not None and key_out.exists():
            raise InvalidInput(f"`{key_out}` exists", hint="choose a new file")
        environment = environment or tr.settings.environment
        agent = tr.registry.register_agent(
            name,
            owner=owner,
            purpose=purpose,
            environment=environment,
            entitlements=Entitlements(
                tools=frozenset(tool or ()),
                tool_groups=frozenset(tool_group or ()),
                environments=frozenset(allow_env or (environment,)),
                limits=limits(max_amount, max_count, max_calls),
                open_scope=open_scope,
            ),
        )
        if key_out is not None:
            key, private_pem = tr.identity.create_key(agent.id)
            write_private(key_out, private_pem)
            err_console.print(
                escape(f"key `{key.kid}` created; private key written to `{key_out}`"),
                highlight=False,
                soft_wrap=True,
            )
    emit_json(agent_dict(agent))


@agents.command("list")
def agent_list(
    as_json: Annotated[bool, typer.Option("--json")] = False, home: HomeOption = None
) -> None:
    """List agents."""
    with opened(home) as tr:
        found = tr.store.list_agents()
    if as_json:
        emit_json([agent_dict(a) for a in found])
        return
    table = Table("name", "owner", "environment", "status", "id")
    for a in found:
        table.add_row(a.name, str(a.owner), a.environment, a.status.value, a.id)
    console.print(table)


@agents.command("show")
def agent_show(name: str, home: HomeOption = None) -> None:
    """Show one agent (by name or SPIFFE id)."""
    with opened(home) as tr:
        emit_json(agent_dict(tr.registry.resolve_agent(name)))


@agents.command("suspend")
def agent_suspend(name: str, home: HomeOption = None) -> None:
    """Suspend an agent: every later call of its tasks is denied."""
    with opened(home) as tr:
        agent = tr.registry.set_status(name, AgentStatus.SUSPENDED)
    console.print(f"agent [bold]{agent.name}[/] suspended")


@agents.command("resume")
def agent_resume(name: str, home: HomeOption = None) -> None:
    """Make a suspended agent active again."""
    with opened(home) as tr:
        agent = tr.registry.set_status(name, AgentStatus.ACTIVE)
    console.print(f"agent [bold]{agent.name}[/] active")


@tools.command("add")
def tool_add(
    spec: Annotated[str, typer.Argument(help="Tool JSON, `@file.json` or `-`.")],
    home: HomeOption = None,
) -> None:
    """Register a tool: {name, description, groups, read_only, destructive, idempotent,
    open_world, untrusted_output, input_schema}. Extractors and overrides live in tribune.toml."""
    from tribune.core.model import RiskFacts, Tool

    with errors():
        raw = read_json_arg(spec, "the tool")
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise InvalidInput("a tool is a JSON object with a `name`")
        risk_keys = ("read_only", "destructive", "idempotent", "open_world", "untrusted_output")
        risk = {k: raw[k] for k in risk_keys if k in raw}
        # MCP: destructiveHint means something only for tools that are not read-only
        if risk.get("read_only") is True:
            risk.setdefault("destructive", False)
        if any(not isinstance(v, bool) for v in risk.values()):
            raise InvalidInput("risk facts must be true or false")
        groups = raw.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise InvalidInput("`groups` must be a list of names")
        schema = raw.get("input_schema") or {}
        if not isinstance(schema, dict):
            raise InvalidInput("`input_schema` must be a JSON object")
        tool = Tool(
            name=raw["name"],
            description=str(raw.get("description", "")),
            input_schema=schema,
            risk=RiskFacts(**risk),
            groups=tuple(groups),
        )
    with opened(home) as tr:
        tr.registry.register_tool(tool)
    console.print(f"tool [bold]{tool.name}[/] registered")


@tools.command("list")
def tool_list(home: HomeOption = None) -> None:
    """List tools with their effective risk facts (overrides applied)."""
    with opened(home) as tr:
        names = sorted({t.name for t in tr.store.list_tools()} | set(tr.settings.tools))
        table = Table("name", "groups", "read-only", "destructive", "open-world", "untrusted out")
        for name in names:
            t = tr.governor.effective_tool(name)
            r = t.risk
            table.add_row(
                name,
                ", ".join(t.groups),
                *(
                    "yes" if v else "no"
                    for v in (r.read_only, r.destructive, r.open_world, r.untrusted_output)
                ),
            )
    console.print(table)
