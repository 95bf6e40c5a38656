"""Settings: pure parsing of ``tribune.toml`` (already read into a dict by bootstrap).

Tool entries here are *overrides*: MCP annotations and registered risk facts are hints, and the
operator's configuration wins. A tool defined only here is a complete definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from tribune.core.extract import KINDS, check_extractor
from tribune.core.model import Directory, ExtractorSpec, RiskFacts, Tool, check_name
from tribune.core.pointer import parse_pointer
from tribune.errors import ConfigError, TribuneError

TARGET_KINDS = frozenset({"email", "person", "account", "iban", "url", "host"})
RISK_KEYS = frozenset(f.name for f in fields(RiskFacts))


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
    default_task_ttl: int = 3600  # seconds
    max_task_ttl: int = 86400
    directory: Directory = field(default_factory=Directory)
    tools: dict[str, ToolOverride] = field(default_factory=dict)


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
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown key `{sorted(unknown)[0]}` in `{where}`")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(
            f"`{where}.kind` is `{kind}`", hint="one of " + ", ".join(sorted(KINDS))
        )
    pointer = raw.get("pointer")
    if not isinstance(pointer, str):
        raise ConfigError(f"`{where}.pointer` must be a JSON pointer such as `/to`")
    spec = ExtractorSpec(
        kind=kind,
        pointer=pointer,
        role=str(raw.get("role", "")),
        target=bool(raw.get("target", kind in TARGET_KINDS)),
        aggregate=raw.get("aggregate", "each"),
        required=bool(raw.get("required", False)),
        literal=str(raw.get("literal", "")),
    )
    try:
        check_extractor(spec)
    except TribuneError as exc:
        raise ConfigError(f"`{where}`: {exc.message}", hint=exc.hint) from None
    return spec


def _tool(name: str, raw: Any) -> ToolOverride:
    where = f"tools.{name}"
    check_name("tool", name)
    if not isinstance(raw, dict):
        raise ConfigError(f"`{where}` must be a table")
    known = {"description", "groups", "extractors", "sensitive_args", "data_classes", *RISK_KEYS}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown key `{sorted(unknown)[0]}` in `{where}`")
    risk = {}
    for key in RISK_KEYS & set(raw):
        if not isinstance(raw[key], bool):
            raise ConfigError(f"`{where}.{key}` must be true or false")
        risk[key] = raw[key]
    extractors = raw.get("extractors")
    return ToolOverride(
        name=name,
        description=raw.get("description"),
        risk=risk,
        groups=_strs(raw["groups"], f"{where}.groups") if "groups" in raw else None,
        extractors=(
            tuple(_extractor(e, f"{where}.extractors[{i}]") for i, e in enumerate(extractors))
            if isinstance(extractors, list)
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


def parse_settings(raw: dict[str, Any], normalise: Any = None) -> Settings:
    """Parse a ``tribune.toml`` document. ``normalise`` maps directory entries to their canonical
    form (bootstrap passes ``core.targets.normalise_target``)."""
    norm = normalise or (lambda s: s.strip().lower())
    known = {"trust_domain", "environment", "store", "audit", "tasks", "directory", "tools"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown key `{sorted(unknown)[0]}` in tribune.toml")
    store = raw.get("store", {})
    audit = raw.get("audit", {})
    tasks = raw.get("tasks", {})
    d = raw.get("directory", {})
    try:
        directory = Directory(
            **{
                key: frozenset(norm(v) for v in _strs(d.get(key, []), f"directory.{key}"))
                for key in ("domains", "members", "accounts", "hosts", "counterparties")
            }
        )
    except ConfigError:
        raise
    except Exception as exc:  # a malformed entry the normaliser rejects
        raise ConfigError(f"invalid directory entry: {exc}") from None
    durability = store.get("durability", "normal")
    if durability not in ("normal", "full"):
        raise ConfigError("`store.durability` must be `normal` or `full`")
    checkpoint_every = audit.get("checkpoint_every", 1000)
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ConfigError("`audit.checkpoint_every` must be a positive integer")
    tools_raw = raw.get("tools", {})
    if not isinstance(tools_raw, dict):
        raise ConfigError("`tools` must be a table of tool tables")
    return Settings(
        trust_domain=str(raw.get("trust_domain", "tribune.local")),
        environment=str(raw.get("environment", "development")),
        store_url=str(store.get("url", "")),
        durability=durability,
        checkpoint_every=checkpoint_every,
        default_task_ttl=int(tasks.get("default_ttl", 3600)),
        max_task_ttl=int(tasks.get("max_ttl", 86400)),
        directory=directory,
        tools={name: _tool(name, t) for name, t in tools_raw.items()},
    )
