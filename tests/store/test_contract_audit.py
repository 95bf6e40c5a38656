"""The store contract for the audit log, run against every backend: appends, chains, group
commits, checkpoints, concurrent and killed writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from tribune.core.audit import GENESIS, link
from tribune.core.model import (
    AuditEntry,
    Checkpoint,
    RecordKind,
)
from tribune.errors import (
    AuditIntegrityError,
    Conflict,
    InvalidInput,
)
from tribune.ports import Store
from tribune.store import open_store
from tribune.store.factory import store_url as parse_store_url

from .contract_helpers import IST, T0, assert_linear

# --------------------------------------------------------------------------- audit log


def test_empty_log(store: Store) -> None:
    assert store.head() == (0, GENESIS)
    assert store.count() == 0
    assert list(store.records()) == []
    assert store.checkpoints() == []


def test_append_links_records_exactly_as_link_builds_them(store: Store) -> None:
    ts = T0.astimezone(IST)
    first = store.append(
        RecordKind.INTENT, ts, {"tool": "pay", "n": 1}, action_id="a1", task_id="t1", agent_id="ag"
    )
    second = store.append(
        RecordKind.DECISION, T0, {"effect": "allow", "note": "ünïcødé ✓"}, action_id="a1"
    )
    assert first == link(
        1,
        GENESIS,
        RecordKind.INTENT,
        ts,
        {"tool": "pay", "n": 1},
        action_id="a1",
        task_id="t1",
        agent_id="ag",
    )
    assert second.prev_hash == first.hash
    assert store.head() == (2, second.hash)
    assert store.count() == 2
    stored = list(store.records())
    assert stored == [first, second]
    assert stored[0].ts.utcoffset() == timedelta(0)
    assert [r.body for r in stored] == [first.body, second.body]
    assert assert_linear(stored) == 2


def test_bad_body_appends_nothing(store: Store) -> None:
    store.append(RecordKind.EVENT, T0, {"ok": True})
    with pytest.raises(InvalidInput):
        store.append(RecordKind.EVENT, T0, {"bad": float("nan")})
    with pytest.raises(InvalidInput):
        store.append(RecordKind.EVENT, T0, {"bad": object()})
    assert store.count() == 1
    assert store.append(RecordKind.EVENT, T0, {"ok": 2}).seq == 2


def test_records_after_and_limit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tribune.store.sql_audit.BATCH", 3)  # cross batch edges with few rows
    made = [store.append(RecordKind.EVENT, T0, {"i": i}) for i in range(10)]
    assert list(store.records()) == made
    assert list(store.records(after_seq=4)) == made[4:]
    assert list(store.records(after_seq=2, limit=4)) == made[2:6]
    assert list(store.records(limit=3)) == made[:3]
    assert list(store.records(limit=0)) == []
    assert list(store.records(after_seq=10)) == []
    with pytest.raises(InvalidInput):
        list(store.records(limit=-1))


def test_checkpoints(store: Store) -> None:
    cp = Checkpoint(5, "ab" * 32, T0.astimezone(IST), "key-1", "c2ln")
    store.add_checkpoint(Checkpoint(9, "cd" * 32, T0, "key-1", "c2ln"))
    store.add_checkpoint(cp)
    store.add_checkpoint(Checkpoint(5, "ab" * 32, T0, "key-0", "c2ln"))
    with pytest.raises(Conflict):
        store.add_checkpoint(Checkpoint(5, "ef" * 32, T0, "key-1", "other"))
    assert [(c.seq, c.key_id) for c in store.checkpoints()] == [
        (5, "key-0"),
        (5, "key-1"),
        (9, "key-1"),
    ]
    assert store.checkpoints()[1] == cp


def test_append_many_links_consecutively_in_one_commit(store: Store) -> None:
    store.append(RecordKind.EVENT, T0, {"n": 0})
    entries = [
        AuditEntry(RecordKind.INTENT, T0, {"n": 1}, action_id="a1", task_id="t", agent_id="g"),
        AuditEntry(RecordKind.DECISION, T0, {"n": 2}, action_id="a1", task_id="t", agent_id="g"),
    ]
    first, second = store.append_many(entries)
    records = list(store.records())
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[1:] == [first, second]
    assert first.prev_hash == records[0].hash and second.prev_hash == first.hash
    assert (first.kind, second.kind) == (RecordKind.INTENT, RecordKind.DECISION)


def test_append_many_is_all_or_nothing(store: Store) -> None:
    good = AuditEntry(RecordKind.INTENT, T0, {"ok": True})
    bad = AuditEntry(RecordKind.DECISION, T0, {"x": object()})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        store.append_many([good, bad])
    assert store.count() == 0 and store.head() == (0, GENESIS)


def test_concurrent_appends_stay_linear(store: Store) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                store.append(RecordKind.EVENT, T0, {"thread": n, "i": i})
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert store.count() == 320
    assert assert_linear(store.records()) == 320


def test_two_stores_on_one_database_append_linearly(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    errors: list[BaseException] = []

    def work(s: Store, n: int) -> None:
        try:
            for i in range(30):
                s.append(RecordKind.EVENT, T0, {"writer": n, "i": i})
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(stores[n % 2], n)) for n in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert assert_linear(stores[0].records()) == 180
    for s in stores:
        s.close()


CHILD = """
import sys
from datetime import UTC, datetime
from tribune.core.model import RecordKind
from tribune.store import open_store
store = open_store(sys.argv[1])
i = 0
while sys.argv[2] == "forever" or i < int(sys.argv[2]):
    rec = store.append(RecordKind.EVENT, datetime.now(UTC), {"pid": sys.argv[3], "i": i})
    print(rec.seq, rec.hash, flush=True)
    i += 1
