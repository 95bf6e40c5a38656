"""Policy versions: validate a directory, test it, store it immutably, activate it; serve the
active compiled version to the decision path.

A broken version is refused and the active one stays. No active version means every call is
denied (the governor turns ``None`` into a recorded ``no_active_policy`` denial).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tribune.core.canonical import digest, keyed_digest
from tribune.core.model import PolicyVersion, RecordKind
from tribune.errors import NotFound, PolicyInvalid
from tribune.policy.bundle import compile_bundle, load_bundle
from tribune.policy.engine import CompiledPolicy
from tribune.policy.testing import CaseResult, load_cases, run_policy_tests
from tribune.ports import Clock, Ids, Store
from tribune.services.registry import Events


@dataclass(frozen=True, slots=True)
class Checked:
    """A compiled candidate and its test results."""

    compiled: CompiledPolicy
    files: Mapping[str, str]
    results: list[CaseResult]

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


class PolicyService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: Ids,
        events: Events,
        *,
        refresh_seconds: float = 1.0,
        digest_key: bytes | None = None,
    ) -> None:
        self.store = store
        # With a key, a version's digest is an HMAC: someone who can edit the store but not
        # read the home's keys cannot re-seal edited policy files.
        self.digest_key = digest_key
        self.clock = clock
        self.ids = ids
        self.events = events
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._active: CompiledPolicy | None = None
        self._active_id: str | None = None
        self._checked_at = -1e9

    # ----------------------------------------------------------------- authoring

    def check_files(self, files: Mapping[str, str], version_id: str = "candidate") -> Checked:
        """Compile ``files`` against the schema and run their policy tests."""
        compiled = compile_bundle(files, version_id=version_id)
        results = run_policy_tests(compiled, load_cases(files))
        return Checked(compiled, files, results)

    def check_dir(self, path: Path) -> Checked:
        return self.check_files(load_bundle(path).files)

    def activate_files(
        self, files: Mapping[str, str], *, note: str = "", allow_untested: bool = False
    ) -> PolicyVersion:
        """Validate, test, store and activate a new immutable version.

        Raises ``PolicyInvalid`` (listing every problem) and changes nothing when the version
        does not compile, a policy test fails, or it has no tests (unless ``allow_untested``).
        """
        version_id = self.ids.new()
        checked = self.check_files(files, version_id)
        if not checked.results and not allow_untested:
            raise PolicyInvalid(
                "a policy version needs at least one policy test",
                hint="add cases under tests/*.yaml (or pass --allow-untested)",
            )
        if checked.failures:
            raise PolicyInvalid(
                f"{len(checked.failures)} policy test(s) failed",
                problems=[r.describe() for r in checked.failures],
                hint="fix the policies or the tests; the active version is unchanged",
            )
        version = PolicyVersion(
            id=version_id,
            created_at=self.clock.now(),
            files=dict(files),
            digest=self._digest(files),
            note=note,
        )
        self.store.add_policy_version(version)
        self.store.activate_policy_version(version_id)
        self.events.record(
            RecordKind.EVENT,
            {
                "event": "policy_activated",
                "version": version_id,
                "digest": version.digest,
                "note": note,
            },
        )
        with self._lock:
            self._active, self._active_id = checked.compiled, version_id
            self._checked_at = time.monotonic()
        return version

    def activate_dir(
        self, path: Path, *, note: str = "", allow_untested: bool = False
    ) -> PolicyVersion:
        return self.activate_files(
            load_bundle(path).files, note=note or str(path), allow_untested=allow_untested
        )

    def rollback(self, version_id: str) -> PolicyVersion:
        """Re-activate an earlier stored version."""
        version = self.store.get_policy_version(version_id)
        if version is None:
            raise NotFound(f"unknown policy version `{version_id}`")
        compiled = self._compile_stored(version)
        self.store.activate_policy_version(version_id)
        self.events.record(
            RecordKind.EVENT,
            {
                "event": "policy_activated",
                "version": version_id,
                "digest": version.digest,
                "note": "rollback",
            },
        )
        with self._lock:
            self._active, self._active_id = compiled, version_id
            self._checked_at = time.monotonic()
        return version

    def _digest(self, files: Mapping[str, str]) -> str:
        if self.digest_key is None:
            return digest(dict(files))
        return keyed_digest(dict(files), self.digest_key)

    def _compile_stored(self, version: PolicyVersion) -> CompiledPolicy:
        """Compile a stored version after checking its files still match the digest recorded
        (and audited) when it was activated: edited rows in the store are refused."""
        if not hmac.compare_digest(self._digest(version.files), version.digest):
            raise PolicyInvalid(
                f"policy version `{version.id}` does not match its digest",
                hint="the stored files were changed after activation; activate a version again",
            )
        return compile_bundle(version.files, version_id=version.id)

    # ----------------------------------------------------------------- serving

    def active(self) -> CompiledPolicy | None:
        """The active compiled version, re-checked against the store at most every
        ``refresh_seconds`` so an activation by another process takes effect."""
        now = time.monotonic()
        if now - self._checked_at < self.refresh_seconds:
            return self._active
        with self._lock:
            if now - self._checked_at < self.refresh_seconds:
                return self._active
            active_id = self.store.active_policy_id()  # cheap: the files load on change only
            version = (
                self.store.active_policy_version()
                if active_id is not None and active_id != self._active_id
                else None
            )
            if active_id is None:
                self._active, self._active_id = None, None
            elif version is not None:
                try:
                    self._active = self._compile_stored(version)
                    self._active_id = version.id
                except PolicyInvalid:
                    # INVARIANT: stored versions compiled when activated; if this code can no
                    # longer compile one, deny everything rather than guess.
                    self._active, self._active_id = None, None
            self._checked_at = now
            return self._active
