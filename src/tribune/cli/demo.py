"""`tribune demo`: a scripted scenario in a fresh temporary home, explained step by step."""

from __future__ import annotations

import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.panel import Panel

from tribune.cli.common import console
from tribune.core.model import Effect, Entitlements, ExtractorSpec, Limits, RiskFacts, Tool
from tribune.errors import Conflict

TOOLS = (
    Tool(
        "crm.read_customer",
        "Read a customer record",
        risk=RiskFacts(read_only=True, destructive=False, idempotent=True, open_world=False),
        groups=("crm",),
        extractors=(ExtractorSpec("object_id", "/customer_id", role="customer"),),
        data_classes=("confidential",),
    ),
    Tool(
        "email.send",
        "Send an e-mail",
        risk=RiskFacts(read_only=False, destructive=False, open_world=True),
        groups=("email",),
        extractors=(
            ExtractorSpec("email", "/to/*", role="recipient", target=True),
            ExtractorSpec("text", "/body", role="body"),
        ),
    ),
    Tool(
        "payments.refund",
        "Refund a payment",
        risk=RiskFacts(read_only=False, destructive=True, open_world=True),
        groups=("payments",),
        extractors=(ExtractorSpec("amount", "/amount", aggregate="sum"),),
    ),
    Tool(
        "db.drop_table",
        "Drop a database table",
        risk=RiskFacts(read_only=False, destructive=True, open_world=False),
        groups=("database",),
        extractors=(ExtractorSpec("object_id", "/table", role="table"),),
    ),
)


# (effect key, title, plain words, tool, arguments, task: "support" or "ops")
STEPS: tuple[tuple[str, str, str, str, dict[str, Any], str], ...] = (
    (
        "read",
        "An allowed read",
        "reading a customer record is a read inside the task's declared intent.",
        "crm.read_customer",
        {"customer_id": "42"},
        "support",
    ),
    (
        "out_of_intent",
        "A denied out-of-intent call",
        "a refund is within support-bot's entitlements but not in this task's intent.",
        "payments.refund",
        {"amount": "120.00"},
        "support",
    ),
    (
        "send_named",
        "An e-mail to the named customer",
        "sending is external and irreversible, but the recipient is named in the intent.",
        "email.send",
        {"to": ["customer42@client.example"], "body": "Fixed!"},
        "support",
    ),
    (
        "send_unknown",
        "An e-mail to someone unknown needs approval",
        "the recipient is neither internal, known nor named: one human must approve.",
        "email.send",
        {"to": ["someone@elsewhere.example"], "body": "hello"},
        "support",
    ),
    (
        "prod_destructive",
        "A destructive action in production needs two approvers",
        "ops-bot may drop tables, but in production that takes two distinct approvers.",
        "db.drop_table",
        {"table": "sessions_2019"},
        "ops",
    ),
    (
        "after_end",
        "Calls after the task ended are denied",
        "both tasks are over; so is their power.",
        "crm.read_customer",
        {"customer_id": "42"},
        "support",
    ),
)


def step(n: int, title: str, words: str) -> None:
    """A numbered step of a tour: its title, then what it shows in plain words."""
    console.print()
    console.print(f"[bold cyan]{n}. {title}[/]")
    console.print(f"   {words}", highlight=False)


def say(text: str) -> None:
    """One line of what a step observed (escaped: it may hold ids and user text)."""
    console.print(f"   {escape(text)}", highlight=False)


def _show(verdict: Any) -> None:
    d = verdict.decision
    colour = {Effect.ALLOW: "green", Effect.DENY: "red"}.get(d.effect, "yellow")
    line = f"   → [bold {colour}]{d.effect.value}[/]"
    if d.policy_ids:
        line += f"  policies: {', '.join(d.policy_ids)}"
    if d.approval:
        who = ", ".join(d.approval.approvers) or "any approver"
        line += f"  (needs {d.approval.quorum} approval(s) from {who})"
    for reason in d.reasons:
        line += f"\n     {escape(reason)}"
    for e in d.errors:
        line += escape(f"  [{e.code}] {e.message}")
    console.print(line, highlight=False)


def begin(home: Path | None, title: str, text: str) -> Path:
    """Show the tour's banner and make its home (a fresh temporary one by default)."""
    from tribune.bootstrap import init_home

    if home is None:
        home = Path(tempfile.mkdtemp(prefix="tribune-demo-"))
    console.print(Panel.fit(text, title=title))
    console.print(f"home: {home}", highlight=False)
    init_home(home)
    return home


def run_demo(home: Path | None = None) -> dict[str, str]:
    """Run the tour; return each step's effect (used by tests)."""
    from tribune.bootstrap import open_tribune

    home = begin(
        home,
        "Tribune demo",
        "Tribune stands between agents and the tools they call. Every call is decided by Cedar "
        "policies in context, and recorded (intent, decision, result) in a hash-chained log.",
    )
    effects: dict[str, str] = {}
    with open_tribune(home) as tr:
        step(0, "Set up", "a team, an owner, two approvers, four tools and two agents.")
        tr.registry.add_group("approvers", "people who approve risky actions")
        tr.registry.add_group("support")
        tr.registry.add_user("alice", email="alice@example.com", groups=("support",))
        tr.registry.add_user("bob", email="bob@example.com", groups=("approvers",))
        tr.registry.add_user("carol", email="carol@example.com", groups=("approvers",))
        for tool in TOOLS:
            tr.registry.register_tool(tool)
        # A second run in the same home keeps the agents the first one registered.
        with suppress(Conflict):
            tr.registry.register_agent(
                "support-bot",
                owner="user:alice",
                purpose="answer customer tickets",
                environment="development",
                entitlements=Entitlements(
                    tools=frozenset({"crm.read_customer", "email.send", "payments.refund"}),
                    environments=frozenset({"development"}),
                    limits=Limits(max_amount=50_000),
                ),
            )
        with suppress(Conflict):
            tr.registry.register_agent(
                "ops-bot",
                owner="group:support",
                purpose="database maintenance",
                environment="production",
                entitlements=Entitlements(
                    tool_groups=frozenset({"database"}), environments=frozenset({"production"})
                ),
            )
        task = tr.start_task(
            "support-bot",
            purpose="answer ticket 4711 from customer 42",
            tools=["crm.read_customer", "email.send"],
            targets=["customer42@client.example"],
        )
        console.print(f"   support-bot started task {task.id}", highlight=False)
        console.print(
            "   intent: read the CRM and e-mail customer42@client.example", highlight=False
        )

        ops = tr.start_task(
            "ops-bot", purpose="drop the obsolete sessions table", tool_groups=["database"]
        )
        for n, (key, title, words, tool_name, args, in_task) in enumerate(STEPS, 1):
            if key == "after_end":
                tr.tasks.end(task.id)
                tr.tasks.end(ops.id)
            step(n, title, words)
            v = tr.check(tool_name, args, task=(ops if in_task == "ops" else task).id)
            _show(v)
            effects[key] = v.decision.effect.value

        step(
            len(STEPS) + 1,
            "Verify the audit log",
            "every call above left intent and decision records in a hash chain.",
        )
        tr.audit.checkpoint()
        report = tr.audit.verify()
        status = "[green]ok[/]" if report.ok else f"[red]{report.problem}[/]"
        console.print(
            f"   → {status}: {report.checked} records, "
            f"{report.checkpoints_verified} signed checkpoint(s)"
        )
        effects["verify"] = "ok" if report.ok else "tampered"
    console.print()
    console.print(f"Explore: tribune audit tail --home {home}", highlight=False)
    return effects
