"""Credentials for upstreams: leases issued and given back around the gateway's upstream
traffic, and the two ways their values travel.

An upstream configured with ``credential = "NAME"`` gets a credential lent from the
``[credentials.NAME]`` source. It never gets the agent's own token (MCP forbids passing it
through), and the agent never sees what the upstream gets: the agent's requests carry its task
token to the gateway only, and the credential is added here, on the way out.

- **HTTP**: one lease per allowed call (``Lending.for_call``), bound to that call's decision and
  revoked when the call returns, however it ends. Its value travels in one header of that call's
  ``tools/call`` request only: ``lent`` sets a contextvar around ``session.call_tool`` and the
  upstream's own HTTP client reads it in a request hook (``header_hook``). The SDK runs each
  outgoing message in its sender's context (research note P11), so concurrent calls of other
  tasks never see each other's value, and listings or any other request carry none.
- **stdio**: a process reads its environment once, at spawn, so there the credential is one
  lease and one process per task (``gateway.processes``).

A credential that cannot be had (the call is outside the source's tools, the secret is gone, the
backend is down, a value that cannot travel in a header) is ``CredentialUnavailable``: nothing is
sent. The reason is logged by its code; no message, log line or record holds the value.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import httpx2
import orjson

from tribune.config_sources import CredentialSource
from tribune.core.model import Lease, Verdict
from tribune.credentials import injected_value
from tribune.errors import ConfigError, TribuneError
from tribune.gateway.config import PLACEHOLDER, GatewaySettings, UpstreamSettings
from tribune.gateway.runners import Runner
from tribune.ports import Clock
from tribune.services.leases import IssuedLease

log = logging.getLogger(__name__)
CALL_METHOD = "tools/call"


class CredentialUnavailable(Exception):
    """No credential could be had for the upstream: nothing was sent."""


class Leases(Protocol):
    """What the gateway needs of Tribune's lease service."""

    @property
    def sources(self) -> Mapping[str, CredentialSource]: ...

    @property
    def clock(self) -> Clock: ...

    def issue(
        self, task_id: str, source_name: str, *, verdict: Verdict | None = None
    ) -> IssuedLease: ...

    def renew(self, lease_id: str) -> IssuedLease: ...

    def revoke(self, lease_id: str, reason: str = "requested") -> Lease: ...

    def get(self, lease_id: str) -> Lease: ...


@dataclass(frozen=True, slots=True)
class Lent:
    """A credential lent for one call, as the named upstream's request hook reads it."""

    upstream: str
    header: str
    value: str = field(repr=False)


LENT: ContextVar[Lent | None] = ContextVar("tribune_gateway_lent", default=None)


@contextmanager
def lent(credential: Lent) -> Iterator[None]:
    """Lend ``credential`` to the requests sent from this context."""
    token = LENT.set(credential)
    try:
        yield
    finally:
        LENT.reset(token)


def header_hook(upstream: str) -> Callable[[httpx2.Request], Awaitable[None]]:
    """A request hook for ``upstream``'s HTTP client: the lent value goes into the header of a
    ``tools/call`` request sent in the lending context, and into nothing else."""

    async def lend(request: httpx2.Request) -> None:
        credential = LENT.get()
        if credential is not None and credential.upstream == upstream and _is_call(request):
            request.headers[credential.header] = credential.value

    return lend


def _is_call(request: httpx2.Request) -> bool:
    if request.method != "POST":
        return False
    try:
        body = orjson.loads(request.content)
    except Exception:  # not read, not JSON: not a call, so no credential
        return False
    return isinstance(body, dict) and body.get("method") == CALL_METHOD


def check_sources(settings: GatewaySettings, sources: Mapping[str, CredentialSource]) -> None:
    """Fail at start, not at the first call: each upstream's ``credential`` names a source that
    serves one of the upstream's tools at least (a lease for a call needs its tool there)."""
    for up in settings.upstreams:
        if up.credential is None:
            continue
        source = sources.get(up.credential)
        where = f"gateway.upstreams.{up.name}.credential"
        if source is None:
            raise ConfigError(
                f"`{where}`: no credential source `{up.credential}`",
                hint=f"define it in a [credentials.{up.credential}] table of tribune.toml",
            )
        if not any(tool.startswith(f"{up.name}.") for tool in source.tools):
            raise ConfigError(
                f"`{where}`: credential source `{source.name}` serves no tool of `{up.name}`",
                hint=f'list them in `credentials.{source.name}.tools`, e.g. "{up.name}.<tool>"',
            )


