"""One upstream process per task, for a stdio upstream with a credential.

A process reads its environment once, at spawn, so a credential there belongs to the process
and the process to one task. A task's first allowed call starts its process: a lease for the
task from the upstream's source (``Lending.for_task``; the task must have declared one of the
tools the source serves), its value in ``credential_env``. The task's later calls reuse it. A
process is closed, and its lease revoked (reason ``process_closed``), when

- its lease has ended: the task ended, the kill switch, expiry (checked every ``CHECK_EVERY``
  seconds; a call is decided first, and a task that ended is denied there);
- it has had no call for ``idle_timeout`` seconds;
- it is retired: its lease is renewed at two thirds of its life, and when it cannot be (any
  more: ``max_ttl``), or the renewal hands over a new credential (a token's expiry is signed
  into it, and the process cannot receive a new one), the process takes no new call and closes
  once its calls are done; the task's next call starts a fresh process with a fresh lease;
- its connection broke, or the gateway stops.

At most ``max_processes`` processes of one upstream live at once; a call of a further task is
refused (``UpstreamBusy``), never queued.

Tools are not listed here: the upstream's shared connection (``upstreams``) is a process started
without the credential, used for listing only. ``tools/list`` is needed before any task exists
(the catalog is built at start and shared by every task) and a lease always belongs to a task.
So an upstream that will not start or list without its credential cannot be served this way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from mcp import Client, StdioServerParameters

from tribune.core.model import Lease
from tribune.gateway.config import UpstreamSettings
from tribune.gateway.lending import CredentialUnavailable, Lending, describe

log = logging.getLogger(__name__)
CHECK_EVERY = 1.0  # seconds between checks that a process's lease is still live
RENEW_AT = 2 / 3  # of a lease's life
BROKEN = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream)


class UpstreamBusy(Exception):
    """Every process slot of the upstream is taken by other tasks: nothing was sent."""

    def __init__(self, upstream: str, limit: int) -> None:
        super().__init__(f"upstream `{upstream}` serves at most {limit} task(s) at once")
        self.limit = limit


class NoProcess(Exception):
    """The task's process could not be started, or is gone: nothing was sent."""


@dataclass(eq=False)
class Process:
    """One task's upstream process, as its calls see it."""

    task_id: str
    lease_id: str = ""
    client: Client | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    wake: anyio.Event = field(default_factory=anyio.Event)
    failure: type[Exception] | None = None
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    retired: bool = False
    lost: bool = False

    def lose(self) -> None:
        """The connection broke: close the process (the task's next call starts another)."""
        self.lost = True
        self.wake.set()


