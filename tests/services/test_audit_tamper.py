"""Attacks on a real SQLite audit log with plain ``sqlite3``: what someone with write access to
the database file but not the signing key can do. ``verify`` must name the first bad seq, and
an export of the tampered store must fail offline the same way.

The log: 35 records (non-ASCII payloads), signed checkpoints at 10, 20 and 30.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tribune.core.audit import link
from tribune.core.model import RecordKind
from tribune.core.verify import VerifyReport, sign_checkpoint
from tribune.crypto import Ed25519Signer, Ed25519Verifier, KeyPair
from tribune.errors import AuditIntegrityError
from tribune.services.audit import AuditService, verify_jsonl
from tribune.store import open_store
from tribune.system import FixedClock

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SIGNER = Ed25519Signer(KeyPair.generate())
VERIFIER = Ed25519Verifier([SIGNER.public_key])
KINDS = [RecordKind.INTENT, RecordKind.DECISION, RecordKind.RESULT]


def micros(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tribune.db"
    store = open_store(str(path))
    try:
        clock = FixedClock(T0)
        audit = AuditService(store, clock, SIGNER, VERIFIER, checkpoint_every=10)
        for seq in range(1, 36):
            clock.advance(0.5)
            audit.record(
                KINDS[seq % 3],
                {"amount": seq * 10, "payee": "Zoë Müller", "memo": "支付 ✓ \u2028"},
                action_id=f"act-{seq // 3}",
                task_id="task-1",
                agent_id="spiffe://example.org/agent/payments-bot",
            )
    finally:
        store.close()
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template log for one attack."""
    for part in template.parent.glob(template.name + "*"):
        shutil.copyfile(part, tmp_path / part.name)
    return tmp_path / template.name


@pytest.fixture
def sql(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db)
    conn.create_function("sha256", 1, lambda s: hashlib.sha256(s.encode()).hexdigest())
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def reopen(db: Path) -> tuple[AuditService, Callable[[], None]]:
    store = open_store(str(db))
    return AuditService(store, FixedClock(T0 + timedelta(days=1)), SIGNER, VERIFIER), store.close


def verify_both(db: Path) -> tuple[VerifyReport, VerifyReport]:
    """(verify of the store, verify_jsonl of its export)."""
    audit, close = reopen(db)
    try:
        out = io.StringIO()
        audit.export_jsonl(out)
        out.seek(0)
        return audit.verify(), verify_jsonl(out, VERIFIER)
    finally:
        close()


def hash_of(conn: sqlite3.Connection, seq: int) -> str:
    return str(conn.execute("SELECT hash FROM audit_records WHERE seq = ?", (seq,)).fetchone()[0])


@dataclass(frozen=True)
class Attack:
    name: str
    steps: Callable[[sqlite3.Connection], None]
    problem: str
    seq: int
    export_too: bool = True  # False: the export (bodies only) is intact and verifies


