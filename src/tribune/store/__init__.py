"""Stores: ``tribune.ports.Store`` on SQLite (the default), PostgreSQL, or in memory.

``open_store(url)`` picks the adapter from the URL and applies migrations.
"""

from tribune.store.factory import open_store
from tribune.store.memory import MemoryStore
from tribune.store.sql import SqlStore

__all__ = ["MemoryStore", "SqlStore", "open_store"]