class TaskProcesses:
    """The per-task processes of one stdio upstream with a credential."""

    def __init__(self, up: UpstreamSettings, lending: Lending) -> None:
        assert up.command is not None and up.credential_env is not None
        self.up = up
        self.lending = lending
        self._live: dict[str, Process] = {}  # by task: the process taking its calls
        self._retiring: set[Process] = set()  # finishing their calls, then closing
        self._group: anyio.abc.TaskGroup | None = None

    def start(self, group: anyio.abc.TaskGroup) -> None:
        """Processes run as tasks of ``group`` (the gateway's lifespan)."""
        self._group = group

    def count(self) -> int:
        """Processes alive or starting."""
        return len(self._live) + len(self._retiring)

    @asynccontextmanager
    async def use(self, task_id: str) -> AsyncIterator[Process]:
        """The task's process, started if need be, for one call. Raises ``UpstreamBusy``,
        ``CredentialUnavailable`` or ``NoProcess``."""
        process = self._live.get(task_id) or self._spawn(task_id)
        process.in_flight += 1  # before waiting: an idle check must not close it now
        try:
            await process.ready.wait()
            if process.failure is not None:
                raise process.failure(f"no process of upstream `{self.up.name}` for the task")
            if process.client is None:
                raise NoProcess(f"the process of upstream `{self.up.name}` is gone")
            yield process
        finally:
            process.in_flight -= 1
            process.last_used = time.monotonic()
            process.wake.set()

    def _spawn(self, task_id: str) -> Process:
        if self._group is None:
            raise NoProcess(f"upstream `{self.up.name}` is not started")
        if self.count() >= self.up.max_processes:
            raise UpstreamBusy(self.up.name, self.up.max_processes)
        process = Process(task_id)
        self._live[task_id] = process
        self._group.start_soon(self._serve, process, name=f"upstream {self.up.name} {task_id}")
        return process

    # ----------------------------------------------------------------- one process

    async def _serve(self, process: Process) -> None:
        """Issue the task's lease, spawn and serve the process, close it, revoke the lease."""
        up = self.up
        lease: Lease | None = None
        try:
            try:
                lease, value = await self.lending.for_task(up, process.task_id)
            except CredentialUnavailable:
                process.failure = CredentialUnavailable
                return
            process.lease_id = lease.id
            assert up.command is not None and up.credential_env is not None
            params = StdioServerParameters(
                command=up.command, args=list(up.args), env={**up.env, up.credential_env: value}
            )

            async def on_message(message: Any) -> None:
                if isinstance(message, BROKEN):
                    process.lose()
                await anyio.lowlevel.checkpoint()

            client = Client(params, mode="auto", cache=None, message_handler=on_message)
            async with anyio.create_task_group() as tg:
                started = anyio.Event()
                tg.start_soon(self._watchdog, tg.cancel_scope, started)
                async with client:
                    started.set()
                    process.client = client
                    process.ready.set()
                    log.info("upstream `%s`: process for task %s", up.name, process.task_id)
                    why = await self._keep(process, lease)
                    log.info(
                        "upstream `%s`: task %s's process closes (%s)",
                        up.name,
                        process.task_id,
                        why,
                    )
                tg.cancel_scope.cancel()
        except Exception as exc:  # the gateway stays up whatever one process does
            log.warning("upstream `%s` (task %s): %s", up.name, process.task_id, describe(exc))
        finally:
            self._forget(process)
            process.client = None
            if not process.ready.is_set():
                process.failure = process.failure or NoProcess
                process.ready.set()
            if lease is not None:  # after the process is gone; shielded
                await self.lending.give_back(lease.id, "process_closed")

    async def _watchdog(self, scope: anyio.CancelScope, started: anyio.Event) -> None:
        """Give up on a process that is not connected within the upstream's connect timeout."""
        with anyio.move_on_after(self.up.connect_timeout):
            await started.wait()
            return
        log.warning(
            "upstream `%s`: a task's process did not start within its timeout", self.up.name
        )
        scope.cancel()

    async def _keep(self, process: Process, lease: Lease) -> str:
        """Keep the process while it should live; why it should not any more."""
        renew_at = time.monotonic() + self.lending.seconds_left(lease) * RENEW_AT
        while True:
            now = time.monotonic()
            due = [now + CHECK_EVERY]
            if not process.retired:
                due.append(renew_at)
            if process.in_flight == 0:
                due.append(process.last_used + self.up.idle_timeout)
            with anyio.move_on_after(max(0.0, min(due) - now)):
                await process.wake.wait()
            process.wake = anyio.Event()
            if process.lost:
                return "connection lost"
            if not await self.lending.live(lease.id):
                return "lease ended"
            if process.in_flight == 0:
                if process.retired:
                    return "retired"
                if time.monotonic() - process.last_used >= self.up.idle_timeout:
                    return "idle"
            if not process.retired and time.monotonic() >= renew_at:
                at_most = lease.expires_at >= lease.max_expires_at  # renewing gains nothing
                renewed = None if at_most else await self.lending.renew(lease.id)
                if renewed is None or renewed[1] is not None:
                    self._retire(process)  # cannot be renewed, or the process keeps the old value
                else:
                    lease = renewed[0]
                    renew_at = time.monotonic() + self.lending.seconds_left(lease) * RENEW_AT

    def _retire(self, process: Process) -> None:
        process.retired = True
        if self._live.get(process.task_id) is process:
            del self._live[process.task_id]
        self._retiring.add(process)

    def _forget(self, process: Process) -> None:
        if self._live.get(process.task_id) is process:
            del self._live[process.task_id]
        self._retiring.discard(process)
