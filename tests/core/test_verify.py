"""Pure chain verification over real records built with ``tribune.core.audit.link``.

Each attack changes a real chain the way someone with write access to the store could, and
the report must name the problem and the first bad seq.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tribune.core.audit import GENESIS, link
from tribune.core.model import AuditRecord, Checkpoint, RecordKind
from tribune.core.verify import (
    ChainVerifier,
    checkpoint_statement,
    is_canonical,
    sign_checkpoint,
    verify_chain,
)
from tribune.crypto import Ed25519Signer, Ed25519Verifier, KeyPair

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KINDS = [RecordKind.INTENT, RecordKind.DECISION, RecordKind.RESULT, RecordKind.EVENT]
AGENT = "spiffe://example.org/agent/payments-bot"


def payload(i: int) -> dict[str, Any]:
    return {"i": i, "note": f"Zahlung an Müller #{i} ✓ 支付 \u2028 \U0001d11e", "amount": i * 100}


def build(n: int, *, first: int = 1, prev: str = GENESIS) -> list[AuditRecord]:
    """A real chain of ``n`` records following (first - 1, prev)."""
    out: list[AuditRecord] = []
    for seq in range(first, first + n):
        rec = link(
            seq,
            prev,
            KINDS[seq % 4],
            T0 + timedelta(seconds=seq, microseconds=seq),
            payload(seq),
            action_id=f"act-{seq // 3}",
            task_id="task-1" if seq % 2 else None,
            agent_id=AGENT,
        )
        out.append(rec)
        prev = rec.hash
    return out


def relink(records: list[AuditRecord], data: dict[str, Any], at: int) -> list[AuditRecord]:
    """What an attacker with the store but no signing key can do: rewrite record ``at`` and
    recompute the hashes of it and every later record."""
    out = list(records[: at - 1])
    prev = out[-1].hash if out else GENESIS
    for rec in records[at - 1 :]:
        body = data if rec.seq == at else payload(rec.seq)
        new = link(
            rec.seq,
            prev,
            rec.kind,
            rec.ts,
            body,
            action_id=rec.action_id,
            task_id=rec.task_id,
            agent_id=rec.agent_id,
        )
        out.append(new)
        prev = new.hash
    return out


@pytest.fixture(scope="module")
def signer() -> Ed25519Signer:
    return Ed25519Signer(KeyPair.generate())


@pytest.fixture(scope="module")
def verifier(signer: Ed25519Signer) -> Ed25519Verifier:
    return Ed25519Verifier([signer.public_key])


def cp(signer: Ed25519Signer, rec: AuditRecord) -> Checkpoint:
    return sign_checkpoint(rec.seq, rec.hash, rec.ts + timedelta(seconds=1), signer)


def check(
    records: list[AuditRecord],
    verifier: Ed25519Verifier,
    checkpoints: list[Checkpoint] | None = None,
    **kw: Any,
) -> Any:
    return verify_chain(iter(records), checkpoints or [], verifier, **kw)


# --------------------------------------------------------------------------- intact chains


def test_intact_chain_verifies(signer: Ed25519Signer, verifier: Ed25519Verifier) -> None:
    records = build(50)
    cps = [cp(signer, records[19]), cp(signer, records[49])]
    report = check(records, verifier, cps)
    assert report.ok, report.message
    assert report.checked == 50
    assert report.checkpoints_verified == 2
    assert report.first_bad_seq is None and report.problem is None
    assert (report.last_seq, report.last_hash) == (50, records[-1].hash)


def test_empty_chain_verifies(verifier: Ed25519Verifier) -> None:
    report = check([], verifier)
    assert report.ok and report.checked == 0 and report.last_hash == GENESIS


def test_strict_mode_accepts_canonical_bodies(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    records = build(20)
    assert check(records, verifier, [cp(signer, records[9])], strict=True).ok


def test_checkpoint_statement_is_exact_canonical_json() -> None:
    statement = checkpoint_statement(1000, "ab" * 32, T0, "kid-1")
    assert statement == (
        b'{"hash":"' + b"ab" * 32 + b'","key_id":"kid-1","seq":1000,'
        b'"ts":"2026-03-01T12:00:00.000000Z","type":"tribune.audit.checkpoint.v1"}'
    )


def test_signed_checkpoint_verifies_over_the_statement(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    c = sign_checkpoint(7, "cd" * 32, T0, signer)
    raw = base64.urlsafe_b64decode(c.signature + "==")
    assert verifier.verify(signer.key_id, checkpoint_statement(7, "cd" * 32, T0, c.key_id), raw)
    assert "=" not in c.signature


def test_progress_reports_counts(verifier: Ed25519Verifier) -> None:
    seen: list[int] = []
    records = build(25)  # under PROGRESS_EVERY: only the final call
    check(records, verifier, progress=seen.append)
    assert seen == [25]


def test_progress_every_ten_thousand(verifier: Ed25519Verifier) -> None:
    seen: list[int] = []
    check(build(20_001), verifier, progress=seen.append)
    assert seen == [10_000, 20_000, 20_001]


# --------------------------------------------------------------------------- modified records


def test_modified_body_is_a_hash_mismatch(verifier: Ed25519Verifier) -> None:
    records = build(30)
    rec = records[11]
    records[11] = dataclasses.replace(rec, body=rec.body.replace('"amount":1200', '"amount":9900'))
    assert records[11].body != rec.body
    report = check(records, verifier)
    assert not report.ok
    assert (report.problem, report.first_bad_seq) == ("hash_mismatch", 12)
    assert report.checked == 11
    assert (report.last_seq, report.last_hash) == (11, records[10].hash)


def test_modified_non_ascii_character_is_detected(verifier: Ed25519Verifier) -> None:
    records = build(10)
    rec = records[4]
    records[4] = dataclasses.replace(rec, body=rec.body.replace("Müller", "Muller"))
    assert records[4].body != rec.body
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("hash_mismatch", 5)


def test_modified_body_with_recomputed_hash_breaks_at_next(verifier: Ed25519Verifier) -> None:
    records = build(30)
    forged = link(
        12, records[10].hash, records[11].kind, records[11].ts, {"amount": 1},
        action_id=records[11].action_id, task_id=records[11].task_id, agent_id=AGENT,
    )  # fmt: skip
    records[11] = forged
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("broken_link", 13)


def test_rewritten_tail_is_caught_by_a_checkpoint(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    records = build(40)
    checkpoints = [cp(signer, records[19]), cp(signer, records[39])]
    forged = relink(records, {"amount": 1}, at=25)
    # Without checkpoints a fully rewritten tail is self-consistent: that is what they are for.
    assert check(forged, verifier).ok
    report = check(forged, verifier, checkpoints)
    assert (report.problem, report.first_bad_seq) == ("checkpoint_mismatch", 40)
    assert report.checkpoints_verified == 1


def test_rewritten_record_at_a_checkpoint_fails_there(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    records = build(40)
    report = check(relink(records, {"x": 1}, at=20), verifier, [cp(signer, records[19])])
    assert (report.problem, report.first_bad_seq) == ("checkpoint_mismatch", 20)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("kind", RecordKind.EVENT),
        ("ts", T0 + timedelta(days=1)),
        ("action_id", "act-other"),
        ("task_id", "task-2"),
        ("agent_id", "spiffe://example.org/agent/evil"),
    ],
)
def test_indexed_column_disagreeing_with_body(
    verifier: Ed25519Verifier, column: str, value: Any
) -> None:
    records = build(10)
    if getattr(records[6], column) == value:
        value = None
    records[6] = dataclasses.replace(records[6], **{column: value})
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("column_mismatch", 7)
    assert f"`{column}`" in report.message


def test_ts_with_other_timezone_but_same_instant_is_fine(verifier: Ed25519Verifier) -> None:
    records = build(3)
    tz = datetime.now().astimezone().tzinfo
    records[1] = dataclasses.replace(records[1], ts=records[1].ts.astimezone(tz))
    assert check(records, verifier).ok


def test_naive_ts_column_is_a_mismatch(verifier: Ed25519Verifier) -> None:
    records = build(3)
    records[1] = dataclasses.replace(records[1], ts=records[1].ts.replace(tzinfo=None))
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("column_mismatch", 2)


def test_prev_hash_column_disagreeing_with_body(verifier: Ed25519Verifier) -> None:
    records = build(10)
    records[6] = dataclasses.replace(records[6], prev_hash="f" * 64)
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("broken_link", 7)


def test_body_linking_elsewhere_than_its_prev_hash_column(verifier: Ed25519Verifier) -> None:
    # A forged body that names another predecessor, filed under the real one's hash.
    records = build(10)
    forged = link(7, "f" * 64, records[6].kind, records[6].ts, {"x": 1})
    records[6] = dataclasses.replace(forged, prev_hash=records[5].hash)
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("column_mismatch", 7)
    assert "`prev_hash`" in report.message


def test_body_with_another_seq_than_its_column(verifier: Ed25519Verifier) -> None:
    records = build(10)
    forged = link(99, records[5].hash, records[6].kind, records[6].ts, {"x": 1})
    records[6] = dataclasses.replace(forged, seq=7)
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("column_mismatch", 7)
    assert "`seq`" in report.message


def test_hash_column_changed_alone(verifier: Ed25519Verifier) -> None:
    records = build(10)
    records[3] = dataclasses.replace(records[3], hash="0" * 64)
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("hash_mismatch", 4)


def test_body_that_is_not_an_envelope(verifier: Ed25519Verifier) -> None:
    records = build(3)
    for body in ("not json", "[1,2]", '{"seq":3}'):
        bad = dataclasses.replace(
            records[2], body=body, hash=hashlib.sha256(body.encode()).hexdigest()
        )
        report = check([*records[:2], bad], verifier)
        assert (report.problem, report.first_bad_seq) == ("malformed_body", 3), body


def test_strict_mode_catches_non_canonical_body(verifier: Ed25519Verifier) -> None:
    records = build(3)
    body = records[2].body.replace('"seq":3,', '"seq": 3,')  # valid JSON, self-hashed
    bad = dataclasses.replace(records[2], body=body, hash=hashlib.sha256(body.encode()).hexdigest())
    chain = [*records[:2], bad]
    assert check(chain, verifier).ok  # the fast path trusts the hashed text
    report = check(chain, verifier, strict=True)
    assert (report.problem, report.first_bad_seq) == ("not_canonical", 3)


def test_is_canonical_rejects_duplicates_and_constants() -> None:
    assert is_canonical('{"a":1,"b":[true,null,"é"]}')
    assert not is_canonical('{"a":1,"a":1}')
    assert not is_canonical('{"b":1,"a":1}')
    assert not is_canonical('{"a":NaN}')
    assert not is_canonical('{"a":1.0}')
    assert not is_canonical('{"a":"\\u00e9"}')


# --------------------------------------------------------------------------- deleted, inserted


def test_deleted_middle_record_is_a_gap(verifier: Ed25519Verifier) -> None:
    records = build(30)
    del records[14]
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("seq_gap", 15)


def test_deleted_first_record(verifier: Ed25519Verifier) -> None:
    report = check(build(5)[1:], verifier)
    assert (report.problem, report.first_bad_seq) == ("seq_gap", 1)


def test_deleted_tail_behind_checkpoint(signer: Ed25519Signer, verifier: Ed25519Verifier) -> None:
    records = build(30)
    checkpoints = [cp(signer, records[9]), cp(signer, records[24])]
    report = check(records[:20], verifier, checkpoints)
    assert (report.problem, report.first_bad_seq) == ("checkpoint_beyond_end", 21)
    assert "21..25" in report.message
    assert report.checkpoints_verified == 1


def test_deleted_tail_after_last_checkpoint_is_not_detectable(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    # The documented limit: records after the newest checkpoint are vouched for by nobody.
    records = build(30)
    report = check(records[:27], verifier, [cp(signer, records[24])])
    assert report.ok and report.last_seq == 27


def test_inserted_record_with_renumbering(verifier: Ed25519Verifier) -> None:
    records = build(10)
    extra = link(5, records[3].hash, RecordKind.EVENT, T0, {"forged": True})
    shifted = [dataclasses.replace(r, seq=r.seq + 1) for r in records[4:]]
    report = check([*records[:4], extra, *shifted], verifier)
    assert not report.ok
    assert report.first_bad_seq == 6
    assert report.problem == "broken_link"


def test_inserted_duplicate_seq(verifier: Ed25519Verifier) -> None:
    records = build(10)
    chain = [*records[:5], records[4], *records[5:]]
    report = check(chain, verifier)
    assert (report.problem, report.first_bad_seq) == ("seq_order", 6)


def test_swapped_records(verifier: Ed25519Verifier) -> None:
    records = build(10)
    records[3], records[4] = records[4], records[3]
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("seq_gap", 4)


def test_swapped_contents_keeping_seq_column(verifier: Ed25519Verifier) -> None:
    records = build(10)
    a, b = records[3], records[4]
    records[3] = dataclasses.replace(b, seq=4)
    records[4] = dataclasses.replace(a, seq=5)
    report = check(records, verifier)
    assert (report.problem, report.first_bad_seq) == ("broken_link", 4)


# --------------------------------------------------------------------------- checkpoints


def test_forged_checkpoint_signature(signer: Ed25519Signer, verifier: Ed25519Verifier) -> None:
    records = build(20)
    good = cp(signer, records[9])
    raw = bytearray(base64.urlsafe_b64decode(good.signature + "=="))
    raw[5] ^= 0x40
    forged = dataclasses.replace(
        good, signature=base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    )
    report = check(records, verifier, [forged])
    assert (report.problem, report.first_bad_seq) == ("bad_checkpoint_signature", 10)


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 11},
        {"hash": "e" * 64},
        {"ts": T0 + timedelta(hours=5)},
        {"signature": "not base64!"},
        {"signature": ""},
        {"key_id": "someone-else"},
    ],
)
def test_altered_checkpoint(
    signer: Ed25519Signer, verifier: Ed25519Verifier, change: dict[str, Any]
) -> None:
    records = build(20)
    altered = dataclasses.replace(cp(signer, records[9]), **change)
    report = check(records, verifier, [altered])
    assert report.problem == "bad_checkpoint_signature"
    assert report.first_bad_seq == altered.seq


def test_padded_signature_text_is_refused(signer: Ed25519Signer, verifier: Ed25519Verifier) -> None:
    records = build(5)
    good = cp(signer, records[4])
    padded = dataclasses.replace(good, signature=good.signature + "=")
    assert check(records, verifier, [good]).ok
    assert check(records, verifier, [padded]).problem == "bad_checkpoint_signature"


def test_checkpoint_signed_by_unknown_key(verifier: Ed25519Verifier) -> None:
    records = build(20)
    stranger = Ed25519Signer(KeyPair.generate())
    report = check(records, verifier, [cp(stranger, records[9])])
    assert (report.problem, report.first_bad_seq) == ("bad_checkpoint_signature", 10)
    assert stranger.key_id in report.message


def test_signed_checkpoint_of_a_wrong_hash(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    records = build(20)
    wrong = sign_checkpoint(10, records[10].hash, T0, signer)
    report = check(records, verifier, [wrong])
    assert (report.problem, report.first_bad_seq) == ("checkpoint_mismatch", 10)


def test_forged_checkpoint_beyond_end_is_reported_as_forged(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    records = build(10)
    stranger = Ed25519Signer(KeyPair.generate())
    beyond = sign_checkpoint(15, "a" * 64, T0, stranger)
    report = check(records, verifier, [beyond])
    assert (report.problem, report.first_bad_seq) == ("bad_checkpoint_signature", 15)


def test_first_bad_position_wins(signer: Ed25519Signer, verifier: Ed25519Verifier) -> None:
    records = build(30)
    stranger = Ed25519Signer(KeyPair.generate())
    records[4] = dataclasses.replace(records[4], body=records[4].body + " ")
    report = check(records, verifier, [cp(stranger, records[19])])
    assert (report.problem, report.first_bad_seq) == ("hash_mismatch", 5)


def test_raising_verifier_counts_as_bad_signature(signer: Ed25519Signer) -> None:
    class Broken:
        def verify(self, key_id: str, message: bytes, signature: bytes) -> bool:
            raise RuntimeError("hsm offline")

    records = build(5)
    report = verify_chain(records, [cp(signer, records[2])], Broken())
    assert (report.problem, report.first_bad_seq) == ("bad_checkpoint_signature", 3)


def test_partial_check_from_a_trusted_anchor(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    records = build(30)
    checkpoints = [cp(signer, records[9]), cp(signer, records[19])]
    report = check(records[10:], verifier, checkpoints, start=(10, records[9].hash))
    assert report.ok and report.checked == 20 and report.checkpoints_verified == 2
    bad = check(records[10:], verifier, checkpoints, start=(10, "1" * 64))
    assert (bad.problem, bad.first_bad_seq) == ("checkpoint_mismatch", 10)


def test_checkpoint_fed_after_its_record_is_out_of_order(
    signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    records = build(5)
    chain = ChainVerifier(verifier)
    for rec in records:
        assert chain.add_record(rec)
    assert chain.add_checkpoint(cp(signer, records[4]))  # at the head: checked at once
    assert not chain.add_checkpoint(cp(signer, records[1]))
    report = chain.finish()
    assert (report.problem, report.first_bad_seq) == ("checkpoint_out_of_order", 2)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=25),
    op=st.sampled_from(["delete", "modify", "swap", "rehash"]),
    where=st.integers(min_value=1, max_value=25),
)
def test_any_single_tampering_is_found_at_its_position(n: int, op: str, where: int) -> None:
    signer = Ed25519Signer(KeyPair.from_private_key(_PROPERTY_KEY))
    verifier = Ed25519Verifier([signer.public_key])
    records = build(n)
    head = [cp(signer, records[-1])]  # the head is covered, as the service ensures
    k = min(where, n - 1 if op == "swap" else n)
    chain = list(records)
    if op == "delete":
        del chain[k - 1]
    elif op == "modify":
        chain[k - 1] = dataclasses.replace(chain[k - 1], body=chain[k - 1].body[:-1] + " }")
    elif op == "swap":
        chain[k - 1], chain[k] = chain[k], chain[k - 1]
    else:
        chain = relink(records, {"x": 1}, at=k)
    report = check(chain, verifier, head)
    assert not report.ok
    if op == "rehash":
        assert report.first_bad_seq == n and report.problem == "checkpoint_mismatch"
    else:
        assert report.first_bad_seq == k, (op, k, report)
    assert report.checked == report.first_bad_seq - 1


_PROPERTY_KEY = KeyPair.generate().private_key
