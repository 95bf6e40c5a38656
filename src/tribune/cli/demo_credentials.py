"""`tribune demo --scenario credentials`: an agent's own key, a task token, credentials lent
for the task and for one call, and all of them dying with the task."""

from __future__ import annotations

import json
from contextlib import suppress
from pathlib import Path
from typing import Any

from tribune.cli.common import console
from tribune.cli.demo import TOOLS as DEMO_TOOLS
from tribune.cli.demo import begin, say, step
from tribune.core.model import Entitlements, RecordKind
from tribune.crypto.assertions import sign_assertion
from tribune.crypto.token_keys import InvalidToken
from tribune.errors import Conflict

CREDENTIALS = """
[credentials.crm-api]
backend = "token"
audience = "https://crm.example.com"
tools = ["crm.read_customer"]
ttl = 300

[credentials.mail-api-key]
backend = "secret"
secret = "mail-api-key"
tools = ["email.send"]
ttl = 60
"""
# The first tour's CRM and mail tools.
TOOLS = tuple(t for t in DEMO_TOOLS if t.name in ("crm.read_customer", "email.send"))
MAIL_KEY = "mk_demo_2f9c41d7a0b84e55"  # a stand-in for a real provider key


def run_credentials_demo(home: Path | None = None) -> dict[str, Any]:
    """Run the tour; return what each step observed (used by tests)."""
    from tribune.bootstrap import open_tribune

    home = begin(
        home,
        "Tribune demo: credentials that die with the task",
        "No standing privilege: an agent proves who it is with its own key, works under a "
        "token for one task, and every credential it borrows expires by itself and is "
        "revoked when the task ends.",
    )
    config = home / "tribune.toml"
    if "[credentials.crm-api]" not in config.read_text(encoding="utf-8"):
        with config.open("a", encoding="utf-8") as handle:
            handle.write(CREDENTIALS)
    seen: dict[str, Any] = {}
    with open_tribune(home) as tr:
        step(1, "Set up", "an owner, two tools, an agent, and two credential sources:")
        say("crm-api: a token for the CRM; mail-api-key: a sealed secret for the mail API")
        with suppress(Conflict):
            tr.registry.add_user("alice", email="alice@example.com")
        for tool in TOOLS:
            tr.registry.register_tool(tool)
        with suppress(Conflict):
            tr.registry.register_agent(
                "report-bot",
                owner="user:alice",
                purpose="send customer reports",
                environment="development",
                entitlements=Entitlements(
                    tools=frozenset(t.name for t in TOOLS),
                    environments=frozenset({"development"}),
                ),
            )
        tr.secrets.put("mail-api-key", MAIL_KEY, note="demo stand-in")
        agent = tr.registry.resolve_agent("report-bot")

        step(2, "The agent signs in with its own key", "Tribune keeps only the public half.")
        key, private_pem = tr.identity.create_key("report-bot")
        assertion = sign_assertion(
            private_pem, agent.id, tr.tokens.audience, now=tr.clock.now(), kid=key.kid
        )
        who = tr.identity.authenticate(assertion)
        say(f"signed assertion accepted: {who.agent_id} (key {key.kid[:12]}…)")
        try:
            tr.identity.authenticate(assertion)
            seen["replay"] = "accepted"
        except InvalidToken as exc:
            seen["replay"] = exc.reason
            say(f"the same assertion again: refused ({exc.reason})")

        step(3, "A task and its token", "the token carries the declared intent and dies with it.")
        task = tr.start_task(
            "report-bot",
            purpose="send the monthly report to customer 42",
            tools=["crm.read_customer", "email.send"],
            targets=["customer42@client.example"],
            ttl=900,
        )
        task_token = tr.tokens.issue(task, agent, str(agent.owner))
        seen["task_token"] = "valid" if tr.tokens.verify(task_token) else "invalid"
        say(f"task {task.id}, token verifies: {seen['task_token']}")

        step(4, "A credential for the task", "a CRM token bound to this task and audience.")
        crm = tr.leases.issue(task.id, "crm-api")
        seen["crm_before"] = tr.introspection.introspect(crm.credential["token"])["active"]
        say(f"lease {crm.lease.id}: expires {crm.lease.expires_at:%H:%M:%S} UTC")
        say(f"the CRM asks Tribune (RFC 7662): active = {seen['crm_before']}")

        step(5, "A secret for one call", "handed to the function, never to the model.")
        got: dict[str, str] = {}

        @tr.govern("email.send", credentials={"api_key": "mail-api-key"})
        def send(to: list[str], body: str, *, api_key: str = "") -> str:
            got["key"] = api_key
            return "sent"

        from tribune.sdk.governed import current_task

        reset = current_task.set(task.id)
        try:
            send(["customer42@client.example"], "Your monthly report is attached.")
        finally:
            current_task.reset(reset)
        records = "".join(r.body for r in tr.store.records())
        seen["secret_in_function"] = got.get("key") == MAIL_KEY
        seen["secret_in_audit"] = MAIL_KEY in records
        say(f"the function got the key: {seen['secret_in_function']}")
        say(f"the key appears in the audit log: {seen['secret_in_audit']}")

        step(6, "The task ends", "and takes every credential with it.")
        tr.tasks.end(task.id)
        seen["crm_after"] = tr.introspection.introspect(crm.credential["token"])["active"]
        say(f"the CRM asks again: active = {seen['crm_after']}")
        try:
            tr.tokens.verify(task_token)
            after = "valid"
        except InvalidToken as exc:
            after = exc.reason
        seen["task_token_after"] = after
        say(f"the task token: refused ({seen['task_token_after']})")
        states = sorted({x.state.value for x in tr.leases.list(task.id)})
        seen["lease_states"] = states
        say(f"lease states: {', '.join(states)}")

        step(7, "The kill switch", "one command ends an agent's tasks and revokes their leases.")
        second = tr.start_task("report-bot", purpose="another report", tools=["crm.read_customer"])
        for _ in range(3):
            tr.leases.issue(second.id, "crm-api")
        done = tr.killswitch.revoke(agent="report-bot", actor="user:alice")
        seen["kill_switch"] = (done.tasks_ended, done.leases_revoked)
        say(f"{done.tasks_ended} task ended, {done.leases_revoked} leases revoked")

        step(8, "The audit trail", "every issue and revocation, and never a credential.")
        counts: dict[str, int] = {}
        for rec in tr.store.records():
            data = json.loads(rec.body)["data"]
            if rec.kind is RecordKind.EVENT and str(data.get("event", "")).startswith("lease_"):
                counts[data["event"]] = counts.get(data["event"], 0) + 1
        seen["events"] = counts
        for name in sorted(counts):
            say(f"{name}: {counts[name]}")
    console.print()
    console.print(f"Explore: tribune audit tail --home {home}", highlight=False)
    return seen