def run(*statements: str) -> Callable[[sqlite3.Connection], None]:
    def steps(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return steps


def insert_forged(conn: sqlite3.Connection) -> None:
    # Make room at 15 (seq is the primary key), then add a self-consistent forged record.
    conn.execute("UPDATE audit_records SET seq = -seq WHERE seq >= 15")
    conn.execute("UPDATE audit_records SET seq = 1 - seq WHERE seq < 0")
    rec = link(15, hash_of(conn, 14), RecordKind.RESULT, T0, {"amount": 1, "payee": "Mallory"})
    conn.execute(
        "INSERT INTO audit_records (seq, kind, ts, action_id, task_id, agent_id, body,"
        " prev_hash, hash) VALUES (?, ?, ?, NULL, NULL, NULL, ?, ?, ?)",
        (15, rec.kind.value, micros(rec.ts), rec.body, rec.prev_hash, rec.hash),
    )


def checkpoint_by_stranger(conn: sqlite3.Connection) -> None:
    stranger = Ed25519Signer(KeyPair.generate())
    cp = sign_checkpoint(15, hash_of(conn, 15), T0, stranger)
    conn.execute(
        "INSERT INTO audit_checkpoints (seq, key_id, hash, ts, signature) VALUES (?, ?, ?, ?, ?)",
        (cp.seq, cp.key_id, cp.hash, micros(cp.ts), cp.signature),
    )


BODY_13 = "replace(body, '\"amount\":130', '\"amount\":999')"
BODY_20 = "replace(body, '\"amount\":200', '\"amount\":999')"

ATTACKS = [
    Attack(
        "modified body",
        run(f"UPDATE audit_records SET body = {BODY_13} WHERE seq = 13"),
        "hash_mismatch",
        13,
    ),
    Attack(
        "modified non-ASCII text",
        run("UPDATE audit_records SET body = replace(body, 'Zoë', 'Zoe') WHERE seq = 5"),
        "hash_mismatch",
        5,
    ),
    Attack(
        "modified body with its hash recomputed: the chain breaks at the next record",
        run(f"UPDATE audit_records SET body = {BODY_13}, hash = sha256({BODY_13}) WHERE seq = 13"),
        "broken_link",
        14,
    ),
    Attack(
        "modified checkpointed record with its hash recomputed",
        run(f"UPDATE audit_records SET body = {BODY_20}, hash = sha256({BODY_20}) WHERE seq = 20"),
        "checkpoint_mismatch",
        20,
    ),
    Attack(
        "hash column changed",
        run("UPDATE audit_records SET hash = sha256('x') WHERE seq = 3"),
        "hash_mismatch",
        3,
    ),
    Attack(
        "prev_hash column changed",
        run("UPDATE audit_records SET prev_hash = sha256('x') WHERE seq = 3"),
        "broken_link",
        3,
    ),
    Attack(
        "kind column changed",
        run("UPDATE audit_records SET kind = 'event' WHERE seq = 7"),
        "column_mismatch",
        7,
        export_too=False,
    ),
    Attack(
        "ts column changed",
        run("UPDATE audit_records SET ts = ts + 1000000 WHERE seq = 9"),
        "column_mismatch",
        9,
        export_too=False,
    ),
    Attack(
        "action_id column changed",
        run("UPDATE audit_records SET action_id = 'act-other' WHERE seq = 4"),
        "column_mismatch",
        4,
        export_too=False,
    ),
    Attack(
        "task_id column cleared",
        run("UPDATE audit_records SET task_id = NULL WHERE seq = 22"),
        "column_mismatch",
        22,
        export_too=False,
    ),
    Attack(
        "agent_id column changed",
        run("UPDATE audit_records SET agent_id = 'spiffe://x/agent/y' WHERE seq = 2"),
        "column_mismatch",
        2,
        export_too=False,
    ),
    Attack(
        "deleted middle record",
        run("DELETE FROM audit_records WHERE seq = 17"),
        "seq_gap",
        17,
    ),
    Attack(
        "deleted first record",
        run("DELETE FROM audit_records WHERE seq = 1"),
        "seq_gap",
        1,
    ),
    Attack(
        "deleted last records behind a checkpoint",
        run("DELETE FROM audit_records WHERE seq > 25"),
        "checkpoint_beyond_end",
        26,
    ),
    Attack("inserted record", insert_forged, "broken_link", 16),
    Attack(
        "swapped two records",
        run(
            "UPDATE audit_records SET seq = -1 WHERE seq = 21",
            "UPDATE audit_records SET seq = 21 WHERE seq = 22",
            "UPDATE audit_records SET seq = 22 WHERE seq = -1",
        ),
        "broken_link",
        21,
    ),
    Attack(
        "forged checkpoint signature",
        run(
            "UPDATE audit_checkpoints SET signature ="
            " (SELECT signature FROM audit_checkpoints WHERE seq = 20) WHERE seq = 10"
        ),
        "bad_checkpoint_signature",
        10,
    ),
    Attack(
        "altered checkpoint hash",
        run("UPDATE audit_checkpoints SET hash = sha256('x') WHERE seq = 30"),
        "bad_checkpoint_signature",
        30,
    ),
    Attack(
        "checkpoint signed by an unknown key",
        checkpoint_by_stranger,
        "bad_checkpoint_signature",
        15,
    ),
]


def test_untouched_log_verifies(db: Path) -> None:
    report, exported = verify_both(db)
    assert report.ok, report.message
    assert (report.checked, report.checkpoints_verified) == (35, 3)
    assert exported.ok and (exported.checked, exported.checkpoints_verified) == (35, 3)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_found_at_its_first_bad_seq(
    db: Path, sql: sqlite3.Connection, attack: Attack
) -> None:
    attack.steps(sql)
    sql.commit()
    report, exported = verify_both(db)
    assert not report.ok
    assert (report.problem, report.first_bad_seq) == (attack.problem, attack.seq), report.message
    assert report.checked == attack.seq - 1
    if attack.export_too:
        assert (exported.problem, exported.first_bad_seq) == (attack.problem, attack.seq)
    else:
        assert exported.ok, exported.message


def test_unknown_kind_column_is_reported_not_raised(db: Path, sql: sqlite3.Connection) -> None:
    sql.execute("UPDATE audit_records SET kind = 'bogus' WHERE seq = 7")
    sql.commit()
    audit, close = reopen(db)
    try:
        report = audit.verify()
    finally:
        close()
    assert (report.problem, report.first_bad_seq) == ("column_mismatch", 7)
    assert "bogus" in report.message


def test_deleting_records_after_the_last_checkpoint_is_not_detectable(
    db: Path, sql: sqlite3.Connection
) -> None:
    # The documented limit: only signed checkpoints vouch for the end of the chain, which is
    # why the service also signs one on demand (task end, shutdown).
    sql.execute("DELETE FROM audit_records WHERE seq > 31")
    sql.commit()
    report, _ = verify_both(db)
    assert report.ok and report.last_seq == 31


def test_checkpoint_refuses_to_sign_a_tampered_chain(db: Path, sql: sqlite3.Connection) -> None:
    sql.execute(f"UPDATE audit_records SET body = {BODY_13} WHERE seq = 33".replace("130", "330"))
    sql.commit()
    audit, close = reopen(db)
    try:
        with pytest.raises(AuditIntegrityError, match="refusing to sign checkpoint at seq 35"):
            audit.checkpoint()
        assert [c.seq for c in audit.log.checkpoints()] == [10, 20, 30]
    finally:
        close()


def test_checkpoint_refuses_a_cut_chain(db: Path, sql: sqlite3.Connection) -> None:
    sql.execute("DELETE FROM audit_records WHERE seq > 25")
    sql.commit()
    audit, close = reopen(db)
    try:
        with pytest.raises(AuditIntegrityError, match="checkpoint covers seq 30"):
            audit.checkpoint()
    finally:
        close()


def test_strict_verify_of_a_real_store(db: Path) -> None:
    audit, close = reopen(db)
    try:
        assert audit.verify(strict=True).ok
    finally:
        close()
