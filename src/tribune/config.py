"""Settings: pure parsing of ``tribune.toml`` (already read into a dict by bootstrap).

Tool entries here are *overrides*: MCP annotations and registered risk facts are hints, and the
operator's configuration wins. A tool defined only here is a complete definition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from tribune.config_sources import (
    ApprovalSettings,
    CredentialSource,
    IdentitySettings,
    parse_approvals,
    parse_identity,
    parse_sources,
)
from tribune.core.extract import KINDS, check_extractor
from tribune.core.model import (
    TRUST_DOMAIN_RE,
    Directory,
    ExtractorSpec,
    RiskFacts,
    Tool,
    check_name,
)
from tribune.core.pointer import parse_pointer
from tribune.core.targets import normalise_target
from tribune.errors import ConfigError, TribuneError
from tribune.gateway.config import GatewaySettings, parse_gateway

RISK_KEYS = frozenset(f.name for f in fields(RiskFacts))
DIRECTORY_KEYS = ("domains", "members", "accounts", "hosts", "counterparties")
SECTIONS = {
    "store": frozenset({"url", "durability"}),
    "audit": frozenset({"checkpoint_every", "group_commit"}),
    "tasks": frozenset({"default_ttl", "max_ttl", "taint_classifier"}),
    "directory": frozenset(DIRECTORY_KEYS),
}


@dataclass(frozen=True, slots=True)
class ToolOverride:
    """Configured facts for one tool; ``None`` fields keep the registered value."""

    name: str
    description: str | None = None
    risk: dict[str, bool] = field(default_factory=dict)
    groups: tuple[str, ...] | None = None
    extractors: tuple[ExtractorSpec, ...] | None = None
    sensitive_args: tuple[str, ...] | None = None
    data_classes: tuple[str, ...] | None = None

    def apply(self, tool: Tool | None) -> Tool:
        """The effective tool: ``tool`` (or a fresh one) with these overrides on top."""
        base = tool or Tool(name=self.name)
        risk = replace(base.risk, **self.risk) if self.risk else base.risk
        return replace(
            base,
            description=self.description if self.description is not None else base.description,
            risk=risk,
            groups=self.groups if self.groups is not None else base.groups,
            extractors=self.extractors if self.extractors is not None else base.extractors,
            sensitive_args=(
                self.sensitive_args if self.sensitive_args is not None else base.sensitive_args
            ),
            data_classes=self.data_classes if self.data_classes is not None else base.data_classes,
        )


@dataclass(frozen=True, slots=True)
class Settings:
    trust_domain: str = "tribune.local"
    environment: str = "development"
    store_url: str = ""  # empty: <home>/tribune.db
    durability: str = "normal"  # normal | full
    checkpoint_every: int = 1000
    group_commit: bool = False  # intent and decision in one commit instead of two
    taint_classifier: str = "markers"  # markers | none: what else taints a task
    default_task_ttl: int = 3600  # seconds
    max_task_ttl: int = 86400
    directory: Directory = field(default_factory=Directory)
    tools: dict[str, ToolOverride] = field(default_factory=dict)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    credentials: dict[str, CredentialSource] = field(default_factory=dict)
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)


def _refuse_unknown(raw: dict[str, Any], known: Iterable[str], where: str) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        hint = None
        if isinstance(raw[unknown[0]], dict) and where.startswith("tools."):
            hint = 'quote dotted tool names: [tools."a.b"]'
        raise ConfigError(f"unknown key `{unknown[0]}` in `{where}`", hint=hint)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"`{name}` must be a table")
    _refuse_unknown(value, SECTIONS[name], name)
    return value


def _int(value: Any, where: str) -> int:
    # bool is an int in Python; `true` is not a count
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"`{where}` must be a positive integer")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"`{where}` must be a string")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"`{where}` must be true or false")
    return value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"`{where}` must be a list of strings")
    return tuple(value)


def _pointers(value: Any, where: str) -> tuple[str, ...]:
    pointers = _strs(value, where)
    for p in pointers:
        try:
            parse_pointer(p)
        except TribuneError as exc:
            raise ConfigError(f"`{where}`: {exc.message}", hint=exc.hint) from None
    return pointers


def _extractor(raw: Any, where: str) -> ExtractorSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"`{where}` must be a table")
    known = {"kind", "pointer", "role", "target", "aggregate", "required", "literal"}
    _refuse_unknown(raw, known, where)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"`{where}.kind` is `{kind}`", hint="one of " + ", ".join(sorted(KINDS)))
    pointer = raw.get("pointer")
    if not isinstance(pointer, str):
        raise ConfigError(f"`{where}.pointer` must be a JSON pointer such as `/to`")
    spec = ExtractorSpec(
        kind=kind,
        pointer=pointer,
        role=_str(raw.get("role", ""), f"{where}.role"),
        target=_bool(raw["target"], f"{where}.target") if "target" in raw else None,
        aggregate=_str(raw.get("aggregate", "each"), f"{where}.aggregate"),
        required=_bool(raw.get("required", False), f"{where}.required"),
        literal=_str(raw.get("literal", ""), f"{where}.literal"),
    )
    try:
        check_extractor(spec)
    except TribuneError as exc:
        raise ConfigError(f"`{where}`: {exc.message}", hint=exc.hint) from None
    return spec


def _tool(name: str, raw: Any) -> ToolOverride:
    where = f"tools.{name}"
    try:
        check_name("tool", name)
    except TribuneError as exc:
        raise ConfigError(f"`{where}`: {exc.message}", hint=exc.hint) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"`{where}` must be a table")
    known = {"description", "groups", "extractors", "sensitive_args", "data_classes", *RISK_KEYS}
    _refuse_unknown(raw, known, where)
    risk = {key: _bool(raw[key], f"{where}.{key}") for key in sorted(RISK_KEYS & set(raw))}
    extractors = raw.get("extractors")
    if extractors is not None and not isinstance(extractors, list):
        raise ConfigError(f"`{where}.extractors` must be a list of tables")
    return ToolOverride(
        name=name,
        description=(
            _str(raw["description"], f"{where}.description") if "description" in raw else None
        ),
        risk=risk,
        groups=_strs(raw["groups"], f"{where}.groups") if "groups" in raw else None,
        extractors=(
            tuple(_extractor(e, f"{where}.extractors[{i}]") for i, e in enumerate(extractors))
            if extractors is not None
            else None
        ),
        sensitive_args=(
            _pointers(raw["sensitive_args"], f"{where}.sensitive_args")
            if "sensitive_args" in raw
            else None
        ),
        data_classes=(
            _strs(raw["data_classes"], f"{where}.data_classes") if "data_classes" in raw else None
        ),
    )


def parse_settings(raw: dict[str, Any], normalise: Callable[[str], str] | None = None) -> Settings:
    """Parse a ``tribune.toml`` document. ``normalise`` maps directory entries to their canonical
    form (default ``core.targets.normalise_target``, the form classification compares)."""
    norm = normalise or normalise_target
    top = {
        "trust_domain",
        "environment",
        "tools",
        "identity",
        "tokens",
        "credentials",
        "approvals",
        "gateway",
        *SECTIONS,
    }
    _refuse_unknown(raw, top, "tribune.toml")
    store = _section(raw, "store")
    audit = _section(raw, "audit")
    tasks = _section(raw, "tasks")
    d = _section(raw, "directory")
    try:
        directory = Directory(
            **{
                key: frozenset(norm(v) for v in _strs(d.get(key, []), f"directory.{key}"))
                for key in DIRECTORY_KEYS
            }
        )
    except ConfigError:
        raise
    except Exception as exc:  # a malformed entry the normaliser rejects
        raise ConfigError(f"invalid directory entry: {exc}") from None
    trust_domain = _str(raw.get("trust_domain", "tribune.local"), "trust_domain")
    if not TRUST_DOMAIN_RE.match(trust_domain):
        raise ConfigError(
            f"invalid trust domain `{trust_domain}`",
            hint="use lowercase letters, digits, `.` and `-`, e.g. `example.com`",
        )
    environment = _str(raw.get("environment", "development"), "environment")
    try:
        check_name("environment", environment)
    except TribuneError as exc:
        raise ConfigError(f"`environment`: {exc.message}", hint=exc.hint) from None
    durability = store.get("durability", "normal")
    if durability not in ("normal", "full"):
        raise ConfigError("`store.durability` must be `normal` or `full`")
    default_ttl = _int(tasks.get("default_ttl", 3600), "tasks.default_ttl")
    max_ttl = _int(tasks.get("max_ttl", 86400), "tasks.max_ttl")
    if default_ttl > max_ttl:
        raise ConfigError("`tasks.default_ttl` must not exceed `tasks.max_ttl`")
    classifier = tasks.get("taint_classifier", "markers")
    if classifier not in ("markers", "none"):
        raise ConfigError("`tasks.taint_classifier` must be `markers` or `none`")
    tools_raw = raw.get("tools", {})
    if not isinstance(tools_raw, dict):
        raise ConfigError("`tools` must be a table of tool tables")
    return Settings(
        trust_domain=trust_domain,
        environment=environment,
        store_url=_str(store.get("url", ""), "store.url"),
        durability=durability,
        checkpoint_every=_int(audit.get("checkpoint_every", 1000), "audit.checkpoint_every"),
        group_commit=_bool(audit.get("group_commit", False), "audit.group_commit"),
        taint_classifier=classifier,
        default_task_ttl=default_ttl,
        max_task_ttl=max_ttl,
        directory=directory,
        tools={name: _tool(name, t) for name, t in tools_raw.items()},
        identity=parse_identity(raw),
        credentials=parse_sources(raw.get("credentials", {})),
        approvals=parse_approvals(raw),
        gateway=parse_gateway(raw),
    )