def header_value(up: UpstreamSettings, value: Any) -> str:
    """The header's value for ``up``: its ``format`` with the credential in it."""
    # h11 would put an invalid value into its error message: refuse it before it gets there.
    if not isinstance(value, str) or not value or not all(" " <= c <= "~" for c in value):
        raise CredentialUnavailable("the credential cannot travel in an HTTP header")
    return up.format.replace(PLACEHOLDER, value)


def env_value(value: Any) -> str:
    """The environment variable's value."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise CredentialUnavailable("the credential cannot travel in an environment variable")
    return value


class Lending:
    """Leases for upstreams, issued and given back through ``run`` (the store may block)."""

    def __init__(self, leases: Leases, run: Runner) -> None:
        self.leases = leases
        self.run = run

    @property
    def sources(self) -> Mapping[str, CredentialSource]:
        return self.leases.sources

    @asynccontextmanager
    async def for_call(self, up: UpstreamSettings, verdict: Verdict) -> AsyncIterator[Lent]:
        """A credential for one allowed call to the HTTP upstream ``up``, revoked when the block
        exits (also when cancelled). Raises ``CredentialUnavailable``."""
        issued, value = await self._issue(
            up, verdict.task_id, verdict, lambda v: header_value(up, v)
        )
        try:
            yield Lent(up.name, up.header, value)
        finally:
            await self.give_back(issued.lease.id, "call_ended")

    async def for_task(self, up: UpstreamSettings, task_id: str) -> tuple[Lease, str]:
        """A lease for ``task_id`` from ``up``'s source and the value for the environment. The
        caller gives it back. Raises ``CredentialUnavailable``."""
        issued, value = await self._issue(up, task_id, None, env_value)
        return issued.lease, value

    async def renew(self, lease_id: str) -> tuple[Lease, str | None] | None:
        """The renewed lease and its new value (None: the old one lives on), or None when it
        cannot be renewed."""

        def renew() -> tuple[Lease, str | None]:
            issued = self.leases.renew(lease_id)
            value = injected_value(issued.credential) if issued.credential else None
            return issued.lease, None if value is None else str(value)

        try:
            return await self.run(renew)
        except Exception as exc:
            log.info("lease %s not renewed: %s", lease_id, _code(exc))
            return None

    def seconds_left(self, lease: Lease) -> float:
        """Seconds until ``lease`` expires, on Tribune's clock."""
        return max(0.0, (lease.expires_at - self.leases.clock.now()).total_seconds())

    async def live(self, lease_id: str) -> bool:
        """Whether the lease is still active and unexpired (not ended by its task's end, the kill
        switch or the sweeper). A store that cannot answer says no: fail closed."""

        def check() -> bool:
            return self.leases.get(lease_id).live(self.leases.clock.now())

        try:
            return await self.run(check)
        except Exception as exc:
            log.warning("lease %s not checked: %s", lease_id, _code(exc))
            return False

    async def give_back(self, lease_id: str, reason: str) -> None:
        """Revoke the lease now; if that fails, it expires by itself and the sweeper ends it."""
        with anyio.CancelScope(shield=True):
            try:
                await self.run(lambda: self.leases.revoke(lease_id, reason))
            except Exception as exc:
                log.warning("lease %s not revoked at once: %s", lease_id, _code(exc))

    async def _issue(
        self,
        up: UpstreamSettings,
        task_id: str,
        verdict: Verdict | None,
        fit: Callable[[Any], str],
    ) -> tuple[IssuedLease, str]:
        source = up.credential
        assert source is not None

        def issue() -> tuple[IssuedLease, str]:
            issued = self.leases.issue(task_id, source, verdict=verdict)
            try:
                return issued, fit(injected_value(issued.credential))
            except BaseException:
                self.leases.revoke(issued.lease.id, "issue_failed")
                raise

        try:
            # Shielded: a lease issued must reach its holder, who gives it back.
            with anyio.CancelScope(shield=True):
                issued = await self.run(issue)
        except Exception as exc:
            log.warning(
                "upstream `%s`: no credential from `%s` for task %s: %s",
                up.name,
                source,
                task_id,
                _code(exc),
            )
            raise CredentialUnavailable(f"no credential for upstream `{up.name}`") from None
        return issued


def _code(exc: BaseException) -> str:
    """Why, without a message: a Tribune error's code, else the exception's type."""
    return exc.code if isinstance(exc, TribuneError) else type(exc).__name__


def describe(exc: BaseException) -> str:
    """A short line for the log: the type and the first line of the message. For errors of the
    upstream connections; a credential is never formatted into any of them."""
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return describe(inner)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
