"""System adapters for the ``Clock`` and ``Ids`` ports: the only readers of the real clock and
the OS random source. ``FixedClock`` is a real adapter too: replays and tests set time by hand.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class TimeOrderedIds:
    """UUIDv7-style ids (RFC 9562): 48-bit milliseconds, then random bits; sortable as text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._pool = b""
        self._used = 0

    def new(self) -> str:
        with self._lock:
            ms = max(time.time_ns() // 1_000_000, self._last)
            self._last = ms
            if self._used + 10 > len(self._pool):
                self._pool, self._used = os.urandom(4000), 0  # one syscall per 400 ids
            chunk = self._pool[self._used : self._used + 10]
            self._used += 10
        rand = int.from_bytes(chunk, "big")
        value = (ms & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
        value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
        value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
        return str(uuid.UUID(int=value))