store.close()
"""


def _child(url: str, count: str, tag: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, count, tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_append_linearly(store_url: str) -> None:
    children = [_child(store_url, "60", f"p{n}") for n in range(3)]
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert len(out.splitlines()) == 60
    store = open_store(store_url)
    assert assert_linear(store.records()) == 180
    tags = [json.loads(r.body)["data"]["pid"] for r in store.records()]
    assert sorted(set(tags)) == ["p0", "p1", "p2"]
    store.close()


def test_acknowledged_appends_survive_sigkill(store_url: str) -> None:
    child = _child(store_url, "forever", "victim")
    acked: list[tuple[int, str]] = []
    assert child.stdout is not None
    try:
        for line in child.stdout:
            seq, digest = line.split()
            acked.append((int(seq), digest))
            if len(acked) == 40:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert len(acked) == 40, child.stderr.read() if child.stderr else ""
    store = open_store(store_url)
    stored = {r.seq: r.hash for r in store.records()}
    assert all(stored.get(seq) == digest for seq, digest in acked)
    assert assert_linear(store.records()) >= 40
    # the log goes on from the surviving head
    assert store.append(RecordKind.EVENT, T0, {}).seq == len(stored) + 1
    store.close()


def test_unknown_record_kind_in_database_is_an_integrity_error(store_url: str) -> None:
    store = open_store(store_url)
    store.append(RecordKind.EVENT, T0, {})
    engine = create_engine(parse_store_url(store_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET kind = 'forged'"))
    engine.dispose()
    with pytest.raises(AuditIntegrityError):
        list(store.records())
    store.close()


# --------------------------------------------------------------------------- finding records


def _fill_for_find(store: Store) -> None:
    for i in range(12):
        store.append(
            (RecordKind.INTENT, RecordKind.DECISION, RecordKind.RESULT)[i % 3],
            T0 + timedelta(seconds=i),
            {"i": i},
            action_id=f"a{i // 3}",
            task_id="t-even" if (i // 3) % 2 == 0 else "t-odd",
            agent_id="ag1" if i < 6 else "ag2",
        )


def test_find_records_filters_combine(store: Store) -> None:
    _fill_for_find(store)
    assert [r.seq for r in store.find_records(action_id="a1")] == [4, 5, 6]
    assert [r.seq for r in store.find_records(task_id="t-odd", kinds=(RecordKind.RESULT,))] == [
        6,
        12,
    ]
    assert [r.seq for r in store.find_records(agent_id="ag2", kinds=(RecordKind.INTENT,))] == [
        7,
        10,
    ]
    kinds = (RecordKind.INTENT, RecordKind.RESULT)
    assert len(store.find_records(kinds=kinds)) == 8
    assert store.find_records(action_id="nope") == []


def test_find_records_by_time_is_half_open(store: Store) -> None:
    _fill_for_find(store)
    found = store.find_records(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=6))
    assert [r.seq for r in found] == [4, 5, 6]
    in_ist = store.find_records(since=(T0 + timedelta(seconds=11)).astimezone(IST))
    assert [r.seq for r in in_ist] == [12]
    with pytest.raises(InvalidInput):
        store.find_records(since=T0.replace(tzinfo=None))


def test_find_records_pages_by_seq(store: Store) -> None:
    _fill_for_find(store)
    first = store.find_records(limit=5)
    second = store.find_records(after_seq=first[-1].seq, limit=5)
    third = store.find_records(after_seq=second[-1].seq, limit=5)
    assert [r.seq for r in first + second + third] == list(range(1, 13))
    assert first[0] == next(iter(store.records()))  # the same records `records` yields
    for bad in (0, -1, 10_001):
        with pytest.raises(InvalidInput):
            store.find_records(limit=bad)
