"""The audit use cases: record, checkpoint, verify, tail, export and verify an export offline.

Records go through the ``AuditLog`` port; every ``checkpoint_every`` records (and on demand, at
task end or shutdown) the head of the chain is signed into a checkpoint.

Export format (JSON Lines, UTF-8), one object per line, in chain order:

    {"seq": N, "hash": H, "prev_hash": P, "body": {...the record's envelope...}}
    {"checkpoint": {"seq", "hash", "ts", "key_id", "signature"}}

A checkpoint line follows the record it covers. A record line holds the stored body text
verbatim (canonical JSON is JSON), so :func:`verify_jsonl` can hash the exact text without
re-canonicalising it; a line re-serialised by another tool is still read, just slower.
Read exports by iterating a file (which splits on ``\\n`` only), not with ``str.splitlines``:
canonical JSON keeps characters such as U+2028 raw.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from tribune.core.audit import GENESIS, ts_text
from tribune.core.canonical import canonical
from tribune.core.model import AuditEntry, AuditRecord, Checkpoint, RecordKind
from tribune.core.verify import (
    COLUMN_MISMATCH,
    MALFORMED_EXPORT,
    PROGRESS_EVERY,
    ChainVerifier,
    Progress,
    VerifyReport,
    sign_checkpoint,
    verify_chain,
)
from tribune.errors import AuditIntegrityError, Conflict, InvalidInput
from tribune.ports import AuditLog, Clock, Signer, Verifier

# The layout export_jsonl writes; the body group is the stored text, byte for byte.
_RECORD_LINE = re.compile(
    r'\{"seq":(0|[1-9][0-9]{0,18}),"hash":"([0-9a-f]{64})","prev_hash":"([0-9a-f]{64})",'
    r'"body":(\{.*\})\}\Z',
    re.DOTALL,
)


class AuditService:
    """Appends audit records and keeps the chain covered by signed checkpoints."""

    def __init__(
        self,
        log: AuditLog,
        clock: Clock,
        signer: Signer,
        verifier: Verifier,
        checkpoint_every: int = 1000,
        *,
        verify_before_sign: bool = True,
        background: bool = False,
    ) -> None:
        if checkpoint_every < 0:
            raise InvalidInput("`checkpoint_every` must be 0 (never) or more")
        self.log = log
        self.clock = clock
        self.signer = signer
        self.verifier = verifier
        self.checkpoint_every = checkpoint_every
        self.verify_before_sign = verify_before_sign
        self._lock = threading.Lock()
        self._last: Checkpoint | None = None
        self._last_loaded = False
        # With ``background``, due checkpoints are signed by a worker thread so the ~10 ms of
        # verify-and-sign never lands on a governed call.
        self.background = background
        self.last_error: Exception | None = None
        self.wrote = False  # this service appended since it started
        self._due = threading.Event()
        self._stopping = False
        self._worker: threading.Thread | None = None

    # ----------------------------------------------------------------- writing

    def record(
        self,
        kind: RecordKind,
        body: dict[str, Any],
        *,
        action_id: str | None = None,
        task_id: str | None = None,
        agent_id: str | None = None,
    ) -> AuditRecord:
        """Append one durable record; sign a checkpoint when its seq is a multiple of
        ``checkpoint_every``."""
        rec = self.log.append(
            kind, self.clock.now(), body, action_id=action_id, task_id=task_id, agent_id=agent_id
        )
        self.wrote = True
        self._after_append(rec.seq, rec.seq)
        return rec

    def record_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append ``entries`` in one transaction (group commit); checkpoint as ``record``."""
        recs = self.log.append_many(entries)
        self.wrote = True
        if recs:
            self._after_append(recs[0].seq, recs[-1].seq)
        return recs

    def _after_append(self, first: int, last: int) -> None:
        # INVARIANT: seq numbers are global, so with several writers (replicas) exactly one of
        # them reaches each multiple and signs it.
        every = self.checkpoint_every
        if every and last // every != (first - 1) // every:
            if self.background:
                self._schedule()
            else:
                self.checkpoint()

    def _schedule(self) -> None:
        if self._worker is None:
            with self._lock:
                if self._worker is None:
                    self._worker = threading.Thread(
                        target=self._run, name="tribune-checkpoints", daemon=True
                    )
                    self._worker.start()
        self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._stopping:
                return
            try:
                self.checkpoint()
            except Exception as exc:  # kept for operators; `audit verify` reports the cause
                self.last_error = exc

    def stop(self) -> None:
        """Stop the background worker (if any) after its current checkpoint."""
        worker = self._worker
        if worker is not None:
            self._stopping = True
            self._due.set()
            worker.join(timeout=30)
            self._worker = None

    def _last_checkpoint(self) -> Checkpoint | None:
        if not self._last_loaded:
            self._last = max(self.log.checkpoints(), key=lambda c: c.seq, default=None)
            self._last_loaded = True
        return self._last

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head (None when the log is empty). An unchanged head gets no new
        checkpoint: the one covering it is returned.

        Before signing, the records since the last checkpoint are verified from it (unless
        ``verify_before_sign`` is off), so a signature never vouches for a tampered chain;
        a problem raises ``AuditIntegrityError``.
        """
        with self._lock:
            seq, head_hash = self.log.head()
            if seq == 0:
                return None
            last = self._last_checkpoint()
            if last is not None and last.seq == seq and last.hash == head_hash:
                return last
            if self.verify_before_sign:
                self._verify_since(last, seq, head_hash)
            checkpoint = sign_checkpoint(seq, head_hash, self.clock.now(), self.signer)
            try:
                self.log.add_checkpoint(checkpoint)
            except Conflict:
                checkpoint = self._signed_elsewhere(seq, head_hash)
            self._last = checkpoint
            return checkpoint

    def _signed_elsewhere(self, seq: int, head_hash: str) -> Checkpoint:
        """Another writer (replica) signed this head with our key first: use theirs."""
        for stored in self.log.checkpoints():
            if stored.seq == seq and stored.key_id == self.signer.key_id:
                if stored.hash != head_hash:
                    raise AuditIntegrityError(
                        f"a checkpoint at seq {seq} states another hash than the chain",
                        hint="run `tribune audit verify`",
                    )
                return stored
        raise AuditIntegrityError(f"checkpoint at seq {seq} conflicts but cannot be found")

    def _verify_since(self, last: Checkpoint | None, seq: int, head_hash: str) -> None:
        start = (0, GENESIS) if last is None else (last.seq, last.hash)
        if seq < start[0]:
            raise AuditIntegrityError(
                f"the chain ends at {seq} but a checkpoint covers seq {start[0]}",
                hint="run `tribune audit verify`",
            )
        count = seq - start[0]
        records: Iterable[AuditRecord] = (
            self.log.records(after_seq=start[0], limit=count) if count else ()
        )
        if threading.current_thread() is self._worker:
            records = _yielding(records)
        report = verify_chain(records, [], self.verifier, start=start)
        if not report.ok:
            problem = report.message
        elif report.last_seq != seq or report.last_hash != head_hash:
            problem = "the head of the chain does not follow from the last checkpoint"
        else:
            return
        raise AuditIntegrityError(
            f"refusing to sign checkpoint at seq {seq}: {problem}",
            hint="run `tribune audit verify`",
        )

    # ----------------------------------------------------------------- reading

    def verify(self, progress: Progress | None = None, strict: bool = False) -> VerifyReport:
        """Verify the whole stored chain and every checkpoint, streaming the records."""
        # INVARIANT: checkpoints are read before records, so every checkpoint read covers a
        # record the stream will contain unless records were removed.
        checkpoints = self.log.checkpoints()
        chain = ChainVerifier(self.verifier, strict=strict, progress=progress)
        for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
            if not chain.add_checkpoint(checkpoint):
                return chain.finish()
        try:
            for rec in self.log.records():
                if not chain.add_record(rec):
                    break
        except AuditIntegrityError as exc:
            # The store could not even read the next record (e.g. an unknown kind).
            chain.fail(chain.last_seq + 1, COLUMN_MISMATCH, exc.message)
        return chain.finish()

    def unfinished(self, *, before: datetime) -> list[AuditRecord]:
        """Allowed decisions made before ``before`` that have no result record: calls whose
        outcome was never observed (the process died while they ran)."""
        pending: dict[str, AuditRecord] = {}
        for rec in self.log.records():
            if rec.action_id is None:
                continue
            if rec.kind is RecordKind.DECISION and rec.ts < before:
                data = json.loads(rec.body)["data"]
                if data.get("effect") == "allow" and data.get("expects_result", True):
                    pending[rec.action_id] = rec
            elif rec.kind is RecordKind.RESULT:
                pending.pop(rec.action_id, None)
        return list(pending.values())

    def reconcile(self, *, before: datetime) -> int:
        """Record status ``unknown`` for every call allowed before ``before`` whose result was
        never recorded; return how many. Run it when no process may still be running those
        calls (``tribune audit reconcile --older-than``)."""
        count = 0
        for decision in self.unfinished(before=before):
            self.record(
                RecordKind.RESULT,
                {
                    "status": "unknown",
                    "reason": "no result was recorded; the outcome was not observed",
                    "action_digest": json.loads(decision.body)["data"].get("action_digest"),
                },
                action_id=decision.action_id,
                task_id=decision.task_id,
                agent_id=decision.agent_id,
            )
            count += 1
        return count

    def tail(self, n: int) -> list[AuditRecord]:
        """The last ``n`` records, oldest first."""
        if n <= 0:
            return []
        seq, _ = self.log.head()
        return list(self.log.records(after_seq=max(0, seq - n), limit=n))

    def export_jsonl(
        self, out: TextIO, *, after_seq: int = 0, progress: Progress | None = None
    ) -> int:
        """Write records after ``after_seq`` and the checkpoints covering them (one at
        ``after_seq`` first, to anchor a partial export); returns the records written."""
        # INVARIANT: checkpoints are read before records (see verify).
        pending: dict[int, list[Checkpoint]] = {}
        for checkpoint in sorted(self.log.checkpoints(), key=lambda c: c.seq):
            if checkpoint.seq == after_seq and after_seq > 0:
                out.write(checkpoint_line(checkpoint))
            elif checkpoint.seq > after_seq:
                pending.setdefault(checkpoint.seq, []).append(checkpoint)
        written = 0
        for rec in self.log.records(after_seq=after_seq):
            out.write(record_line(rec))
            for checkpoint in pending.pop(rec.seq, ()):
                out.write(checkpoint_line(checkpoint))
            written += 1
            if progress is not None and written % PROGRESS_EVERY == 0:
                progress(written)
        for seq in sorted(pending):  # beyond the last record: the verifier will say so
            for checkpoint in pending[seq]:
                out.write(checkpoint_line(checkpoint))
        if progress is not None:
            progress(written)
        return written


# --------------------------------------------------------------------------- export lines


def record_line(rec: AuditRecord) -> str:
    """One export line for a record. The stored body text goes in verbatim."""
    # json.dumps escapes whatever a tampered column holds; the verifier then rejects it.
    return (
        f'{{"seq":{int(rec.seq)},"hash":{json.dumps(rec.hash)},'
        f'"prev_hash":{json.dumps(rec.prev_hash)},"body":{rec.body}}}\n'
    )


def checkpoint_line(checkpoint: Checkpoint) -> str:
    """One export line for a checkpoint."""
    value = {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "ts": ts_text(checkpoint.ts),
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }
    return json.dumps({"checkpoint": value}, ensure_ascii=False, separators=(",", ":")) + "\n"


def _parse_checkpoint(value: Any) -> Checkpoint:
    if not isinstance(value, dict):
        raise ValueError("checkpoint is not an object")
    seq = value.get("seq")
    texts = [value.get(k) for k in ("hash", "ts", "key_id", "signature")]
    if type(seq) is not int or not all(isinstance(v, str) for v in texts):
        raise ValueError("checkpoint fields have wrong types")
    hash_, ts, key_id, signature = (str(v) for v in texts)
    when = datetime.fromisoformat(ts)
    if when.tzinfo is None:
        raise ValueError("checkpoint time has no timezone")
    return Checkpoint(seq=seq, hash=hash_, ts=when, key_id=key_id, signature=signature)


def _parse_line(line: str) -> Checkpoint | tuple[int, str, str, str]:
    """A checkpoint, or the (seq, hash, prev_hash, body text) of a record line."""
    match = _RECORD_LINE.match(line)
    if match is not None:
        return int(match[1]), match[2], match[3], match[4]
    value = json.loads(line)  # not in export_jsonl's layout: read it as plain JSON
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    if "checkpoint" in value:
        return _parse_checkpoint(value["checkpoint"])
    seq, hash_, prev, body = (value.get(k) for k in ("seq", "hash", "prev_hash", "body"))
    if type(seq) is not int or not isinstance(hash_, str) or not isinstance(prev, str):
        raise ValueError("record fields have wrong types")
    if not isinstance(body, dict):
        raise ValueError("record body is not an object")
    # The original text is lost: rebuild it as RFC 8785 (slow, but it hashes the same).
    return seq, hash_, prev, canonical(body).decode("utf-8")


def verify_jsonl(
    lines: Iterable[str],
    verifier: Verifier,
    *,
    anchor: tuple[int, str] | None = None,
    strict: bool = False,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify an export offline, with the same checks as ``verify``.

    ``anchor`` is the trusted (seq, hash) a partial export follows (for example the
    ``last_seq``/``last_hash`` of an earlier report); by default the export must start at the
    genesis. Blank lines are skipped.
    """
    chain = ChainVerifier(verifier, strict=strict, start=anchor or (0, GENESIS), progress=progress)
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            item = _parse_line(line)
            if isinstance(item, Checkpoint):
                ok = chain.add_checkpoint(item)
            else:
                ok = chain.add_body(*item)
        except (ValueError, TypeError, UnicodeError) as exc:
            reason = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
            chain.fail(
                chain.last_seq + 1, MALFORMED_EXPORT, f"line {number} cannot be read: {reason}"
            )
            ok = False
        if not ok:
            break
    return chain.finish()


def _yielding(records: Iterable[AuditRecord], every: int = 32) -> Iterator[AuditRecord]:
    """Pass records through, letting other threads run every few: a background checkpoint
    must not hold the interpreter for the length of a whole verification."""
    for i, record in enumerate(records, 1):
        if i % every == 0:
            time.sleep(0)
        yield record
