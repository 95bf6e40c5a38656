"""Governing Python functions: the decorator and task helpers, over any backend.

The same code runs embedded (``tribune.open()``, decisions in this process) or remote
(``tribune.connect(url, api_key=...)``, decisions by a Tribune service): both return a
``Governed``; only the backend differs.

    @tr.govern("crm.read")
    def read_customer(customer_id: str) -> dict: ...

    with tr.task("support-bot", purpose="answer ticket 42", tools=["crm.read"]):
        read_customer("c-1")

A governed call is decided and recorded before it runs, runs only when allowed, and its result
(or its failure or cancellation) is recorded after. A denial raises ``ActionDenied`` carrying
the decision; approval-required raises ``ApprovalRequired``. Framework adapters use the lower
level ``decide_call`` / ``record`` pair (and their async forms) around a tool body they do not
call themselves.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol, TypeVar, cast

from tribune.core.model import Effect, Limits, ResultStatus, Task, Verdict
from tribune.credentials import injected_value  # here too for callers of the SDK
from tribune.errors import ActionDenied, ApprovalDenied, ApprovalRequired, InvalidInput

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("tribune.sdk")

current_task: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tribune_current_task", default=None
)


class Backend(Protocol):
    """Where decisions are made: in this process or by a Tribune service."""

    def start_task(self, agent: str, scope: Mapping[str, Any], ttl: int | None) -> Task: ...

    def end_task(self, task_id: str) -> None: ...

    def decide(
        self,
        task_id: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        environment: str | None,
        expects_result: bool,
        ticket: str | None = None,
    ) -> Verdict: ...

    def finish(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> None: ...

    async def astart_task(self, agent: str, scope: Mapping[str, Any], ttl: int | None) -> Task: ...

    async def aend_task(self, task_id: str) -> None: ...

    async def adecide(
        self,
        task_id: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        environment: str | None,
        expects_result: bool,
        ticket: str | None = None,
    ) -> Verdict: ...

    async def afinish(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> None: ...

    def wait_ticket(self, ticket_id: str, timeout: float) -> str:
        """The ticket's state once it is decided, or after ``timeout`` seconds."""
        ...

    async def await_ticket(self, ticket_id: str, timeout: float) -> str: ...

    def borrow(self, verdict: Verdict, source: str) -> tuple[str, dict[str, Any]]:
        """A credential from ``source`` for one allowed call: (lease id, credential)."""
        ...

    def give_back(self, lease_id: str) -> None: ...

    async def aborrow(self, verdict: Verdict, source: str) -> tuple[str, dict[str, Any]]: ...

    async def agive_back(self, lease_id: str) -> None: ...


def scope_fields(
    *,
    purpose: str,
    tools: Iterable[str] = (),
    tool_groups: Iterable[str] = (),
    targets: Iterable[str] = (),
    literals: Mapping[str, str] | None = None,
    environment: str | None = None,
    limits: Limits | None = None,
    open_scope: bool = False,
) -> dict[str, Any]:
    """A task's declared intent as plain fields (the backend checks them: a lone string where
    a list belongs is refused there, not split into letters here)."""
    return {
        "purpose": purpose,
        "tools": tools,
        "tool_groups": tool_groups,
        "targets": targets,
        "literals": dict(literals or {}),
        "environment": environment,
        "limits": limits or Limits(),
        "open_scope": open_scope,
    }


def raise_unless_allowed(verdict: Verdict) -> Verdict:
    decision = verdict.decision
    if decision.effect is Effect.APPROVAL_REQUIRED:
        raise ApprovalRequired(decision, verdict.action_id, verdict.ticket_id)
    if decision.effect is not Effect.ALLOW:
        raise ActionDenied(decision, verdict.action_id)
    return verdict


