"""Wiring: the only place that turns settings into adapters, services and the public facade.

A Tribune home (``TRIBUNE_HOME``, default ``~/.tribune``) holds ``tribune.toml``, ``policies/``
(the directory people author), ``keys/`` (the audit signing key) and ``tribune.db``.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from tribune.config import Settings, parse_settings
from tribune.core.model import agent_spiffe_id
from tribune.core.taint import injection_markers
from tribune.core.targets import normalise_target
from tribune.credentials.factory import build_backends
from tribune.crypto import (
    Ed25519Signer,
    Ed25519Verifier,
    load_or_create_key_pair,
    load_or_create_secret,
)
from tribune.crypto.keys import load_public_keys, save_public_key
from tribune.crypto.sealing import Sealer
from tribune.crypto.token_keys import TokenKeys
from tribune.errors import ConfigError
from tribune.policy.bundle import default_pack
from tribune.ports import Clock, Ids, Store
from tribune.sdk.embedded import EmbeddedBackend
from tribune.sdk.governed import Governed
from tribune.services.access import AccessService
from tribune.services.approvals import ApprovalService
from tribune.services.audit import AuditService
from tribune.services.governor import Governor
from tribune.services.identity import IdentityService
from tribune.services.introspection import Introspection
from tribune.services.killswitch import KillSwitch
from tribune.services.leases import LeaseService
from tribune.services.policies import PolicyService
from tribune.services.registry import RegistryService
from tribune.services.secrets import SecretService
from tribune.services.tasks import TaskService
from tribune.services.tokens import TokenService
from tribune.store import open_store
from tribune.system import SystemClock, TimeOrderedIds
from tribune.webhooks import WebhookNotifier, parse_webhooks

CONFIG_TEMPLATE = """\
# Tribune configuration. Every key is optional; see docs/quickstart.md and docs/policies.md.

trust_domain = "tribune.local"   # agents are spiffe://<trust_domain>/agent/<name>
environment = "development"

[store]
# url = "postgresql+psycopg://user@host/db"   # default: tribune.db in this directory
durability = "normal"    # "normal": survives a process kill; "full": survives power loss

[audit]
checkpoint_every = 1000  # sign a checkpoint of the chain every N records
# false: a call's intent record is committed before it is decided, then its decision record.
# true: both are committed together after deciding (one commit instead of two; still before
# anything runs). See docs/configuration.md.
group_commit = false

[tasks]
default_ttl = 3600
max_ttl = 86400
# What taints a task besides tools marked untrusted_output: "markers" also flags results that
# carry instruction-like text (prompt-injection markers); "none" turns that heuristic off.
taint_classifier = "markers"

# The organisation as policy sees it: targets are classified internal / known / named / unknown.
[directory]
domains = []          # e.g. ["example.com"]
members = []          # e-mail addresses of people in the organisation
accounts = []         # own bank accounts (IBAN) and account ids
hosts = []            # own hosts
counterparties = []   # known outside e-mails, domains, accounts and hosts

