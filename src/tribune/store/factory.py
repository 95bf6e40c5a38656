"""``open_store``: one URL names the store; the right adapter opens and migrates it.

- ``memory://``: a fresh ``MemoryStore``;
- ``sqlite:///abs/path/tribune.db`` (the path after ``sqlite://``, as in ``file://`` URLs) or a
  plain filesystem path (relative paths resolve against the working directory, ``~`` expands);
- ``postgresql://...``, ``postgres://...`` or ``postgresql+psycopg://...`` (psycopg 3).
"""

from __future__ import annotations

import os

from sqlalchemy.engine import URL

from tribune.errors import ConfigError
from tribune.ports import Store
from tribune.store.engine import DURABILITY, parse_url
from tribune.store.memory import MemoryStore
from tribune.store.sql import SqlStore

_POSTGRES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def open_store(url: str, *, durability: str = "normal") -> Store:
    """Open (creating and migrating as needed) the store that ``url`` names.

    ``durability``: ``normal`` (a commit survives a kill of the process) or ``full`` (it also
    survives power loss; SQLite ``synchronous=FULL``). PostgreSQL commits as its server is
    configured, and memory is never durable. Raises ``ConfigError`` for a URL or
    setting it cannot use, ``StoreError`` when the database cannot be opened.
    """
    if durability not in DURABILITY:
        raise ConfigError(f"unknown durability `{durability}`", hint="use `normal` or `full`")
    return _open(store_url(url), durability)


def _open(url: URL | None, durability: str) -> Store:
    if url is None:
        return MemoryStore()
    return SqlStore(url, durability=durability)


def store_url(text: str) -> URL | None:
    """The SQLAlchemy URL for ``text``; None for ``memory://``."""
    if text == "memory://":
        return None
    if text.startswith("sqlite://"):
        path = text[len("sqlite://") :]
        if path in ("", "/", "/:memory:") or "?" in path:
            raise ConfigError(
                f"unsupported sqlite url `{text}`",
                hint="write `sqlite:///abs/path/tribune.db`, or `memory://` for a throwaway store",
            )
        return URL.create("sqlite", database=path)
    if text.startswith(_POSTGRES):
        return parse_url(text).set(drivername="postgresql+psycopg")
    if "://" in text:
        raise ConfigError(
            f"unsupported store url `{_scheme(text)}://...`",
            hint="use `memory://`, `sqlite:///PATH`, a file path, or `postgresql://...`",
        )
    if not text.strip():
        raise ConfigError("empty store url")
    return URL.create("sqlite", database=os.path.abspath(os.path.expanduser(text)))


def _scheme(text: str) -> str:
    return text.split("://", 1)[0]
