"""Shared fixtures. Store fixtures: ``pg_dsn`` (an isolated PostgreSQL schema), ``store_url``
(a fresh durable store URL: SQLite file or PostgreSQL) and ``store`` (an open store on each
backend: memory, SQLite, PostgreSQL).

PostgreSQL comes from ``TRIBUNE_TEST_PG_DSN`` (default: local ``test`` database). When it does
not answer, its tests are skipped, or fail when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from tribune.ports import Store
from tribune.store import open_store
from tribune.store.factory import store_url as parse_store_url

PG_DSN_ENV = "TRIBUNE_TEST_PG_DSN"
DEFAULT_PG_DSN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def _pg_admin() -> Iterator[tuple[Engine | None, str]]:
    """(engine, "") for the test server, or (None, why it is unusable)."""
    dsn = os.environ.get(PG_DSN_ENV, DEFAULT_PG_DSN)
    url = parse_store_url(dsn)
    if url is None or not url.drivername.startswith("postgresql"):
        yield None, f"{PG_DSN_ENV} is not a postgresql url"
        return
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:
        engine.dispose()
        yield None, f"postgresql at {url.host}:{url.port} does not answer ({type(e).__name__})"
        return
    yield engine, ""
    engine.dispose()


@pytest.fixture
def pg_dsn(_pg_admin: tuple[Engine | None, str]) -> Iterator[str]:
    """A DSN for ``open_store`` whose tables live in a fresh schema, dropped after the test."""
    engine, why = _pg_admin
    if engine is None:
        if os.environ.get("CI"):
            pytest.fail(f"postgresql is required in CI: {why}")
        pytest.skip(why)
    schema = f"tribune_test_{uuid.uuid4().hex[:16]}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def _url_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite://{tmp_path / 'tribune.db'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming a fresh, empty durable store (SQLite file, PostgreSQL schema)."""
    return _url_for(request.param, request, tmp_path)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, open store on each backend; closed after the test."""
    opened = open_store(_url_for(request.param, request, tmp_path))
    try:
        yield opened
    finally:
        opened.close()
