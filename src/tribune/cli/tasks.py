"""`tribune task start|end|list` and `tribune check`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Column, Table

from tribune.cli.common import (
    EXIT_APPROVAL,
    EXIT_DENY,
    HomeOption,
    console,
    emit_json,
    errors,
    limits,
    opened,
    read_json_arg,
)
from tribune.core.model import Effect, Task
from tribune.errors import InvalidInput
from tribune.services.tasks import ScopeRequest

tasks = typer.Typer(help="Tasks: units of work with a declared intent.", no_args_is_help=True)


def task_dict(task: Task) -> dict[str, Any]:
    s = task.scope
    return {
        "id": task.id,
        "agent": task.agent_id,
        "state": task.state.value,
        "purpose": s.purpose,
        "tools": sorted(s.tools),
        "tool_groups": sorted(s.tool_groups),
        "targets": sorted(s.targets),
        "literals": sorted(s.literal_digests),
        "environment": s.environment,
        "limits": {
            "max_amount": s.limits.max_amount,
            "max_count": s.limits.max_count,
            "max_calls": s.limits.max_calls,
        },
        "open_scope": s.open_scope,
        "created_at": task.created_at.isoformat(),
        "expires_at": task.expires_at.isoformat(),
        "ended_at": task.ended_at.isoformat() if task.ended_at else None,
        "session": {
            "tainted": task.session.tainted,
            "data_read": sorted(task.session.data_read),
            "calls": task.session.calls,
        },
    }


def _literals(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep:
            value = typer.prompt(f"value of literal `{name}`", hide_input=True)
        out[name] = value
    return out


@tasks.command("start")
def task_start(
    agent: str,
    purpose: Annotated[str, typer.Option(help="What the task is for, in plain words.")],
    tool: Annotated[list[str] | None, typer.Option("--tool", help="Tool in scope.")] = None,
    tool_group: Annotated[
        list[str] | None, typer.Option("--tool-group", help="Tool group in scope.")
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Named target: e-mail, host, account.")
    ] = None,
    literal: Annotated[
        list[str] | None,
        typer.Option(
            "--literal", help="NAME (prompted, hidden) or NAME=VALUE a secret must equal."
        ),
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--env", help="Where the task acts (default: the agent's).")
    ] = None,
    max_amount: Annotated[
        int | None, typer.Option(help="Most per call, minor units (default: entitlement).")
    ] = None,
    max_count: Annotated[int | None, typer.Option(help="Most items a call affects.")] = None,
    max_calls: Annotated[int | None, typer.Option(help="Most calls in the task.")] = None,
    open_scope: Annotated[
        bool, typer.Option(help="No declared tools: the agent's entitlements bound it.")
    ] = False,
    ttl: Annotated[int | None, typer.Option(help="Seconds until the task expires.")] = None,
    token: Annotated[
        bool,
        typer.Option(
            "--token",
            help="Also print the task token (as `token`), e.g. for `tribune gateway`.",
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Start a task for AGENT with a declared intent; prints the task as JSON (with --token,
    its task token too: a bearer credential for this task only; keep it out of logs)."""
    issued: dict[str, str] = {}
    with opened(home) as tr:
        task = tr.tasks.start(
            agent,
            ScopeRequest(
                purpose=purpose,
                tools=tuple(tool or ()),
                tool_groups=tuple(tool_group or ()),
                targets=tuple(target or ()),
                literals=_literals(literal),
                environment=environment,
                limits=limits(max_amount, max_count, max_calls),
                open_scope=open_scope,
            ),
            ttl=ttl,
        )
        if token:
            started_by = tr.registry.resolve_agent(task.agent_id)
            issued["token"] = tr.tokens.issue(task, started_by, str(started_by.owner))
    emit_json({**task_dict(task), **issued})


@tasks.command("end")
def task_end(task_id: str, home: HomeOption = None) -> None:
    """End a task: later calls in it are denied."""
    with opened(home) as tr:
        task = tr.tasks.end(task_id)
    emit_json(task_dict(task))


@tasks.command("list")
def task_list(
    agent: Annotated[str | None, typer.Option(help="Only this agent's tasks.")] = None,
    active: Annotated[bool, typer.Option(help="Only active tasks.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    home: HomeOption = None,
) -> None:
    """List tasks, newest first."""
    with opened(home) as tr:
        found = tr.tasks.list(agent_ref=agent, active_only=active)
        now = tr.clock.now()
    if as_json:
        emit_json([task_dict(t) for t in found])
        return
    table = Table(Column("id", no_wrap=True, min_width=36), "agent", "state", "purpose", "expires")
    for t in found:
        state = t.state.value if t.state.value == "ended" or t.is_active(now) else "expired"
        table.add_row(
            t.id,
            t.agent_id.rsplit("/", 1)[-1],
            state,
            t.scope.purpose,
            t.expires_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


def check(
    task: Annotated[str | None, typer.Option(help="Task id.")] = None,
    tool: Annotated[str | None, typer.Option(help="Tool name.")] = None,
    args: Annotated[str, typer.Option(help="Arguments: JSON, `@file` or `-`.")] = "{}",
    environment: Annotated[str | None, typer.Option("--env", help="Where the call acts.")] = None,
    request: Annotated[
        str | None,
        typer.Option(help="Whole request {task, tool, arguments, environment?}: JSON/@file/-."),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Decide one call (recorded in the audit log) and print the decision as JSON.

    Exit code: 0 allow, 3 deny, 4 approval required, 2 bad input.
    """
    with errors():
        if request is not None:
            if task or tool or args != "{}":
                raise InvalidInput("give either --request or --task/--tool/--args, not both")
            raw = read_json_arg(request, "the request")
            if not isinstance(raw, dict):
                raise InvalidInput("the request must be a JSON object")
            unknown = set(raw) - {"task", "tool", "arguments", "environment"}
            if unknown:
                raise InvalidInput(f"unknown field `{sorted(unknown)[0]}` in the request")
            task, tool = raw.get("task"), raw.get("tool")
            arguments = raw.get("arguments", {})
            environment = raw.get("environment", environment)
        else:
            arguments = read_json_arg(args, "--args")
        if not task or not tool:
            raise InvalidInput("a check needs a task and a tool", hint="--task ID --tool NAME")
        if not isinstance(arguments, dict):
            raise InvalidInput("arguments must be a JSON object")
    with opened(home) as tr:
        verdict = tr.governor.decide(
            task, tool, arguments, environment=environment, expects_result=False
        )
    emit_json(
        {
            "action_id": verdict.action_id,
            "action_digest": verdict.action_digest,
            **verdict.decision.to_dict(),
        }
    )
    effect = verdict.decision.effect
    if effect is Effect.DENY:
        raise typer.Exit(EXIT_DENY)
    if effect is Effect.APPROVAL_REQUIRED:
        raise typer.Exit(EXIT_APPROVAL)
