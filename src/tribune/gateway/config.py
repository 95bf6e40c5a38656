"""Gateway settings: the ``[gateway]`` table of ``tribune.toml`` and its ``[[gateway.upstreams]]``.
Pure parsing.

Upstreams come from admin configuration only, never from agents: a stdio upstream is a command
the gateway runs (arbitrary code execution by design), an HTTP upstream a URL it connects to.

    [gateway]
    url = "http://127.0.0.1:8710/mcp"      # the gateway's own URL over HTTP (token resource)
    issuer_url = "http://127.0.0.1:8700"   # who issues the bearer tokens it accepts (Tribune)

    [[gateway.upstreams]]
    name = "time"                  # tools appear as `time.<tool>`, in tool group `time`
    command = "mcp-server-time"
    args = ["--local-timezone", "UTC"]
    env = { TZ = "UTC" }           # the only environment it gets besides PATH, HOME, ...
    timeout = 30                   # seconds one call may take (default 60)

    [[gateway.upstreams]]
    name = "search"
    url = "https://search.internal/mcp"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tribune.core.model import check_name
from tribune.errors import ConfigError, TribuneError

DEFAULT_URL = "http://127.0.0.1:8710/mcp"
DEFAULT_ISSUER_URL = "http://127.0.0.1:8700"
DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
GATEWAY_KEYS = frozenset({"url", "issuer_url", "upstreams"})
UPSTREAM_KEYS = frozenset({"name", "command", "args", "env", "url", "timeout"})


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """One MCP server behind the gateway: a stdio ``command`` or a streamable HTTP ``url``."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    url: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    upstreams: tuple[UpstreamSettings, ...] = ()
    url: str = DEFAULT_URL
    issuer_url: str = DEFAULT_ISSUER_URL


def _http_url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"`{where}` must be an http(s) URL")
    return value


def _timeout(value: Any, where: str) -> float:
    # bool is an int in Python; `true` is not a number of seconds
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"`{where}` must be a number of seconds")
    if not 0 < value <= MAX_TIMEOUT:
        raise ConfigError(f"`{where}` must be more than 0 and at most {int(MAX_TIMEOUT)} seconds")
    return float(value)


def _upstream(raw: Any, index: int) -> UpstreamSettings:
    where = f"gateway.upstreams[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"`{where}` must be a table")
    unknown = sorted(set(raw) - UPSTREAM_KEYS)
    if unknown:
        raise ConfigError(f"unknown key `{unknown[0]}` in `{where}`")
    name = raw.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"`{where}.name` must be a string", hint='e.g. name = "time"')
    try:
        check_name("upstream", name)
    except TribuneError as exc:
        raise ConfigError(f"`{where}.name`: {exc.message}", hint=exc.hint) from None
    # INVARIANT: no dot in an upstream name, so `<upstream>.<tool>` splits one way only.
    if "." in name:
        raise ConfigError(
            f"`{where}.name` `{name}` must not contain `.`",
            hint="tools are named `<upstream>.<tool>`; use `-` or `_` instead",
        )
    where = f"gateway.upstreams.{name}"
    command, url = raw.get("command"), raw.get("url")
    if (command is None) == (url is None):
        raise ConfigError(
            f"`{where}` needs exactly one of `command` (stdio) or `url` (streamable HTTP)"
        )
    timeout = _timeout(raw.get("timeout", DEFAULT_TIMEOUT), f"{where}.timeout")
    if url is not None:
        if "args" in raw or "env" in raw:
            raise ConfigError(f"`{where}`: `args` and `env` apply to a `command` only")
        return UpstreamSettings(name=name, url=_http_url(url, f"{where}.url"), timeout=timeout)
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"`{where}.command` must be a non-empty string")
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"`{where}.args` must be a list of strings")
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
    ):
        raise ConfigError(f"`{where}.env` must be a table of strings")
    return UpstreamSettings(
        name=name, command=command, args=tuple(args), env=dict(env), timeout=timeout
    )


def parse_gateway(raw: dict[str, Any]) -> GatewaySettings:
    """Parse the ``gateway`` table of a ``tribune.toml`` document (the whole document is
    given; other tables are ignored here). No table means no upstreams."""
    table = raw.get("gateway", {})
    if not isinstance(table, dict):
        raise ConfigError("`gateway` must be a table")
    unknown = sorted(set(table) - GATEWAY_KEYS)
    if unknown:
        raise ConfigError(f"unknown key `{unknown[0]}` in `gateway`")
    listed = table.get("upstreams", [])
    if not isinstance(listed, list):
        raise ConfigError("`gateway.upstreams` must be an array of tables ([[gateway.upstreams]])")
    upstreams = tuple(_upstream(u, i) for i, u in enumerate(listed))
    seen: set[str] = set()
    for upstream in upstreams:
        if upstream.name in seen:
            raise ConfigError(f"two upstreams are named `{upstream.name}`")
        seen.add(upstream.name)
    return GatewaySettings(
        upstreams=upstreams,
        url=_http_url(table.get("url", DEFAULT_URL), "gateway.url"),
        issuer_url=_http_url(table.get("issuer_url", DEFAULT_ISSUER_URL), "gateway.issuer_url"),
    )
