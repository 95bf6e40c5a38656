"""Build the credential backends a home's configuration asks for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tribune.config_sources import CredentialSource
from tribune.credentials import CredentialBackend
from tribune.credentials.tokens import TokenBackend
from tribune.crypto.token_keys import TokenKeys
from tribune.errors import ConfigError, TribuneError
from tribune.ports import Clock, Store

if TYPE_CHECKING:
    from tribune.services.secrets import SecretService


def build_backends(
    sources: Mapping[str, CredentialSource],
    store: Store,
    clock: Clock,
    token_keys: TokenKeys,
    *,
    issuer: str,
    secrets: SecretService,
) -> dict[str, CredentialBackend]:
    """The token and secret backends always; PostgreSQL only when a source uses it."""
    from tribune.credentials.secrets import SecretBackend

    backends: dict[str, CredentialBackend] = {
        "token": TokenBackend(store, clock, token_keys, issuer=issuer),
        "secret": SecretBackend(secrets),
    }
    postgres = {n: s for n, s in sources.items() if s.backend == "postgres"}
    if postgres:
        backends["postgres"] = _postgres(postgres)
    return backends


def _postgres(sources: Mapping[str, CredentialSource]) -> CredentialBackend:
    try:
        from tribune.credentials.postgres import Grant, PostgresRoleBackend, PostgresTarget
    except ImportError:
        raise ConfigError(
            "a `postgres` credential source needs the PostgreSQL driver",
            hint="pip install 'tribune[postgres]'",
        ) from None

    targets = {}
    for name, source in sources.items():
        where = f"credentials.{name}"
        opts = source.options
        try:
            grants = tuple(_grant(Grant, g, f"{where}.grants") for g in opts.get("grants", []))
            targets[name] = PostgresTarget(
                name=name,
                admin_url=_text(opts["url"], f"{where}.url"),
                templates={"default": grants},
                connect_host=opts.get("connect_host"),
                connect_port=opts.get("connect_port"),
                connection_limit=opts.get("connection_limit", 5),
            )
        except TribuneError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"`{where}`: {exc.message}", hint=exc.hint) from None
    return PostgresRoleBackend(targets)


def _grant(grant: Any, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict) or set(raw) != {"privileges", "tables"}:
        raise ConfigError(
            f"`{where}` entries need `privileges` and `tables`",
            hint='e.g. grants = [{ privileges = ["SELECT"], tables = ["public.invoices"] }]',
        )
    privileges, tables = raw["privileges"], raw["tables"]
    if not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (privileges, tables)
    ):
        raise ConfigError(f"`{where}`: privileges and tables are lists of strings")
    return grant(privileges=tuple(privileges), tables=tuple(tables))


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"`{where}` must be a non-empty string")
    return value
