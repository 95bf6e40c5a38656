"""The `tribune` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tribune.cli.approvals import approvals
from tribune.cli.audit import audit
from tribune.cli.common import HomeOption, console, errors
from tribune.cli.identity import agent_keys, leases, revoke, tokens
from tribune.cli.keys import keys
from tribune.cli.people import agents, groups, tools, users
from tribune.cli.policy import policy
from tribune.cli.secrets import secrets
from tribune.cli.tasks import check, tasks
from tribune.cli.up import up
from tribune.errors import InvalidInput

app = typer.Typer(
    name="tribune",
    help="Runtime governance for AI agents: every tool call decided, recorded and attributable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(users, name="user")
app.add_typer(groups, name="group")
app.add_typer(agents, name="agent")
app.add_typer(tools, name="tool")
app.add_typer(tasks, name="task")
app.add_typer(policy, name="policy")
app.add_typer(audit, name="audit")
app.add_typer(keys, name="keys")
app.add_typer(secrets, name="secrets")
app.add_typer(approvals, name="approvals")
agents.add_typer(agent_keys, name="key")
app.add_typer(tokens, name="tokens")
app.add_typer(leases, name="leases")
app.command("revoke")(revoke)
app.command("check")(check)
app.command("up")(up)


@app.command()
def init(home: HomeOption = None) -> None:
    """Create a Tribune home: tribune.toml, the default policy pack (active), keys, database."""
    from tribune.bootstrap import init_home, resolve_home

    with errors():
        path = init_home(resolve_home(home))
    console.print(f"[green]initialised[/] {path}")
    console.print("  policies/    the default policy pack (edit, then `tribune policy activate`)")
    console.print("  keys/        the audit signing key and the digest secret (keep both private)")
    from tribune.bootstrap import load_settings

    if not load_settings(path).store_url:
        console.print("  tribune.db   the embedded SQLite store")


@app.command()
def gateway(
    home: HomeOption = None,
    http: Annotated[
        str | None,
        typer.Option(
            help="Serve streamable HTTP on HOST:PORT (agents send their task token as "
            "a bearer token); without it, serve MCP over stdio (the task token from "
            "TRIBUNE_TASK_TOKEN)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="A TOML file whose `gateway` table to use instead of the home's."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log upstream events.")] = False,
) -> None:
    """The MCP gateway: every tools/call of an MCP client governed (decided, recorded, then
    forwarded to the upstream servers listed under `gateway.upstreams` in tribune.toml)."""
    try:
        from tribune.gateway.__main__ import main as gateway_main
    except ImportError:
        console.print(
            "error[config_invalid]: the gateway needs the MCP SDK\n"
            "  hint: pip install 'tribune[gateway]'",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1) from None
    argv = [*(["--home", str(home)] if home else []), *(["--http", http] if http else [])]
    argv += [*(["--config", str(config)] if config else []), *(["-v"] if verbose else [])]
    raise typer.Exit(gateway_main(argv))


@app.command()
def demo(
    home: Annotated[
        Path | None, typer.Option("--home", help="Run in this home instead of a temporary one.")
    ] = None,
    scenario: Annotated[
        str, typer.Option(help="`decisions` (the default), `credentials` or `approvals`.")
    ] = "decisions",
) -> None:
    """A scripted tour. `decisions`: allowed read, denied out-of-intent call, approval-required
    send, production destructive action needing two approvers, and a clean audit verify.
    `credentials`: an agent's own key, a task token, credentials lent for the task and for one
    call, all revoked when the task ends; then the kill switch. `approvals`: a production
    deletion held for two approvers; the owner, an outsider and a second vote by the same
    person refused; an approval that covers the exact call only, once."""
    with errors():
        if scenario == "approvals":
            from tribune.cli.demo_approvals import run_approvals_demo

            run_approvals_demo(home)
        elif scenario == "credentials":
            from tribune.cli.demo_credentials import run_credentials_demo

            run_credentials_demo(home)
        elif scenario == "decisions":
            from tribune.cli.demo import run_demo

            run_demo(home)
        else:
            raise InvalidInput(
                f"unknown scenario `{scenario}`",
                hint="use `decisions`, `credentials` or `approvals`",
            )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
