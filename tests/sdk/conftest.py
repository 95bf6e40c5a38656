"""The SDK tests reuse the governed ``world`` of the service tests (SQLite and PostgreSQL)."""

from __future__ import annotations

from services.conftest import World, world

__all__ = ["World", "world"]
