"""Approval through the gateway: held calls, the elicitation prompt in both protocol eras, and
attacks on it (forged answers, tampered and replayed sealed state). Only Tribune's ticket ever
lets a call run; the user's answer to a prompt only says "look again" or "withdraw"."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp.shared.exceptions import MCPError

from tribune.core.model import TicketState

from .conftest import Home, http_client, stdio_gateway, text_of

ARGS = {"path": "/srv/data"}


def approve(home: Home, ticket: str) -> None:
    for approver in ("bob", "carol"):  # production-destructive-approval: two people
        home.tr.approvals.vote(ticket, approver, True)


def production(home: Home, agent: str = "helper") -> tuple[str, str]:
    return home.task(agent, tool_groups=["up"], environment="production")


class Prompts:
    """An elicitation callback that records each prompt and answers as told; ``before`` runs
    (in a thread) when the prompt arrives, as a human approving in Tribune would."""

    def __init__(self, action: str, before: Any = None) -> None:
        self.action = action
        self.before = before
        self.seen: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.seen.append(params.message)
        if self.before is not None:
            await anyio.to_thread.run_sync(self.before, params.message)
        return types.ElicitResult(action=self.action, content={})  # type: ignore[arg-type]


def ticket_in(text: str) -> str:
    return text.split("(ticket ")[1].split(")")[0]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_user_sees_the_request_and_the_call_runs_once_approved(home: Home, mode: str) -> None:
    task_id, token = production(home)
    prompts = Prompts("accept", before=lambda text: approve(home, ticket_in(text)))

    async def body() -> None:
        async with stdio_gateway(home, token, mode, elicitation_callback=prompts) as client:
            ran = await client.call_tool("up.delete", ARGS)
            assert not ran.is_error, text_of(ran)
            assert text_of(ran) == "deleted /srv/data"

    anyio.run(body)
    (prompt,) = prompts.seen
    assert "`up.delete`" in prompt and '"/srv/data"' in prompt and "approvers" in prompt
    assert home.seen() == ["delete"]
    first, retried = home.decisions(task_id)
    assert first["effect"] == "approval_required"
    assert retried["effect"] == "allow" and retried["approved_by_ticket"] == first["ticket"]
    assert [r["status"] for r in home.results(task_id)] == ["ok"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_accepting_is_not_approving(home: Home, mode: str) -> None:
    task_id, token = production(home)
    prompts = Prompts("accept")

    async def body() -> None:
        async with stdio_gateway(home, token, mode, elicitation_callback=prompts) as client:
            result = await client.call_tool("up.delete", ARGS)
            assert result.is_error and "still waiting for approval" in text_of(result)

    anyio.run(body)
    assert len(prompts.seen) == 1  # asked once: no prompt loop
    assert home.seen() == []
    ticket = home.decisions(task_id)[0]["ticket"]
    assert home.tr.approvals.get(ticket).state is TicketState.PENDING
    assert all(d["effect"] == "approval_required" for d in home.decisions(task_id))


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_declining_withdraws_the_ticket(home: Home, mode: str) -> None:
    task_id, token = production(home)
    prompts = Prompts("decline")

    async def body() -> None:
        async with stdio_gateway(home, token, mode, elicitation_callback=prompts) as client:
            result = await client.call_tool("up.delete", ARGS)
            assert result.is_error and "declined and withdrawn" in text_of(result)

    anyio.run(body)
    assert home.seen() == []
    ticket = home.decisions(task_id)[0]["ticket"]
    assert home.tr.approvals.get(ticket).state is TicketState.DENIED
    events = [d for k, _, d in home.records(task_id) if d.get("event") == "approval_withdrawn"]
    assert events and events[0]["via"] == "elicitation"
    with pytest.raises(Exception, match="denied"):  # approvers can no longer let it run
        home.tr.approvals.vote(ticket, "bob", True)


def test_a_client_without_elicitation_gets_the_ticket_to_retry(home: Home) -> None:
    task_id, token = production(home)

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            result = await client.call_tool("up.delete", ARGS)
            assert result.is_error and "pending human approval" in text_of(result)

    anyio.run(body)
    assert home.decisions(task_id)[0]["ticket"] in json.dumps(home.decisions(task_id))


def test_a_held_call_relays_progress_and_runs_when_approved(home: Home) -> None:
    home.config.write_text(
        home.config.read_text().replace("[gateway]\n", "[gateway]\napproval_hold = 20\n", 1)
    )
    task_id, token = production(home)
    progress: list[tuple[float, str | None]] = []

    def approver() -> None:
        deadline = time.monotonic() + 15
        while not home.decisions(task_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.2)  # the call is held meanwhile
        approve(home, home.decisions(task_id)[0]["ticket"])

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            ran = await client.call_tool("up.delete", ARGS, progress_callback=on_progress)
            assert not ran.is_error and text_of(ran) == "deleted /srv/data"

    thread = threading.Thread(target=approver)
    thread.start()
    anyio.run(body)
    thread.join()
    assert progress and all("waiting for approval (ticket" in (m or "") for _, m in progress)
    assert [d["effect"] for d in home.decisions(task_id)] == ["approval_required", "allow"]
    assert home.seen() == ["delete"]


def test_a_held_call_that_is_denied_does_not_run(home: Home) -> None:
    home.config.write_text(
        home.config.read_text().replace("[gateway]\n", "[gateway]\napproval_hold = 20\n", 1)
    )
    task_id, token = production(home)

    def denier() -> None:
        deadline = time.monotonic() + 15
        while not home.decisions(task_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        home.tr.approvals.vote(home.decisions(task_id)[0]["ticket"], "bob", False)

    async def body() -> None:
        async with stdio_gateway(home, token, "auto") as client:
            result = await client.call_tool("up.delete", ARGS)
            assert result.is_error and "denied" in text_of(result)

    thread = threading.Thread(target=denier)
    thread.start()
    anyio.run(body)
    thread.join()
    assert home.seen() == []
    assert home.decisions(task_id)[-1]["effect"] == "deny"


# --------------------------------------------------------------------------- attacks


async def first_round(client: Any, args: dict[str, Any]) -> types.InputRequiredResult:
    result = await client.session.call_tool("up.delete", args, allow_input_required=True)
    assert isinstance(result, types.InputRequiredResult), result
    assert result.request_state and result.input_requests
    return result


ACCEPT = {"approval": types.ElicitResult(action="accept", content={})}


def test_forged_answers_without_the_sealed_state_count_for_nothing(home: Home) -> None:
    task_id, token = production(home)

    async def body() -> None:
        async with stdio_gateway(home, token, "auto", elicitation_callback=Prompts("accept")) as c:
            forged = await c.session.call_tool(
                "up.delete", ARGS, input_responses=ACCEPT, allow_input_required=True
            )
            # decided as a new call: asks for approval again, nothing runs
            assert isinstance(forged, types.InputRequiredResult)

    anyio.run(body)
    assert home.seen() == []
    assert [d["effect"] for d in home.decisions(task_id)] == ["approval_required"]


def test_tampered_state_is_refused(home: Home) -> None:
    _, token = production(home)

    async def body() -> None:
        async with stdio_gateway(home, token, "auto", elicitation_callback=Prompts("accept")) as c:
            state = (await first_round(c, ARGS)).request_state
            assert state is not None and "ticket" not in state  # sealed: unreadable
            forged = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
            for bad in (forged, json.dumps({"ticket": "t-1"}), "v1.AAAA"):
                with pytest.raises(MCPError, match="Invalid or expired requestState"):
                    await c.session.call_tool(
                        "up.delete", ARGS, input_responses=ACCEPT, request_state=bad
                    )

    anyio.run(body)
    assert home.seen() == []


def test_state_replayed_onto_other_arguments_is_refused(home: Home) -> None:
    task_id, token = production(home)

    async def body() -> None:
        async with stdio_gateway(home, token, "auto", elicitation_callback=Prompts("accept")) as c:
            state = (await first_round(c, ARGS)).request_state
            approve(home, home.decisions(task_id)[0]["ticket"])
            with pytest.raises(MCPError, match="Invalid or expired requestState"):
                await c.session.call_tool(
                    "up.delete", {"path": "/"}, input_responses=ACCEPT, request_state=state
                )

    anyio.run(body)
    assert home.seen() == []


def test_state_replayed_after_its_call_ran_does_not_run_it_again(home: Home) -> None:
    task_id, token = production(home)

    async def body() -> None:
        async with stdio_gateway(home, token, "auto", elicitation_callback=Prompts("accept")) as c:
            state = (await first_round(c, ARGS)).request_state
            approve(home, home.decisions(task_id)[0]["ticket"])
            ran = await c.session.call_tool(
                "up.delete", ARGS, input_responses=ACCEPT, request_state=state
            )
            assert isinstance(ran, types.CallToolResult) and not ran.is_error
            again = await c.session.call_tool(
                "up.delete", ARGS, input_responses=ACCEPT, request_state=state
            )
            assert isinstance(again, types.CallToolResult) and again.is_error
            assert "consumed" in text_of(again)

    anyio.run(body)
    assert home.seen() == ["delete"]


def test_over_http_state_is_bound_to_the_caller(home: Home, http_gateway: Any) -> None:
    task_id, token = production(home)
    _, other = home.task("reader", tools=["up.echo"])

    prompt = {"elicitation_callback": Prompts("accept")}

    async def body() -> None:
        async with http_client(http_gateway.url, token, "auto", **prompt) as c:
            state = (await first_round(c, ARGS)).request_state
        approve(home, home.decisions(task_id)[0]["ticket"])
        async with http_client(http_gateway.url, other, "auto", **prompt) as c:
            with pytest.raises(MCPError, match="Invalid or expired requestState"):
                await c.session.call_tool(
                    "up.delete", ARGS, input_responses=ACCEPT, request_state=state
                )
        async with http_client(http_gateway.url, token, "auto", **prompt) as c:
            ran = await c.session.call_tool(
                "up.delete", ARGS, input_responses=ACCEPT, request_state=state
            )
            assert isinstance(ran, types.CallToolResult) and not ran.is_error, ran

    anyio.run(body)
    assert home.seen() == ["delete"]


def test_a_state_sealed_for_another_task_withdraws_nothing(home: Home) -> None:
    # Over stdio a state binds no caller: the gateway checks the ticket's task itself.
    first, token = production(home)
    other_task, other = production(home)
    decline = {"approval": types.ElicitResult(action="decline", content={})}

    async def body() -> None:
        async with stdio_gateway(home, token, "auto", elicitation_callback=Prompts("accept")) as c:
            state = (await first_round(c, ARGS)).request_state
        async with stdio_gateway(home, other, "auto") as c:
            again = await c.session.call_tool(
                "up.delete", ARGS, input_responses=decline, request_state=state
            )
            # decided as a call of the other task, under a ticket of its own
            assert isinstance(again, types.CallToolResult) and again.is_error
            assert "did not run" in text_of(again)

    anyio.run(body)
    ticket = home.decisions(first)[0]["ticket"]
    assert home.tr.approvals.get(ticket).state is TicketState.PENDING  # not withdrawn
    assert home.decisions(other_task)[0]["ticket"] != ticket
    assert home.seen() == []