# Tool overrides: annotations are hints, this file wins. Example:
# [tools."payments.pay"]
# groups = ["payments"]
# destructive = true
# open_world = true
# sensitive_args = ["/card"]
# extractors = [
#   { kind = "iban", pointer = "/to_account", role = "payee" },
#   { kind = "amount", pointer = "/amount", aggregate = "sum" },
# ]
"""


def load_bundles(home: Path, paths: dict[str, str]) -> dict[str, dict[str, Any]]:
    """SPIFFE trust bundles (JWKS documents) by trust domain; relative paths are in ``home``."""
    bundles: dict[str, dict[str, Any]] = {}
    for domain, name in paths.items():
        path = (home / name).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"SPIFFE bundle for `{domain}` at `{path}` is unreadable: {exc}"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ConfigError(f"SPIFFE bundle `{path}` is not a JWKS document")
        bundles[domain] = data
    return bundles


def resolve_home(home: Path | str | None) -> Path:
    if home is None:
        home = os.environ.get("TRIBUNE_HOME") or Path.home() / ".tribune"
    return Path(home).expanduser().resolve()


def pack_files() -> dict[str, str]:
    """The shipped default policy pack as ``{relative path: text}``."""
    return dict(default_pack().files)


def load_settings(home: Path) -> Settings:
    path = home / "tribune.toml"
    if not path.exists():
        return Settings()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"`{path}` is not valid TOML: {exc}") from None
    return parse_settings(raw, normalise_target)


class Tribune(Governed):
    """An open Tribune: services over one store. Use ``tribune.open()`` to get one."""

    def __init__(
        self,
        home: Path,
        settings: Settings,
        store: Store,
        *,
        clock: Clock | None = None,
        ids: Ids | None = None,
    ) -> None:
        self.home = home
        self.settings = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.ids = ids or TimeOrderedIds()
        keys = home / "keys"
        pair = load_or_create_key_pair(keys)
        if not (keys / f"{pair.key_id}.pub.pem").exists():
            save_public_key(keys, pair.public_key)
        digest_key = load_or_create_secret(keys)
        verifier = Ed25519Verifier(load_public_keys(keys))
        if not verifier.knows(pair.key_id):
            verifier.add(pair.public_key)
        self.audit = AuditService(
            store,
            self.clock,
            Ed25519Signer(pair),
            verifier,
            checkpoint_every=settings.checkpoint_every,
            background=True,
        )
        self.registry = RegistryService(store, self.clock, self.audit, settings.trust_domain)
        self.access = AccessService(store, self.clock, self.ids, self.audit, self.registry)
        self.tasks = TaskService(
            store,
            self.clock,
            self.ids,
            self.audit,
            self.registry,
            normalise_target,
            default_ttl=settings.default_task_ttl,
            max_ttl=settings.max_task_ttl,
            digest_key=digest_key,
        )
        # Task tokens: old keys verify for a day past the longest token lifetime after rotation.
        ident = settings.identity
        token_ttl = ident.token_max_ttl or settings.max_task_ttl
        self.token_keys = TokenKeys(
            keys / "tokens", self.clock, retire_after=ident.token_retire_after or token_ttl + 86400
        )
        self.tokens = TokenService(
            store,
            self.clock,
            self.token_keys,
            issuer=f"spiffe://{settings.trust_domain}/tribune",
            audience=f"spiffe://{settings.trust_domain}/tribune",
            max_ttl=token_ttl,
        )
        self.secrets = SecretService(store, self.clock, self.audit, Sealer(keys))
        self.policies = PolicyService(
            store, self.clock, self.ids, self.audit, digest_key=digest_key
        )
        self.notifier: WebhookNotifier | None = None
        hooks = parse_webhooks(list(settings.approvals.webhooks), os.environ)
        if hooks:
            self.notifier = WebhookNotifier(hooks, base_url=settings.approvals.base_url)
        self.approvals = ApprovalService(
            store,
            self.clock,
            self.ids,
            self.audit,
            ttl=settings.approvals.ttl,
            notify=self.notifier.notify if self.notifier is not None else None,
        )
        self.governor = Governor(
            store,
            self.clock,
            self.ids,
            self.audit,
            self.policies,
            settings,
            classifier=injection_markers if settings.taint_classifier == "markers" else None,
            digest_key=digest_key,
            approvals=self.approvals,
        )
        self.registry.on_change.append(self.governor.invalidate)
        self.leases = LeaseService(
            store,
            self.clock,
            self.ids,
            self.audit,
            build_backends(
                settings.credentials,
                store,
                self.clock,
                self.token_keys,
                issuer=self.tokens.issuer,
                secrets=self.secrets,
            ),
            settings.credentials,
            verdict_of=self.governor.verdict_of,
            auto_sweep=clock is None,  # a hand-moved clock (tests, replays) sweeps by hand
        )
        self.tasks.on_end.append(self._revoke_leases)
        self.leases.also_sweep.append(self.approvals.expire_due)  # approval_expired records
        self.killswitch = KillSwitch(
            store, self.clock, self.audit, self.registry, self.tasks, self.leases, self.approvals
        )
        self.introspection = Introspection(
            store, self.clock, self.token_keys, self.tokens, self.leases, self.audit
        )
        self.identity = IdentityService(
            store,
            self.clock,
            self.audit,
            self.registry,
            audience=self.tokens.audience,
            token_service=self.tokens,
            spiffe_bundles=load_bundles(home, ident.spiffe_bundles),
            svid_agents={
                svid: agent_spiffe_id(settings.trust_domain, name)
                for svid, name in ident.svid_agents.items()
            },
            max_assertion_ttl=ident.assertion_max_ttl,
        )
        super().__init__(EmbeddedBackend(self))

    def _revoke_leases(self, task_id: str, reason: str) -> None:
        self.leases.revoke_tasks([task_id], reason)
        self.approvals.close_task(task_id)

    def close(self) -> None:
        """Stop the lease sweeper, sign a final checkpoint over what this process wrote, then
        close the store.

        A process that only read signs nothing, so a read-only command still works (and
        `audit verify` still reports) when the chain has been tampered with.
        """
        try:
            self.leases.stop_sweeper()
            if self.notifier is not None:
                self.notifier.close(timeout=5.0)  # what cannot go out in time is logged, dropped
            self.audit.stop()
            if self.audit.wrote:
                self.audit.checkpoint()
        finally:
            self.store.close()

    def __enter__(self) -> Tribune:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _store_url(home: Path, settings: Settings) -> str:
    return settings.store_url or f"sqlite:///{home / 'tribune.db'}"


def init_home(home: Path) -> Path:
    """Create (or complete) a home: config, policy pack, keys, database, active policy."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = home / "tribune.toml"
    if not config.exists():
        # First init: the home holds the audit database and keys; an existing directory (or a
        # umask) must not leave it open to other users. Later `chmod`s by the owner stand.
        home.chmod(0o700)
        config.write_text(CONFIG_TEMPLATE, encoding="utf-8")
    policies = home / "policies"
    if not policies.exists():
        copy_pack(policies)
    with open_tribune(home) as tr:
        if tr.store.active_policy_version() is None:
            tr.policies.activate_dir(policies, note="initial: default policy pack")
    return home


def open_tribune(
    home: Path | str | None = None,
    *,
    create: bool = False,
    clock: Clock | None = None,
    ids: Ids | None = None,
) -> Tribune:
    """Open the Tribune at ``home``; with ``create``, initialise it first if missing."""
    path = resolve_home(home)
    if not (path / "tribune.toml").exists():
        if not create:
            raise ConfigError(
                f"no Tribune home at `{path}`", hint="run `tribune init` or pass --home"
            )
        init_home(path)
    settings = load_settings(path)
    store = open_store(_store_url(path, settings), durability=settings.durability)
    try:
        return Tribune(path, settings, store, clock=clock, ids=ids)
    except BaseException:
        store.close()
        raise


def copy_pack(dest: Path) -> None:
    """Write the default policy pack into ``dest`` (for users to copy and edit)."""
    for rel, text in pack_files().items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
