"""Leases: credentials minted just in time for one task (or one call) that die by themselves.

A lease is stored before its credential exists (so a crash in between leaves something to
revoke), then the backend mints the credential. It lives ``ttl`` seconds, can be renewed up to
``max_ttl`` after issue and never past its task's expiry; the sweeper expires what outlives its
TTL and revokes what outlives its task. Every issue, renewal, revocation and expiry is an audit
record; no record holds the credential.

Who may borrow what is the admin's choice, never the agent's: a credential source (config) names
the tools it serves. A lease for one call needs that call allowed by policy and its tool among
the source's tools; a lease for a whole task needs one of those tools in the task's declared
scope.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from tribune.config_sources import CredentialSource
from tribune.core.audit import ts_text
from tribune.core.model import Lease, LeaseState, RecordKind, Task, Verdict
from tribune.credentials import CredentialBackend
from tribune.errors import (
    Conflict,
    CredentialBackendUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    TribuneError,
)
from tribune.ports import Clock, Ids, Store
from tribune.services.registry import Events

log = logging.getLogger(__name__)
MAX_TTL = 86_400
PRUNE_EVERY = 12  # sweeps between prunes of expired token ids (a minute at the default pace)


@dataclass(frozen=True, slots=True)
class IssuedLease:
    """A lease and the credential to hand its holder (shown once, never stored)."""

    lease: Lease
    credential: dict[str, Any] = field(repr=False)


class LeaseService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: Ids,
        events: Events,
        backends: Mapping[str, CredentialBackend],
        sources: Mapping[str, CredentialSource],
        *,
        verdict_of: Callable[[str], Verdict] | None = None,
        auto_sweep: bool = False,
    ) -> None:
        for source in sources.values():
            if source.backend not in backends:
                raise InvalidInput(f"credential source `{source.name}` has no backend")
        self.store = store
        self.clock = clock
        self.ids = ids
        self.events = events
        self.backends = dict(backends)
        self.sources = dict(sources)
        self.verdict_of = verdict_of
        self.auto_sweep = auto_sweep  # start the sweeper with the first lease this process makes
        self.also_sweep: list[Callable[[], object]] = []  # other housekeeping, each sweep
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ issue

    def issue(
        self,
        task_id: str,
        source_name: str,
        *,
        action_id: str | None = None,
        verdict: Verdict | None = None,
        ttl: int | None = None,
        agent_id: str | None = None,
    ) -> IssuedLease:
        """Mint a credential from ``source_name`` for the task, or for one allowed call of it
        (``action_id``; in process, pass the ``verdict`` itself). ``agent_id``, when given, must
        be the task's agent."""
        source = self.sources.get(source_name)
        if source is None:
            raise NotFound(f"unknown credential source `{source_name}`", code="unknown_source")
        now = self.clock.now()
        task = self._active_task(task_id, now)
        if agent_id is not None and agent_id != task.agent_id:
            raise NotFound(f"unknown task `{task_id}`", code="unknown_task")
        backend = self.backends[source.backend]
        scope = backend.check_scope(source.scope())
        if verdict is None and action_id is not None:
            if self.verdict_of is None:
                raise InvalidInput("leases for one call need the decision path")
            verdict = self.verdict_of(action_id)
        if verdict is not None:
            self._check_call(verdict, task, source)
            action_id = verdict.action_id
            scope["call"] = {
                "tool": verdict.tool,
                "action": verdict.action_id,
                "action_digest": verdict.action_digest,
            }
        elif not self._task_may_use(task, source):
            raise Forbidden(
                f"task `{task_id}` declared none of the tools credential `{source.name}` serves",
                code="lease_not_in_scope",
                hint=f"declare one of {sorted(source.tools)} in the task's scope",
            )
        lease_id = self.ids.new()
        handle = backend.handle_for(lease_id, scope)
        scope["source"] = source.name
        life = _ttl(ttl, source.ttl)
        ceiling = min(now + timedelta(seconds=source.max_ttl), task.expires_at)
        lease = Lease(
            id=lease_id,
            task_id=task.id,
            agent_id=task.agent_id,
            backend=backend.name,
            scope=scope,
            issued_at=now,
            expires_at=min(now + timedelta(seconds=life), ceiling),
            max_expires_at=ceiling,
            action_id=action_id,
            handle=handle,
        )
        self.store.add_lease(lease)
        if self.auto_sweep and self._sweeper is None:
            self.start_sweeper()
        try:
            credential = backend.issue(lease)
        except BaseException as exc:
            # Take back whatever may have been made; if even that fails, the lease stays
            # active and the sweeper retries until the backend answers.
            self._try_end(lease, LeaseState.REVOKED, "issue_failed")
            if isinstance(exc, TribuneError):
                raise
            log.exception("credential backend %s failed to issue", backend.name)
            raise CredentialBackendUnavailable("the credential backend failed") from None
        self._event("lease_issued", lease)
        # The task may have ended while the backend worked: its revocation may have missed
        # this lease, so look again and take the credential back.
        again = self.store.get_task(task.id)
        if again is None or not again.is_active(self.clock.now()):
            self.revoke(lease.id, "task_ended")
            raise Conflict(f"task `{task_id}` ended", code="task_inactive")
        return IssuedLease(lease, credential)

    def _active_task(self, task_id: str, now: datetime) -> Task:
        task = self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"unknown task `{task_id}`", code="unknown_task")
        if not task.is_active(now):
            raise Conflict(f"task `{task_id}` is not active", code="task_inactive")
        return task

    def _check_call(self, verdict: Verdict, task: Task, source: CredentialSource) -> None:
        if verdict.task_id != task.id or not verdict.allowed:
            raise Forbidden("a lease for a call needs that call allowed", code="lease_not_allowed")
        if verdict.tool not in source.tools:
            raise Forbidden(
                f"credential `{source.name}` does not serve tool `{verdict.tool}`",
                code="lease_not_in_scope",
            )

    def _task_may_use(self, task: Task, source: CredentialSource) -> bool:
        if task.scope.tools & source.tools:
            return True
        if not task.scope.tool_groups:
            return False
        groups = task.scope.tool_groups
        return any(
            tool is not None and groups.intersection(tool.groups)
            for tool in map(self.store.get_tool, sorted(source.tools))
        )

    # ------------------------------------------------------------------ renew and revoke

    def renew(
        self, lease_id: str, ttl: int | None = None, *, agent_id: str | None = None
    ) -> IssuedLease:
        """Extend a live lease by ``ttl`` (default: its source's TTL) from now, within its
        ``max_expires_at``; a new credential where the backend makes one."""
        lease = self.get(lease_id, agent_id=agent_id)
        now = self.clock.now()
        if not lease.live(now):
            raise Conflict(f"lease `{lease_id}` is not active", code="lease_inactive")
        source = self.sources.get(str(lease.scope.get("source")))
        life = _ttl(ttl, source.ttl if source else 300)
        renewed = replace(
            lease,
            expires_at=min(now + timedelta(seconds=life), lease.max_expires_at),
            renewals=lease.renewals + 1,
        )
        if not self.store.replace_lease(renewed, LeaseState.ACTIVE):
            raise Conflict(f"lease `{lease_id}` is not active", code="lease_inactive")
        credential = self.backends[lease.backend].renew(renewed)
        self._event("lease_renewed", renewed)
        return IssuedLease(renewed, credential or {})

    def revoke(
        self, lease_id: str, reason: str = "requested", *, agent_id: str | None = None
    ) -> Lease:
        """Revoke a lease now; revoking a lease that already ended changes nothing."""
        lease = self.get(lease_id, agent_id=agent_id)
        if lease.state is not LeaseState.ACTIVE:
            return lease
        return self._end(lease, LeaseState.REVOKED, reason)

    def revoke_tasks(self, task_ids: Iterable[str], reason: str) -> tuple[int, int]:
        """Revoke every active lease of these tasks: (revoked, failed). A lease whose backend
        failed stays active and the sweeper retries it (its task is over)."""
        ids = list(dict.fromkeys(task_ids))
        revoked = failed = 0
        for start in range(0, len(ids), 500):
            found = self.store.list_leases(
                task_ids=ids[start : start + 500], state=LeaseState.ACTIVE, limit=10_000
            )
            for lease in found:
                done = self._try_end(lease, LeaseState.REVOKED, reason)
                revoked, failed = revoked + done, failed + 1 - done
        return revoked, failed

    def _end(self, lease: Lease, state: LeaseState, reason: str) -> Lease:
        """Take the credential back, then mark the lease ended (once: a racing end loses)."""
        # INVARIANT: the backend revokes before the lease is marked ended, so a failure here
        # leaves an active lease the sweeper retries, never a live credential nobody tracks.
        self.backends[lease.backend].revoke(lease)
        ended = replace(lease, state=state, ended_at=self.clock.now(), end_reason=reason)
        if self.store.replace_lease(ended, LeaseState.ACTIVE):
            self._event("lease_expired" if state is LeaseState.EXPIRED else "lease_revoked", ended)
            return ended
        return self.store.get_lease(lease.id) or ended

    # ------------------------------------------------------------------ read

    def get(self, lease_id: str, *, agent_id: str | None = None) -> Lease:
        lease = self.store.get_lease(lease_id)
        if lease is None or (agent_id is not None and lease.agent_id != agent_id):
            raise NotFound(f"unknown lease `{lease_id}`", code="unknown_lease")
        return lease

    def list(self, task_id: str, *, active_only: bool = False) -> list[Lease]:
        state = LeaseState.ACTIVE if active_only else None
        return self.store.list_leases(task_ids=[task_id], state=state)

    # ------------------------------------------------------------------ sweeper

    def sweep(self) -> int:
        """Expire leases past their expiry and revoke those whose task is no longer active;
        how many ended. A backend failure leaves the lease for the next sweep."""
        now = self.clock.now()
        ended = 0
        for lease in self.store.list_leases(state=LeaseState.ACTIVE, expired_at=now):
            ended += self._try_end(lease, LeaseState.EXPIRED, "expired")
        live = self.store.list_leases(state=LeaseState.ACTIVE)
        tasks = {t: self.store.get_task(t) for t in {lease.task_id for lease in live}}
        for lease in live:
            task = tasks[lease.task_id]
            if task is None or not task.is_active(now):
                ended += self._try_end(lease, LeaseState.REVOKED, "task_ended")
        return ended

    def _try_end(self, lease: Lease, state: LeaseState, reason: str) -> int:
        try:
            self._end(lease, state, reason)
        except Exception:
            log.exception("could not end lease %s; will retry", lease.id)
            return 0
        return 1

    def start_sweeper(self, every: float = 5.0) -> None:
        """Sweep in a daemon thread every ``every`` seconds until ``stop_sweeper``; every
        ``PRUNE_EVERY`` sweeps, also forget used and revoked ids of expired tokens."""
        if self._sweeper is not None:
            return
        self._stop.clear()

        def run() -> None:
            rounds = 0
            while not self._stop.wait(every):
                rounds += 1
                try:
                    self.sweep()
                    for chore in self.also_sweep:
                        chore()
                    if rounds % PRUNE_EVERY == 0:  # ids of tokens that can no longer pass
                        self.store.prune_token_ids(self.clock.now())
                except Exception:
                    log.exception("lease sweep failed")

        self._sweeper = threading.Thread(target=run, name="tribune-lease-sweeper", daemon=True)
        self._sweeper.start()

    def stop_sweeper(self) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=10)
            self._sweeper = None

    # ------------------------------------------------------------------ audit

    def _event(self, event: str, lease: Lease) -> None:
        body: dict[str, Any] = {
            "event": event,
            "lease": lease.id,
            "backend": lease.backend,
            "source": lease.scope.get("source"),
            "handle": lease.handle,
            "expires_at": ts_text(lease.expires_at),
        }
        if lease.action_id:
            body["call"] = lease.action_id
        if lease.end_reason:
            body["reason"] = lease.end_reason
        if event == "lease_renewed":
            body["renewals"] = lease.renewals
        self.events.record(
            RecordKind.EVENT,
            body,
            action_id=lease.action_id,
            task_id=lease.task_id,
            agent_id=lease.agent_id,
        )


def _ttl(requested: int | None, default: int) -> int:
    if requested is None:
        return default
    if type(requested) is not int or not 1 <= requested <= MAX_TTL:
        raise InvalidInput(f"ttl must be 1..{MAX_TTL} seconds")
    return requested
