"""The embedded Python API: govern functions in-process against a Tribune home.

    tr = tribune.open("~/.tribune")
    with tr.task("billing-bot", purpose="pay invoice 42", tools=["pay"]) as task:
        pay_invoice(...)            # a function decorated with @tr.govern("pay")

A governed call is decided and recorded before it runs, runs only when allowed, and its result
(or its failure or cancellation) is recorded after. A denial raises ``ActionDenied`` carrying
the decision; approval-required raises ``ApprovalRequired``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from tribune.core.model import Effect, Limits, ResultStatus, Task
from tribune.errors import ActionDenied, ApprovalRequired, InvalidInput
from tribune.services.governor import Verdict
from tribune.services.tasks import ScopeRequest

F = TypeVar("F", bound=Callable[..., Any])

current_task: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tribune_current_task", default=None
)


class Governed:
    """Decorator factory and task helpers over a wired ``App`` (see ``tribune.bootstrap``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

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
        request = ScopeRequest(  # the service checks and copies the lists (a lone str is refused)
            purpose=purpose,
            tools=tools,
            tool_groups=tool_groups,
            targets=targets,
            literals=dict(literals or {}),
            environment=environment,
            limits=limits or Limits(),
            open_scope=open_scope,
        )
        task: Task = self.app.tasks.start(agent, request, ttl=ttl)
        return task

    @contextmanager
    def task(self, agent: str, **scope: Any) -> Iterator[Task]:
        """Start a task, make it current for governed calls in this context, end it on exit."""
        started = self.start_task(agent, **scope)
        token = current_task.set(started.id)
        try:
            yield started
        finally:
            current_task.reset(token)
            self.app.tasks.end(started.id)

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
        verdict: Verdict = self.app.governor.decide(
            _task_id(task), tool, arguments, environment=environment, expects_result=False
        )
        return verdict

    def govern(
        self, tool: str | None = None, *, task: str | None = None, environment: str | None = None
    ) -> Callable[[F], F]:
        """Decorate a function (sync or async) as the tool ``tool`` (default: its name)."""

        def wrap(fn: F) -> F:
            name = tool or fn.__name__
            if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
                # its body would run only when iterated: after the result was recorded
                raise InvalidInput(
                    f"cannot govern generator function `{fn.__name__}`",
                    hint="govern a function that returns the collected values",
                )
            signature = inspect.signature(fn)

            def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
                try:
                    bound = signature.bind(*args, **kwargs)
                except TypeError as exc:
                    raise InvalidInput(f"bad arguments for `{name}`: {exc}") from None
                bound.apply_defaults()
                return dict(bound.arguments)

            def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Verdict:
                verdict: Verdict = self.app.governor.decide(
                    _task_id(task), name, arguments(args, kwargs), environment=environment
                )
                decision = verdict.decision
                if decision.effect is Effect.APPROVAL_REQUIRED:
                    raise ApprovalRequired(decision, verdict.action_id)
                if decision.effect is not Effect.ALLOW:
                    raise ActionDenied(decision, verdict.action_id)
                return verdict

            finish = self.app.governor.finish

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    with _outcome(finish, before(args, kwargs)) as out:
                        out.value = await fn(*args, **kwargs)
                    return out.value

                return cast(F, run_async)

            @functools.wraps(fn)
            def run(*args: Any, **kwargs: Any) -> Any:
                with _outcome(finish, before(args, kwargs)) as out:
                    out.value = fn(*args, **kwargs)
                return out.value

            return cast(F, run)

        return wrap


class _Out:
    value: Any = None


@contextmanager
def _outcome(finish: Callable[..., None], verdict: Verdict) -> Iterator[_Out]:
    """Run the governed body and record what happened: ok (with the output's digest), error
    (the exception's type, never its message: it may hold data), or cancelled."""
    out = _Out()
    started = time.perf_counter()
    try:
        yield out
    except (asyncio.CancelledError, KeyboardInterrupt):
        finish(verdict, ResultStatus.CANCELLED, duration_ms=_ms(started))
        raise
    except BaseException as exc:
        finish(verdict, ResultStatus.ERROR, duration_ms=_ms(started), error=type(exc).__name__)
        raise
    finish(verdict, ResultStatus.OK, output=out.value, duration_ms=_ms(started))


def _task_id(explicit: str | None) -> str:
    task_id = explicit or current_task.get()
    if not task_id:
        raise InvalidInput(
            "no task for this call", hint="pass task=... or call inside `with tr.task(...)`"
        )
    return task_id


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
