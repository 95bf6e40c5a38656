"""Settings for identities, task tokens, credential sources and approvals: the ``[identity]``,
``[tokens]``, ``[credentials.<name>]`` and ``[approvals]`` tables of ``tribune.toml``. Pure
parsing.

A credential source is what an admin lets tasks borrow: a backend (``token``, ``postgres``,
``secret``), the backend's options (an audience, a database and grants, a secret's name), the
tools it serves and its lifetimes. Agents choose a source by name; they never choose its scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tribune.core.model import check_name
from tribune.errors import ConfigError, TribuneError

BACKENDS = {
    "token": frozenset({"audience"}),
    "postgres": frozenset({"url", "grants", "connect_host", "connect_port", "connection_limit"}),
    "secret": frozenset({"secret"}),
}
DEFAULT_BASE_URL = "http://127.0.0.1:8700"
SOURCE_KEYS = frozenset({"backend", "tools", "ttl", "max_ttl", "description"})


@dataclass(frozen=True, slots=True)
class CredentialSource:
    name: str
    backend: str
    tools: frozenset[str]  # a lease serves calls of these tools (and tasks declaring one)
    ttl: int = 300  # seconds a lease lives unless renewed
    max_ttl: int = 3600  # no renewal goes past issue time + this
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def scope(self) -> dict[str, Any]:
        """What the backend is asked to mint, before any call binding."""
        if self.backend == "token":
            return {"audience": self.options["audience"]}
        if self.backend == "postgres":
            return {"target": self.name, "template": "default"}
        return {"name": self.options["secret"]}


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    assertion_max_ttl: int = 300  # longest lifetime of an agent's signed assertion
    spiffe_bundles: dict[str, str] = field(default_factory=dict)  # trust domain -> JWKS path
    svid_agents: dict[str, str] = field(default_factory=dict)  # SVID id -> agent name
    token_max_ttl: int | None = None  # task tokens; default: tasks.max_ttl
    token_retire_after: int | None = None  # drop rotated-out keys after; default max_ttl + 1 day


@dataclass(frozen=True, slots=True)
class ApprovalSettings:
    ttl: int = 3600  # seconds a ticket stays open (never past its task's end)
    base_url: str = DEFAULT_BASE_URL  # where links in notifications point
    webhooks: tuple[Any, ...] = ()  # raw [[approvals.webhooks]] tables, parsed at wiring
    max_wait: int = 300  # longest an enforcement point may hold a call waiting for a decision


def parse_approvals(raw: dict[str, Any]) -> ApprovalSettings:
    known = frozenset({"ttl", "base_url", "webhooks", "max_wait"})
    table = _table(raw.get("approvals", {}), "approvals", known)
    base_url = table.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError("`approvals.base_url` must be an http(s) URL")
    webhooks = table.get("webhooks", [])
    if not isinstance(webhooks, list):
        raise ConfigError(
            "`approvals.webhooks` must be an array of tables ([[approvals.webhooks]])"
        )
    return ApprovalSettings(
        ttl=_positive(table.get("ttl", 3600), "approvals.ttl"),
        base_url=base_url.rstrip("/"),
        webhooks=tuple(webhooks),
        max_wait=_positive(table.get("max_wait", 300), "approvals.max_wait"),
    )


def _table(raw: Any, where: str, known: frozenset[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"`{where}` must be a table")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key `{unknown[0]}` in `{where}`")
    return raw


def _positive(value: Any, where: str) -> int:
    if type(value) is not int or value <= 0:
        raise ConfigError(f"`{where}` must be a positive integer")
    return value


def _strings(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"`{where}` must be a table of strings")
    return dict(value)


def parse_identity(raw: dict[str, Any]) -> IdentitySettings:
    identity = _table(
        raw.get("identity", {}), "identity", frozenset({"assertion_max_ttl", "spiffe"})
    )
    spiffe = _table(identity.get("spiffe", {}), "identity.spiffe", frozenset({"bundles", "agents"}))
    tokens = _table(raw.get("tokens", {}), "tokens", frozenset({"max_ttl", "retire_after"}))
    return IdentitySettings(
        assertion_max_ttl=_positive(
            identity.get("assertion_max_ttl", 300), "identity.assertion_max_ttl"
        ),
        spiffe_bundles=_strings(spiffe.get("bundles", {}), "identity.spiffe.bundles"),
        svid_agents=_strings(spiffe.get("agents", {}), "identity.spiffe.agents"),
        token_max_ttl=(
            _positive(tokens["max_ttl"], "tokens.max_ttl") if "max_ttl" in tokens else None
        ),
        token_retire_after=(
            _positive(tokens["retire_after"], "tokens.retire_after")
            if "retire_after" in tokens
            else None
        ),
    )


def parse_sources(raw: Any) -> dict[str, CredentialSource]:
    """The ``[credentials.<name>]`` tables."""
    if not isinstance(raw, dict):
        raise ConfigError("`credentials` must be a table of credential sources")
    return {name: _source(name, value) for name, value in raw.items()}


def _source(name: str, raw: Any) -> CredentialSource:
    where = f"credentials.{name}"
    try:
        check_name("credential source", name)
    except TribuneError as exc:
        raise ConfigError(f"`{where}`: {exc.message}", hint=exc.hint) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"`{where}` must be a table")
    backend = raw.get("backend")
    if backend not in BACKENDS:
        raise ConfigError(
            f"`{where}.backend` must be one of {', '.join(sorted(BACKENDS))}",
            hint='e.g. backend = "token"',
        )
    _table(raw, where, SOURCE_KEYS | BACKENDS[backend])
    tools = raw.get("tools")
    if not isinstance(tools, list) or not tools or not all(isinstance(t, str) for t in tools):
        raise ConfigError(
            f"`{where}.tools` must list the tools this credential serves",
            hint='e.g. tools = ["crm.read"]',
        )
    ttl = _positive(raw.get("ttl", 300), f"{where}.ttl")
    max_ttl = _positive(raw.get("max_ttl", max(ttl, 3600)), f"{where}.max_ttl")
    if ttl > max_ttl:
        raise ConfigError(f"`{where}.ttl` must not exceed `{where}.max_ttl`")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"`{where}.description` must be a string")
    options = {k: v for k, v in raw.items() if k in BACKENDS[backend]}
    required = {"token": "audience", "postgres": "url", "secret": "secret"}[backend]
    if required not in options:
        raise ConfigError(f"`{where}` needs `{required}` for backend `{backend}`")
    return CredentialSource(
        name=name,
        backend=backend,
        tools=frozenset(tools),
        ttl=ttl,
        max_ttl=max_ttl,
        options=options,
        description=description,
    )
