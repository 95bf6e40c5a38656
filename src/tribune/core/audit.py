"""The audit hash chain, pure.

Each record's ``body`` is the RFC 8785 text of an envelope that holds its position (seq), kind,
time, the linked ids, its payload and the previous record's hash; the record's hash is the
SHA-256 of that text. Changing, dropping, inserting or reordering any record breaks the chain.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from tribune.core.canonical import canonical
from tribune.core.model import AuditRecord, RecordKind

GENESIS = "0" * 64


def ts_text(ts: datetime) -> str:
    """The one text form of a time in audit records: UTC, microseconds, ``Z``.

    INVARIANT: times are timezone-aware (the clock port returns UTC).
    """
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return (
        f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T"
        f"{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}.{ts.microsecond:06d}Z"
    )


def link(
    seq: int,
    prev_hash: str,
    kind: RecordKind,
    ts: datetime,
    data: dict[str, Any],
    *,
    action_id: str | None = None,
    task_id: str | None = None,
    agent_id: str | None = None,
) -> AuditRecord:
    """Build record ``seq`` following a record whose hash is ``prev_hash``."""
    envelope = {
        "seq": seq,
        "prev": prev_hash,
        "kind": kind.value,
        "ts": ts_text(ts),
        "action_id": action_id,
        "task_id": task_id,
        "agent_id": agent_id,
        "data": data,
    }
    body = canonical(envelope)
    return AuditRecord(
        seq=seq,
        kind=kind,
        ts=ts,
        action_id=action_id,
        task_id=task_id,
        agent_id=agent_id,
        body=body.decode("utf-8"),
        prev_hash=prev_hash,
        hash=hashlib.sha256(body).hexdigest(),
    )


def envelope(record: AuditRecord) -> dict[str, Any]:
    """The parsed envelope of a record (its ``data`` is the payload)."""
    out: dict[str, Any] = json.loads(record.body)
    return out
