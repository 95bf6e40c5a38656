"""The ``Credentials`` part of ``MemoryStore``, kept as codec JSON like the rest of it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from tribune.core.model import (
    Agent,
    AgentKey,
    Lease,
    LeaseState,
    SealedSecret,
    Task,
    TokenState,
)
from tribune.errors import Conflict, InvalidInput, UnknownTask
from tribune.store import codec
from tribune.store.sql_credentials import MAX_LEASES


class MemoryCredentials:
    _tasks: dict[str, str]

    def _agent_of(self, agent_id: str) -> Agent | None:
        raise NotImplementedError  # MemoryStore.get_agent

    @property
    def _lock(self) -> threading.RLock:
        raise NotImplementedError  # MemoryStore's lock, which refuses use after close

    def _init_credentials(self) -> None:
        self._agent_keys: dict[tuple[str, str], str] = {}
        self._used_ids: dict[tuple[str, str], datetime] = {}
        self._revoked_ids: dict[str, datetime] = {}
        self._leases: dict[str, str] = {}
        self._secrets: dict[str, str] = {}

    # ------------------------------------------------------------------ agent keys

    def add_agent_key(self, key: AgentKey) -> None:
        text = codec.dumps(key)
        with self._lock:
            if (key.agent_id, key.kid) in self._agent_keys:
                raise Conflict(f"agent `{key.agent_id}` already has key `{key.kid}`")
            self._agent_keys[(key.agent_id, key.kid)] = text

    def list_agent_keys(self, agent_id: str) -> list[AgentKey]:
        with self._lock:
            texts = [t for (a, _), t in self._agent_keys.items() if a == agent_id]
        found = [codec.loads(AgentKey, t) for t in texts]
        return sorted(found, key=lambda k: (k.created_at, k.kid))

    def revoke_agent_key(self, agent_id: str, kid: str, at: datetime) -> bool:
        codec.check_aware(at)
        with self._lock:
            text = self._agent_keys.get((agent_id, kid))
            if text is None:
                return False
            key = codec.loads(AgentKey, text)
            if key.revoked_at is not None:
                return False
            data = codec.encode(key) | {"revoked_at": codec.encode(at)}
            self._agent_keys[(agent_id, kid)] = codec.dumps(codec.decode(AgentKey, data))
            return True

    # ------------------------------------------------------------------ token ids

    def use_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        codec.check_aware(expires_at)
        with self._lock:
            if (issuer, jti) in self._used_ids:
                return False
            self._used_ids[(issuer, jti)] = expires_at
            return True

    def revoke_token(self, jti: str, expires_at: datetime, at: datetime) -> bool:
        codec.check_aware(expires_at), codec.check_aware(at)
        with self._lock:
            if jti in self._revoked_ids:
                return False
            self._revoked_ids[jti] = expires_at
            return True

    def token_revoked(self, jti: str) -> bool:
        with self._lock:
            return jti in self._revoked_ids

    def token_state(self, task_id: str, jti: str) -> TokenState | None:
        with self._lock:
            task_text = self._tasks.get(task_id)
            revoked = jti in self._revoked_ids
        if task_text is None:
            return None
        task = codec.loads(Task, task_text)
        agent = self._agent_of(task.agent_id)
        return TokenState(
            agent_id=task.agent_id,
            task_state=task.state,
            task_expires_at=task.expires_at,
            agent_status=agent.status if agent is not None else None,
            revoked=revoked,
        )

    def prune_token_ids(self, before: datetime) -> int:
        codec.check_aware(before)
        with self._lock:
            used = [k for k, exp in self._used_ids.items() if exp < before]
            revoked = [k for k, exp in self._revoked_ids.items() if exp < before]
            for u in used:
                del self._used_ids[u]
            for r in revoked:
                del self._revoked_ids[r]
            return len(used) + len(revoked)

    # ------------------------------------------------------------------ leases

    def add_lease(self, lease: Lease) -> None:
        text = codec.dumps(lease)
        with self._lock:
            if lease.task_id not in self._tasks:
                raise UnknownTask(f"unknown task `{lease.task_id}`")
            if lease.id in self._leases:
                raise Conflict(f"lease `{lease.id}` already exists")
            self._leases[lease.id] = text

    def get_lease(self, lease_id: str) -> Lease | None:
        with self._lock:
            text = self._leases.get(lease_id)
        return codec.loads(Lease, text) if text is not None else None

    def list_leases(
        self,
        *,
        task_ids: Sequence[str] | None = None,
        state: LeaseState | None = None,
        expired_at: datetime | None = None,
        limit: int = 1000,
    ) -> list[Lease]:
        if not 1 <= limit <= MAX_LEASES:
            raise InvalidInput(f"limit must be 1..{MAX_LEASES}")
        with self._lock:
            found = [codec.loads(Lease, t) for t in self._leases.values()]
        chosen = [
            lease
            for lease in found
            if (task_ids is None or lease.task_id in task_ids)
            and (state is None or lease.state is state)
            and (expired_at is None or lease.expires_at <= expired_at)
        ]
        chosen.sort(key=lambda lease: (lease.issued_at, lease.id))
        return chosen[:limit]

    def replace_lease(self, lease: Lease, expected: LeaseState) -> bool:
        text = codec.dumps(lease)
        with self._lock:
            old = self._leases.get(lease.id)
            if old is None:
                return False
            current = codec.loads(Lease, old)
            if (current.state, current.task_id, current.issued_at) != (
                expected,
                lease.task_id,
                lease.issued_at,
            ):
                return False
            self._leases[lease.id] = text
            return True

    # ------------------------------------------------------------------ sealed secrets

    def put_secret(self, secret: SealedSecret) -> None:
        text = codec.dumps(secret)
        with self._lock:
            self._secrets[secret.name] = text

    def get_secret(self, name: str) -> SealedSecret | None:
        with self._lock:
            text = self._secrets.get(name)
        return codec.loads(SealedSecret, text) if text is not None else None

    def list_secrets(self) -> list[SealedSecret]:
        with self._lock:
            texts = [self._secrets[k] for k in sorted(self._secrets)]
        return [codec.loads(SealedSecret, t) for t in texts]

    def delete_secret(self, name: str) -> bool:
        with self._lock:
            return self._secrets.pop(name, None) is not None
