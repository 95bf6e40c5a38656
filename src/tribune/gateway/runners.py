"""Running Tribune's blocking services from the gateway's event loop, and writing results
after the reply.

``Runner`` runs one short store call: ``inline`` on the event loop, or ``in_thread``;
``runner_for`` picks one per store. ``Results`` writes the result records of allowed calls,
deferred after the reply where the transport allows it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar

import anyio

from tribune.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# Scheduling steps from a handler's return to its reply's write: the dispatcher hands the
# response to the transport's writer task (stdio: one step; HTTP: a few through the ASGI app).
REPLY_STEPS = 8


class Runner(Protocol):
    """Runs a short blocking call of Tribune's services from the event loop."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


async def inline(fn: Callable[[], T]) -> T:
    """On the event loop itself: no thread hop, and the loop waits while ``fn`` runs."""
    return fn()


async def in_thread(fn: Callable[[], T]) -> T:
    """In a worker thread: the loop serves others while ``fn`` waits on I/O."""
    return await anyio.to_thread.run_sync(fn)


def runner_for(settings: Settings) -> Runner:
    """``inline`` for a local SQLite store without an fsync per commit, else ``in_thread``.

    A decision on SQLite (``durability = "normal"``) is ~1 ms of CPU with no waiting, which the
    GIL would serialise in a thread anyway; the hop to a thread and back costs more than it
    saves. A PostgreSQL round trip or an fsync waits, and the loop should serve others then.
    """
    url = settings.store_url
    local = not url or url.startswith("sqlite")
    return inline if local and settings.durability == "normal" else in_thread


class Results:
    """Result records of allowed calls, written after the reply is on its way.

    While ``deferring()`` runs, ``record`` schedules the write in a task of its own and
    returns; that task first yields to the event loop a few times (``REPLY_STEPS``), so the
    reply, a few scheduling steps behind the handler's return, goes out before the write runs
    (with ``run``: inline, or in a thread). Outside ``deferring()``, ``record`` writes at once.

    INVARIANT: a task's next call is decided only after every result of that task this process
    deferred is written (``settled``), so what a result changes in the task's session (taint,
    data read, the call count) is in the store before the next decision, as if written first.
    The intent and decision are durable before forwarding either way; a crash between the
    reply and the write leaves an allowed action without a result, which
    ``tribune audit reconcile`` records as `unknown` (the outcome was not observed).
    """

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._group: anyio.abc.TaskGroup | None = None
        self._pending: dict[str, tuple[int, anyio.Event]] = {}

    @asynccontextmanager
    async def deferring(self) -> AsyncIterator[None]:
        """Defer writes until this exits; on exit, wait for every one still pending."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None

    async def settled(self, task_id: str) -> None:
        """Return once no result of ``task_id`` is waiting to be written."""
        while (entry := self._pending.get(task_id)) is not None:
            await entry[1].wait()

    async def record(self, task_id: str, write: Callable[[], object]) -> None:
        if self._group is None:
            with anyio.CancelScope(shield=True):  # P9: the result record survives cancellation
                await self._run(write)
            return
        count, done = self._pending.get(task_id, (0, anyio.Event()))
        self._pending[task_id] = (count + 1, done)
        self._group.start_soon(self._write, task_id, write)

    async def _write(self, task_id: str, write: Callable[[], object]) -> None:
        try:
            with anyio.CancelScope(shield=True):
                # Should the reply still be on its way after these, it waits for one write.
                for _ in range(REPLY_STEPS):
                    await anyio.lowlevel.checkpoint()
                await self._run(write)
        except Exception as exc:  # the action stays without a result: reconcilable
            log.warning("a result was not recorded: %s", type(exc).__name__)
        finally:
            count, done = self._pending[task_id]
            if count > 1:
                self._pending[task_id] = (count - 1, done)
            else:
                del self._pending[task_id]
                done.set()
