"""Gateway settings: the ``[gateway]`` table of ``tribune.toml`` and its ``[[gateway.upstreams]]``.
Pure parsing.

Upstreams come from admin configuration only, never from agents: a stdio upstream is a command
the gateway runs (arbitrary code execution by design), an HTTP upstream a URL it connects to.

    [gateway]
    url = "http://127.0.0.1:8710/mcp"      # the gateway's own URL over HTTP (token resource)
    issuer_url = "http://127.0.0.1:8700"   # who issues the bearer tokens it accepts (Tribune)
    approval_hold = 0       # seconds a call needing approval waits for it (progress relayed)
    elicit = true           # show a pending approval to the agent's user (MCP elicitation)

    [[gateway.upstreams]]
    name = "time"                  # tools appear as `time.<tool>`, in tool group `time`
    command = "mcp-server-time"
    args = ["--local-timezone", "UTC"]
    env = { TZ = "UTC" }           # the only environment it gets besides PATH, HOME, ...
    timeout = 30                   # seconds one call may take (default 60)
    connect_timeout = 30           # seconds to start, connect and list its tools (default 30)

    [[gateway.upstreams]]
    name = "search"
    url = "https://search.internal/mcp"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from tribune.core.model import check_name
from tribune.errors import ConfigError, TribuneError

DEFAULT_URL = "http://127.0.0.1:8710/mcp"
DEFAULT_ISSUER_URL = "http://127.0.0.1:8700"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT = 30.0  # starting a Python MCP server takes seconds on a busy machine
MAX_TIMEOUT = 3600.0
MAX_HOLD = 300.0
GATEWAY_KEYS = frozenset({"url", "issuer_url", "upstreams", "approval_hold", "elicit"})
UPSTREAM_KEYS = frozenset(
    {"name", "command", "args", "env", "url", "timeout", "connect_timeout"}
    | {"credential", "header", "format", "credential_env", "max_processes", "idle_timeout"}
)
HTTP_CREDENTIAL_KEYS = ("header", "format")
STDIO_CREDENTIAL_KEYS = ("credential_env", "max_processes", "idle_timeout")
PLACEHOLDER = "{credential}"
DEFAULT_HEADER = "Authorization"
DEFAULT_FORMAT = f"Bearer {PLACEHOLDER}"
DEFAULT_MAX_PROCESSES = 16
MAX_PROCESSES = 1000
DEFAULT_IDLE = 300.0
# Headers the MCP client or HTTP itself sets (and every `Mcp-*` one): never a credential's.
OWNED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "content-encoding", "transfer-encoding"}
    | {"connection", "keep-alive", "upgrade", "te", "trailer", "accept", "accept-encoding"}
    | {"last-event-id", "cache-control"}
)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """One MCP server behind the gateway: a stdio ``command`` or a streamable HTTP ``url``."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)  # may hold secrets
    url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT  # seconds to start, connect and list the tools
    # A [credentials.NAME] source lent to the upstream (see gateway.lending): over HTTP one
    # lease per call, in `header` as `format` says; over stdio one lease and one process per
    # task, in the environment variable `credential_env`.
    credential: str | None = None
    header: str = DEFAULT_HEADER
    format: str = DEFAULT_FORMAT
    credential_env: str | None = None
    max_processes: int = DEFAULT_MAX_PROCESSES  # per-task processes alive at once
    idle_timeout: float = DEFAULT_IDLE  # seconds an unused per-task process lives

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    upstreams: tuple[UpstreamSettings, ...] = ()
    url: str = DEFAULT_URL
    issuer_url: str = DEFAULT_ISSUER_URL
    approval_hold: float = 0.0  # seconds a call needing approval is held, waiting for it
    elicit: bool = True  # ask the agent's user through MCP elicitation, when the client can


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
    found = _parsed(raw, index)
    if "connect_timeout" not in raw:
        return found
    where = f"gateway.upstreams.{found.name}.connect_timeout"
    return replace(found, connect_timeout=_timeout(raw["connect_timeout"], where))


