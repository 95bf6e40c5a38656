"""AuditService on every real store (memory, SQLite, PostgreSQL): records, checkpoints, verify,
tail, and export verified offline."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tribune.core.model import Checkpoint, RecordKind
from tribune.crypto import Ed25519Signer, Ed25519Verifier, KeyPair
from tribune.errors import InvalidInput
from tribune.ports import Store
from tribune.services.audit import AuditService, verify_jsonl
from tribune.system import FixedClock

AGENT = "spiffe://example.org/agent/ops-bot"
TEXT = "Überweisung an Zoë ✓ 支付 \u2028 line-sep \x85 nel \U0001f600"


@pytest.fixture(scope="module")
def signer() -> Ed25519Signer:
    return Ed25519Signer(KeyPair.generate())


@pytest.fixture(scope="module")
def verifier(signer: Ed25519Signer) -> Ed25519Verifier:
    return Ed25519Verifier([signer.public_key])


def service(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier, every: int = 5
) -> AuditService:
    clock = FixedClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    return AuditService(store, clock, signer, verifier, checkpoint_every=every)


def fill(audit: AuditService, n: int) -> None:
    for i in range(n):
        assert isinstance(audit.clock, FixedClock)
        audit.clock.advance(0.25)
        audit.record(
            [RecordKind.INTENT, RecordKind.DECISION, RecordKind.RESULT][i % 3],
            {"i": i, "text": TEXT, "amount": i * 10},
            action_id=f"act-{i // 3}",
            task_id="task-1",
            agent_id=AGENT,
        )


def export(audit: AuditService, **kw: int) -> list[str]:
    out = io.StringIO()
    audit.export_jsonl(out, **kw)
    return out.getvalue().split("\n")  # split on \n only, as iterating a file does


def test_record_appends_to_the_chain(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier)
    first = audit.record(RecordKind.EVENT, {"event": "started"}, task_id="t-1")
    second = audit.record(RecordKind.INTENT, {"tool": "x"}, action_id="a-1", agent_id=AGENT)
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev_hash == first.hash
    assert json.loads(second.body)["data"] == {"tool": "x"}
    assert (second.action_id, second.agent_id, second.task_id) == ("a-1", AGENT, None)
    assert first.ts < second.ts or first.ts == second.ts


def test_checkpoints_every_n_and_on_demand(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier, every=5)
    fill(audit, 12)
    assert [c.seq for c in store.checkpoints()] == [5, 10]
    made = audit.checkpoint()
    assert made is not None and made.seq == 12 and made.key_id == signer.key_id
    assert made.hash == store.head()[1]
    # An unchanged head gets no second checkpoint, from this or a fresh service.
    assert audit.checkpoint() == made
    assert service(store, signer, verifier).checkpoint() == made
    assert [c.seq for c in store.checkpoints()] == [5, 10, 12]
    report = audit.verify()
    assert report.ok, report.message
    assert (report.checked, report.checkpoints_verified) == (12, 3)


def test_no_checkpoint_for_an_empty_log_or_when_disabled(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier, every=0)
    assert audit.checkpoint() is None
    fill(audit, 7)
    assert store.checkpoints() == []
    with pytest.raises(InvalidInput):
        service(store, signer, verifier, every=-1)


def test_another_writer_signing_the_same_head_first(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    a = service(store, signer, verifier, every=0)
    b = service(store, signer, verifier, every=0)
    fill(a, 2)
    assert b.checkpoint() is not None  # b now remembers seq 2
    fill(a, 3)
    signed_by_a = a.checkpoint()
    assert signed_by_a is not None and signed_by_a.seq == 5
    # b's memory is stale: it signs seq 5 too, the store refuses, b adopts a's checkpoint.
    assert b.checkpoint() == signed_by_a
    assert [c.seq for c in store.checkpoints()] == [2, 5]


def test_verify_reports_progress_and_strict_mode(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier)
    fill(audit, 9)
    seen: list[int] = []
    report = audit.verify(progress=seen.append, strict=True)
    assert report.ok and report.checked == 9 and seen == [9]


def test_verify_with_a_verifier_that_lacks_the_key(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier)
    fill(audit, 6)
    other = AuditService(store, audit.clock, signer, Ed25519Verifier([]))
    report = other.verify()
    assert (report.problem, report.first_bad_seq) == ("bad_checkpoint_signature", 5)


def test_tail(store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier) -> None:
    audit = service(store, signer, verifier)
    assert audit.tail(3) == []
    fill(audit, 8)
    assert [r.seq for r in audit.tail(3)] == [6, 7, 8]
    assert [r.seq for r in audit.tail(100)] == list(range(1, 9))
    assert audit.tail(0) == []


# --------------------------------------------------------------------------- export


def test_export_verifies_offline_with_public_keys_only(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier)
    fill(audit, 13)
    audit.checkpoint()
    lines = export(audit)
    records = [json.loads(x) for x in lines if x and "checkpoint" not in json.loads(x)]
    assert [r["seq"] for r in records] == list(range(1, 14))
    assert records[0]["body"]["data"]["text"] == TEXT
    assert set(records[0]) == {"seq", "hash", "prev_hash", "body"}
    # Checkpoint lines follow the record they cover.
    kinds = ["cp" if x.startswith('{"checkpoint"') else "r" for x in lines if x]
    assert kinds.count("cp") == 3 and kinds[5] == kinds[11] == kinds[-1] == "cp"
    offline = Ed25519Verifier.from_jwks(json.loads(json.dumps(verifier.jwks())))
    report = verify_jsonl(lines, offline)
    assert report.ok, report.message
    assert (report.checked, report.checkpoints_verified) == (13, 3)
    assert report.last_hash == store.head()[1]


def test_export_round_trips_through_a_utf8_file(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier, tmp_path: Path
) -> None:
    audit = service(store, signer, verifier)
    fill(audit, 6)
    path = tmp_path / "audit.jsonl"
    with path.open("w", encoding="utf-8") as out:
        assert audit.export_jsonl(out) == 6
    assert "\u2028" in path.read_text(encoding="utf-8")
    with path.open(encoding="utf-8") as lines:
        assert verify_jsonl(lines, verifier).ok
    # str.splitlines splits inside bodies (U+2028, U+0085): the damage is reported, not missed.
    broken = verify_jsonl(path.read_text(encoding="utf-8").splitlines(), verifier)
    assert not broken.ok and broken.first_bad_seq == 1


def test_export_reserialised_by_another_tool_still_verifies(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier)
    fill(audit, 7)
    lines = [json.dumps(json.loads(x), indent=None) for x in export(audit) if x]
    assert all(": " in x for x in lines)  # not export_jsonl's layout any more
    report = verify_jsonl(lines, verifier)
    assert report.ok and report.checked == 7
    assert verify_jsonl(lines, verifier, strict=True).ok


def test_partial_export_from_an_anchor(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier)
    fill(audit, 10)
    first = verify_jsonl(export(audit), verifier)
    fill(audit, 7)
    seen: list[int] = []
    out = io.StringIO()
    assert audit.export_jsonl(out, after_seq=first.last_seq, progress=seen.append) == 7
    assert seen == [7]
    lines = out.getvalue().split("\n")
    assert lines[0].startswith('{"checkpoint":{') and '"seq":10' in lines[0]
    report = verify_jsonl(lines, verifier, anchor=(first.last_seq, first.last_hash))
    assert report.ok and report.checked == 7 and report.checkpoints_verified == 2
    # Without the anchor the export does not start at the genesis.
    alone = verify_jsonl(lines, verifier)
    assert (alone.problem, alone.first_bad_seq) == ("seq_gap", 1)
    wrong = verify_jsonl(lines, verifier, anchor=(10, "0" * 64))
    assert (wrong.problem, wrong.first_bad_seq) == ("checkpoint_mismatch", 10)


def test_verify_empty_export(verifier: Ed25519Verifier) -> None:
    assert verify_jsonl([], verifier).ok
    assert verify_jsonl(["", "\n"], verifier).ok


# --------------------------------------------------------------------------- tampered exports


@pytest.fixture
def exported(store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier) -> list[str]:
    audit = service(store, signer, verifier)
    fill(audit, 12)
    audit.checkpoint()
    return [x for x in export(audit) if x]


def where(lines: list[str], seq: int) -> int:
    return next(i for i, x in enumerate(lines) if x.startswith(f'{{"seq":{seq},'))


def test_export_with_modified_body(exported: list[str], verifier: Ed25519Verifier) -> None:
    i = where(exported, 7)
    exported[i] = exported[i].replace('"amount":60', '"amount":99')
    report = verify_jsonl(exported, verifier)
    assert (report.problem, report.first_bad_seq) == ("hash_mismatch", 7)


def test_export_with_modified_non_ascii_text(
    exported: list[str], verifier: Ed25519Verifier
) -> None:
    i = where(exported, 3)
    exported[i] = exported[i].replace("Zoë", "Zoe")
    report = verify_jsonl(exported, verifier)
    assert (report.problem, report.first_bad_seq) == ("hash_mismatch", 3)


def test_export_with_deleted_line(exported: list[str], verifier: Ed25519Verifier) -> None:
    del exported[where(exported, 8)]
    report = verify_jsonl(exported, verifier)
    assert (report.problem, report.first_bad_seq) == ("seq_gap", 8)


def test_export_with_swapped_lines(exported: list[str], verifier: Ed25519Verifier) -> None:
    i = where(exported, 2)
    exported[i], exported[i + 1] = exported[i + 1], exported[i]
    report = verify_jsonl(exported, verifier)
    assert (report.problem, report.first_bad_seq) == ("seq_gap", 2)


def test_export_with_cut_tail_behind_checkpoint(
    exported: list[str], verifier: Ed25519Verifier
) -> None:
    kept = exported[: where(exported, 8)]
    cut = kept + [x for x in exported if x.startswith('{"checkpoint"') and x not in kept]
    report = verify_jsonl(cut, verifier)
    assert (report.problem, report.first_bad_seq) == ("checkpoint_beyond_end", 8)


def test_export_with_altered_checkpoint(exported: list[str], verifier: Ed25519Verifier) -> None:
    i = next(i for i, x in enumerate(exported) if x.startswith('{"checkpoint"'))
    value = json.loads(exported[i])
    value["checkpoint"]["ts"] = "2030-01-01T00:00:00.000000Z"
    exported[i] = json.dumps(value)
    report = verify_jsonl(exported, verifier)
    assert (report.problem, report.first_bad_seq) == ("bad_checkpoint_signature", 5)


def test_export_with_checkpoint_moved_late(exported: list[str], verifier: Ed25519Verifier) -> None:
    i = next(i for i, x in enumerate(exported) if x.startswith('{"checkpoint"'))
    exported.append(exported.pop(i))
    report = verify_jsonl(exported, verifier)
    assert (report.problem, report.first_bad_seq) == ("checkpoint_out_of_order", 5)


@pytest.mark.parametrize(
    "garbage",
    [
        "not json",
        "[1, 2]",
        '{"checkpoint": "nope"}',
        '{"checkpoint": {"seq": 1}}',
        '{"checkpoint": {"seq": 1, "hash": "x", "ts": "2026-01-01T00:00:00", "key_id": "k",'
        ' "signature": "s"}}',
        '{"seq": "6", "hash": "x", "prev_hash": "y", "body": {}}',
        '{"seq": 6, "hash": "x", "prev_hash": "y", "body": "text"}',
    ],
)
def test_export_with_unreadable_line(
    exported: list[str], verifier: Ed25519Verifier, garbage: str
) -> None:
    exported.insert(where(exported, 6), garbage)
    report = verify_jsonl(exported, verifier)
    assert (report.problem, report.first_bad_seq) == ("malformed_export", 6)
    assert "line" in report.message


def test_checkpoint_values_survive_export(
    store: Store, signer: Ed25519Signer, verifier: Ed25519Verifier
) -> None:
    audit = service(store, signer, verifier)
    fill(audit, 5)
    stored = store.checkpoints()[0]
    line = next(x for x in export(audit) if x.startswith('{"checkpoint"'))
    value = json.loads(line)["checkpoint"]
    back = Checkpoint(
        value["seq"], value["hash"], datetime.fromisoformat(value["ts"]), value["key_id"],
        value["signature"],
    )  # fmt: skip
    assert back == stored
