"""Long runs, behind the `slow` marker (`scripts/test --slow`): a large audit log verified and
tampered with, and the canonical-JSON equivalence over many more random values."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core.canonical import canonical
from tribune.core.model import AuditEntry, RecordKind
from tribune.crypto import Ed25519Signer, Ed25519Verifier, KeyPair
from tribune.services.audit import AuditService
from tribune.store import open_store
from tribune.system import SystemClock

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 28, tzinfo=UTC)


def test_a_hundred_thousand_records_verify_and_a_late_edit_is_found(tmp_path: Path) -> None:
    db = tmp_path / "tribune.db"
    store = open_store(str(db))
    pair = KeyPair.generate()
    audit = AuditService(
        store,
        SystemClock(),
        Ed25519Signer(pair),
        Ed25519Verifier([pair.public_key]),
        checkpoint_every=5000,
    )
    body = {"tool": "email.send", "note": "ünïcode ✓", "n": 0}
    for i in range(0, 100_000, 100):
        audit.record_many(
            [AuditEntry(RecordKind.EVENT, T0, {**body, "n": i + k}) for k in range(100)]
        )
    audit.checkpoint()
    report = audit.verify()
    assert report.ok and report.checked == 100_000
    assert report.checkpoints_verified == 20
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE audit_records SET body = replace(body, '\"n\":99990', '\"n\":99991') "
            "WHERE seq = 99991"
        )
    store = open_store(str(db))
    audit = AuditService(
        store, SystemClock(), Ed25519Signer(pair), Ed25519Verifier([pair.public_key])
    )
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 99991
    store.close()


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5),
    max_leaves=40,
)


@settings(max_examples=5000, deadline=None)
@given(values)
def test_canonical_equals_rfc8785_on_many_values(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        return
    assert canonical(value) == expected