def _parsed(raw: Any, index: int) -> UpstreamSettings:
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
    credential = _credential(raw.get("credential"), where)
    if url is not None:
        if "args" in raw or "env" in raw:
            raise ConfigError(f"`{where}`: `args` and `env` apply to a `command` only")
        _only(raw, where, STDIO_CREDENTIAL_KEYS, "a `command`", "a header (`header`, `format`)")
        header, form = _header(raw, where, credential)
        return UpstreamSettings(
            name=name,
            url=_http_url(url, f"{where}.url"),
            timeout=timeout,
            credential=credential,
            header=header,
            format=form,
        )
    _only(raw, where, HTTP_CREDENTIAL_KEYS, "a `url`", "its environment (`credential_env`)")
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
    if credential is None:
        _needs_credential(raw, where, STDIO_CREDENTIAL_KEYS)
        return UpstreamSettings(
            name=name, command=command, args=tuple(args), env=dict(env), timeout=timeout
        )
    variable = raw.get("credential_env")
    if variable is None:
        raise ConfigError(
            f"`{where}` needs `credential_env` with `credential`",
            hint='the variable the command reads its credential from, e.g. "API_KEY"',
        )
    if not isinstance(variable, str) or not _ENV_NAME.fullmatch(variable):
        raise ConfigError(f"`{where}.credential_env` must be an environment variable name")
    if variable in env:
        raise ConfigError(f"`{where}.credential_env` `{variable}` is also set in `{where}.env`")
    processes = raw.get("max_processes", DEFAULT_MAX_PROCESSES)
    if type(processes) is not int or not 1 <= processes <= MAX_PROCESSES:
        raise ConfigError(f"`{where}.max_processes` must be an integer from 1 to {MAX_PROCESSES}")
    return UpstreamSettings(
        name=name,
        command=command,
        args=tuple(args),
        env=dict(env),
        timeout=timeout,
        credential=credential,
        credential_env=variable,
        max_processes=processes,
        idle_timeout=_timeout(raw.get("idle_timeout", DEFAULT_IDLE), f"{where}.idle_timeout"),
    )


def _credential(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(
            f"`{where}.credential` must name a credential source",
            hint='e.g. credential = "crm-api" for a [credentials.crm-api] table',
        )
    try:
        check_name("credential source", value)
    except TribuneError as exc:
        raise ConfigError(f"`{where}.credential`: {exc.message}", hint=exc.hint) from None
    return value


def _only(raw: dict[str, Any], where: str, keys: tuple[str, ...], what: str, how: str) -> None:
    """Refuse credential keys of the other transport."""
    found = [k for k in keys if k in raw]
    if found:
        raise ConfigError(
            f"`{where}`: `{found[0]}` applies to {what} only",
            hint=f"this upstream takes its credential in {how}",
        )


def _needs_credential(raw: dict[str, Any], where: str, keys: tuple[str, ...]) -> None:
    found = [k for k in keys if k in raw]
    if found:
        raise ConfigError(f"`{where}.{found[0]}` needs a `credential`")


def _header(raw: dict[str, Any], where: str, credential: str | None) -> tuple[str, str]:
    """The header an HTTP upstream's credential travels in, and its value's format."""
    if credential is None:
        _needs_credential(raw, where, HTTP_CREDENTIAL_KEYS)
        return DEFAULT_HEADER, DEFAULT_FORMAT
    header = raw.get("header", DEFAULT_HEADER)
    if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
        raise ConfigError(f"`{where}.header` must be an HTTP header name", hint='e.g. "X-Api-Key"')
    if header.lower() in OWNED_HEADERS or header.lower().startswith("mcp-"):
        raise ConfigError(
            f"`{where}.header` `{header}` is set by the MCP client or by HTTP itself",
            hint='use "Authorization" or a header of the upstream\'s own, e.g. "X-Api-Key"',
        )
    form = raw.get("format", DEFAULT_FORMAT)
    if not isinstance(form, str) or form.count(PLACEHOLDER) != 1:
        raise ConfigError(
            f"`{where}.format` must contain `{PLACEHOLDER}` once",
            hint=f'e.g. format = "{DEFAULT_FORMAT}"',
        )
    if not all(" " <= c <= "~" for c in form):
        raise ConfigError(f"`{where}.format` must be printable ASCII")
    return header, form


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
    hold = table.get("approval_hold", 0)
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0 <= hold <= MAX_HOLD:
        raise ConfigError(
            f"`gateway.approval_hold` must be a number of seconds from 0 to {int(MAX_HOLD)}"
        )
    elicit = table.get("elicit", True)
    if not isinstance(elicit, bool):
        raise ConfigError("`gateway.elicit` must be true or false")
    return GatewaySettings(
        upstreams=upstreams,
        url=_http_url(table.get("url", DEFAULT_URL), "gateway.url"),
        issuer_url=_http_url(table.get("issuer_url", DEFAULT_ISSUER_URL), "gateway.issuer_url"),
        approval_hold=float(hold),
        elicit=elicit,
    )