def model_message(verdict: Verdict) -> str:
    """What a model should read when a call did not run: the denial or the pending approval,
    with the action id to quote (no policy text, no arguments)."""
    decision = verdict.decision
    if decision.effect is Effect.APPROVAL_REQUIRED:
        err: ActionDenied = ApprovalRequired(decision, verdict.action_id, verdict.ticket_id)
        return (
            f"Tribune: {err.message}; the call did not run and is pending human approval "
            f"(action {verdict.action_id}); once approved, the same call with the same "
            "arguments runs"
        )
    err = ActionDenied(decision, verdict.action_id)
    return f"Tribune: {err.message}; the call did not run (action {verdict.action_id})"


class Governed:
    """The decorator factory and task helpers over one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # ----------------------------------------------------------------- tasks

    def start_task(
        self,
        agent: str,
        *,
        purpose: str,
        tools: Iterable[str] = (),
        tool_groups: Iterable[str] = (),
        targets: Iterable[str] = (),
        literals: Mapping[str, str] | None = None,
        environment: str | None = None,
        limits: Limits | None = None,
        open_scope: bool = False,
        ttl: int | None = None,
    ) -> Task:
        """Start a task for ``agent`` (name or id); its scope must lie within its entitlements."""
        fields = scope_fields(
            purpose=purpose,
            tools=tools,
            tool_groups=tool_groups,
            targets=targets,
            literals=literals,
            environment=environment,
            limits=limits,
            open_scope=open_scope,
        )
        return self.backend.start_task(agent, fields, ttl)

    def end_task(self, task_id: str) -> None:
        self.backend.end_task(task_id)

    @contextmanager
    def task(self, agent: str, **scope: Any) -> Iterator[Task]:
        """Start a task, make it current for governed calls in this context, end it on exit."""
        started = self.start_task(agent, **scope)
        token = current_task.set(started.id)
        try:
            yield started
        finally:
            current_task.reset(token)
            self.backend.end_task(started.id)

    @asynccontextmanager
    async def atask(
        self, agent: str, *, ttl: int | None = None, **scope: Any
    ) -> AsyncIterator[Task]:
        """``task`` for async code: the backend's calls do not block the event loop."""
        started = await self.backend.astart_task(agent, scope_fields(**scope), ttl)
        token = current_task.set(started.id)
        try:
            yield started
        finally:
            current_task.reset(token)
            await self.backend.aend_task(started.id)

    # ----------------------------------------------------------------- calls

    def check(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        task: str | None = None,
        environment: str | None = None,
    ) -> Verdict:
        """Decide (and record) a call without running anything."""
        return self.backend.decide(
            _task_id(task), tool, arguments, environment=environment, expects_result=False
        )

    def decide_call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        task: str | None = None,
        environment: str | None = None,
        ticket: str | None = None,
    ) -> Verdict:
        """Decide a call that will run if allowed; pass the verdict to ``record`` afterwards.
        For adapters whose framework runs the tool body itself. ``ticket`` names an approved
        ticket for exactly this call (an approved one is also found without it)."""
        return self.backend.decide(
            _task_id(task),
            tool,
            arguments,
            environment=environment,
            expects_result=True,
            ticket=ticket,
        )

    async def adecide_call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        task: str | None = None,
        environment: str | None = None,
        ticket: str | None = None,
    ) -> Verdict:
        return await self.backend.adecide(
            _task_id(task),
            tool,
            arguments,
            environment=environment,
            expects_result=True,
            ticket=ticket,
        )

    async def await_approval(self, ticket_id: str, timeout: float) -> str:
        """``wait_for_approval`` without holding the event loop."""
        return await self.backend.await_ticket(ticket_id, timeout)

    def record(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> None:
        """Record what happened to an allowed call decided by ``decide_call``."""
        self.backend.finish(verdict, status, output=output, duration_ms=duration_ms, error=error)

    async def arecord(
        self,
        verdict: Verdict,
        status: ResultStatus,
        *,
        output: Any = None,
        duration_ms: float = 0.0,
        error: str | None = None,
    ) -> None:
        await self.backend.afinish(
            verdict, status, output=output, duration_ms=duration_ms, error=error
        )

    def wait_for_approval(self, ticket_id: str, timeout: float) -> str:
        """Wait up to ``timeout`` seconds for a ticket to be decided; its state then
        (`approved`, `denied`, `expired`, `consumed`, or still `pending`)."""
        return self.backend.wait_ticket(ticket_id, timeout)

    def govern(
        self,
        tool: str | None = None,
        *,
        task: str | None = None,
        environment: str | None = None,
        credentials: Mapping[str, str] | None = None,
        approval_wait: float | None = None,
    ) -> Callable[[F], F]:
        """Decorate a function (sync or async) as the tool ``tool`` (default: its name).

        A call that needs approval raises ``ApprovalRequired`` (with its ``ticket_id``) at once;
        calling again with the same arguments once approved runs it. With ``approval_wait``
        (seconds), the call instead waits that long for the humans: approved, it is decided
        again and runs; denied or expired, ``ApprovalDenied``; still pending at the end,
        ``ApprovalRequired``.

        ``credentials`` maps keyword parameters to credential sources: once the call is
        allowed, each is filled with a credential lent for this call only (a secret's value, a
        token, a connection URI) and revoked when the call returns. The caller cannot pass
        them, and they are never part of the decided or recorded arguments."""
        inject = dict(credentials or {})

        def wrap(fn: F) -> F:
            name = tool or fn.__name__
            if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
                # its body would run only when iterated: after the result was recorded
                raise InvalidInput(
                    f"cannot govern generator function `{fn.__name__}`",
                    hint="govern a function that returns the collected values",
                )
            signature = _without(inspect.signature(fn), inject, name)
            backend = self.backend

            def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
                taken = sorted(set(kwargs) & set(inject))
                if taken:
                    raise InvalidInput(f"`{taken[0]}` of `{name}` is filled by Tribune")
                try:
                    bound = signature.bind(*args, **kwargs)
                except TypeError as exc:
                    raise InvalidInput(f"bad arguments for `{name}`: {exc}") from None
                bound.apply_defaults()
                return dict(bound.arguments)

            def borrow(verdict: Verdict) -> tuple[list[str], dict[str, Any]]:
                leases: list[str] = []
                values: dict[str, Any] = {}
                try:
                    for param, source in inject.items():
                        lease_id, credential = backend.borrow(verdict, source)
                        leases.append(lease_id)
                        values[param] = injected_value(credential)
                except BaseException as exc:
                    give_back(leases)
                    status, error = failure(exc)
                    backend.finish(verdict, status, error=error)
                    raise
                return leases, values

            def give_back(leases: list[str]) -> None:
                for lease_id in leases:
                    try:
                        backend.give_back(lease_id)
                    except Exception:  # the lease expires by itself; the sweeper ends it
                        log.warning("could not revoke lease %s at once", lease_id)

            async def aborrow(verdict: Verdict) -> tuple[list[str], dict[str, Any]]:
                leases: list[str] = []
                values: dict[str, Any] = {}
                try:
                    for param, source in inject.items():
                        lease_id, credential = await backend.aborrow(verdict, source)
                        leases.append(lease_id)
                        values[param] = injected_value(credential)
                except BaseException as exc:
                    await agive_back(leases)
                    status, error = failure(exc)
                    await backend.afinish(verdict, status, error=error)
                    raise
                return leases, values

            async def agive_back(leases: list[str]) -> None:
                for lease_id in leases:
                    try:
                        await backend.agive_back(lease_id)
                    except Exception:
                        log.warning("could not revoke lease %s at once", lease_id)

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    task_id, given = _task_id(task), arguments(args, kwargs)
                    verdict = await backend.adecide(
                        task_id, name, given, environment=environment, expects_result=True
                    )
                    if approval_wait and verdict.ticket_id and _pending(verdict):
                        state = await backend.await_ticket(verdict.ticket_id, approval_wait)
                        verdict = await _after_wait(verdict, state, backend.adecide)(
                            task_id,
                            name,
                            given,
                            environment=environment,
                            expects_result=True,
                            ticket=verdict.ticket_id,
                        )
                    raise_unless_allowed(verdict)
                    leases, values = await aborrow(verdict) if inject else ([], {})
                    started = time.perf_counter()
                    try:
                        value = await fn(*args, **kwargs, **values)
                    except BaseException as exc:
                        status, error = failure(exc)
                        await agive_back(leases)
                        await backend.afinish(
                            verdict, status, duration_ms=elapsed_ms(started), error=error
                        )
                        raise
                    await agive_back(leases)
                    await backend.afinish(
                        verdict, ResultStatus.OK, output=value, duration_ms=elapsed_ms(started)
                    )
                    return value

                return cast(F, run_async)

            @functools.wraps(fn)
            def run(*args: Any, **kwargs: Any) -> Any:
                task_id, given = _task_id(task), arguments(args, kwargs)
                verdict = backend.decide(
                    task_id, name, given, environment=environment, expects_result=True
                )
                if approval_wait and verdict.ticket_id and _pending(verdict):
                    state = backend.wait_ticket(verdict.ticket_id, approval_wait)
                    if state == "approved":
                        verdict = backend.decide(
                            task_id,
                            name,
                            given,
                            environment=environment,
                            expects_result=True,
                            ticket=verdict.ticket_id,
                        )
                    else:
                        _raise_unapproved(verdict, state)
                raise_unless_allowed(verdict)
                leases, values = borrow(verdict) if inject else ([], {})
                started = time.perf_counter()
                try:
                    value = fn(*args, **kwargs, **values)
                except BaseException as exc:
                    status, error = failure(exc)
                    give_back(leases)
                    backend.finish(verdict, status, duration_ms=elapsed_ms(started), error=error)
                    raise
                give_back(leases)
                backend.finish(
                    verdict, ResultStatus.OK, output=value, duration_ms=elapsed_ms(started)
                )
                return value

            return cast(F, run)

        return wrap


def _pending(verdict: Verdict) -> bool:
    return verdict.decision.effect is Effect.APPROVAL_REQUIRED


def _raise_unapproved(verdict: Verdict, state: str) -> None:
    """After a wait that did not end in approval: denied or expired is final; pending is
    still ``ApprovalRequired``."""
    if state in ("denied", "expired"):
        raise ApprovalDenied(verdict.decision, verdict.action_id, verdict.ticket_id or "", state)
    raise_unless_allowed(verdict)


def _after_wait(verdict: Verdict, state: str, adecide: Callable[..., Any]) -> Callable[..., Any]:
    """The async re-decision to run after a wait: deciding again once approved."""
    if state != "approved":
        _raise_unapproved(verdict, state)
    return adecide


def _without(
    signature: inspect.Signature, inject: Mapping[str, str], name: str
) -> inspect.Signature:
    """The signature callers see: the injected parameters left out. Each must exist and be
    passable by keyword."""
    params = signature.parameters
    for param in inject:
        found = params.get(param)
        if found is None or found.kind not in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise InvalidInput(f"`{name}` has no keyword parameter `{param}` to fill")
    return signature.replace(parameters=[p for p in params.values() if p.name not in inject])


def failure(exc: BaseException) -> tuple[ResultStatus, str | None]:
    """How a governed body that raised ``exc`` is recorded: cancelled, or an error named by
    the exception's type (never its message: it may hold data). For adapters too."""
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return ResultStatus.CANCELLED, None
    return ResultStatus.ERROR, type(exc).__name__


def _task_id(explicit: str | None) -> str:
    task_id = explicit or current_task.get()
    if not task_id:
        raise InvalidInput(
            "no task for this call", hint="pass task=... or call inside `with tr.task(...)`"
        )
    return task_id


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - started) * 1000.0
