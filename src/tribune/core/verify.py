"""Verifying the audit hash chain and its signed checkpoints, pure.

The chain is checked record by record in seq order. For each record: its seq follows the last
one; the SHA-256 of its stored body text equals its hash; its prev_hash equals the last record's
hash; the body's envelope agrees with the record's indexed columns. Hashing the stored text
detects any change to it, so the fast path never re-canonicalises a body; ``strict`` also checks
that each body is exactly the RFC 8785 form of its own value (slower).

A checkpoint is a signed statement that the chain had ``hash`` at ``seq``. Each checkpoint is
checked when the chain reaches its seq: a bad signature, an unknown key or a different hash fail
there; a signed checkpoint beyond the last record means the tail was cut off.

Verification stops at the first problem and names its position (``first_bad_seq``).
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Any, Protocol

import orjson

from tribune.core.audit import GENESIS, ts_text
from tribune.core.canonical import canonical
from tribune.core.model import AuditRecord, Checkpoint

CHECKPOINT_TYPE = "tribune.audit.checkpoint.v1"
ENVELOPE_KEYS = frozenset({"seq", "prev", "kind", "ts", "action_id", "task_id", "agent_id", "data"})
PROGRESS_EVERY = 10_000

Progress = Callable[[int], None]

# Stable problem codes (``VerifyReport.problem``).
SEQ_GAP = "seq_gap"  # a record is missing (deleted), or records were reordered
SEQ_ORDER = "seq_order"  # a seq repeats or goes backwards (inserted, duplicated, reordered)
HASH_MISMATCH = "hash_mismatch"  # the body text is not what was hashed (modified)
BROKEN_LINK = "broken_link"  # prev_hash is not the previous record's hash
MALFORMED_BODY = "malformed_body"  # the body is not a JSON envelope
COLUMN_MISMATCH = "column_mismatch"  # an indexed column disagrees with the body
NOT_CANONICAL = "not_canonical"  # strict: the body is not its own RFC 8785 form
BAD_CHECKPOINT_SIGNATURE = "bad_checkpoint_signature"  # forged, altered, or unknown key
CHECKPOINT_MISMATCH = "checkpoint_mismatch"  # signed hash differs from the chain's at that seq
CHECKPOINT_BEYOND_END = "checkpoint_beyond_end"  # records covered by a checkpoint are gone
CHECKPOINT_OUT_OF_ORDER = "checkpoint_out_of_order"  # an export lists it after later records
MALFORMED_EXPORT = "malformed_export"  # an export line cannot be read


class SignatureVerifier(Protocol):
    """What verification needs from a verifier (``tribune.ports.Verifier`` has this shape)."""

    def verify(self, key_id: str, message: bytes, signature: bytes) -> bool: ...


class CheckpointSigner(Protocol):
    """What signing a checkpoint needs (``tribune.ports.Signer`` has this shape)."""

    key_id: str

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification. ``checked`` counts records found good; ``last_seq`` and
    ``last_hash`` are the last good record's, usable as the anchor of a later partial check."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    message: str = ""
    checkpoints_verified: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS


# --------------------------------------------------------------------------- checkpoints


def checkpoint_statement(seq: int, hash: str, ts: datetime, key_id: str) -> bytes:
    """The bytes a checkpoint signs: canonical JSON of its type, seq, hash, time and key id."""
    return canonical(
        {"type": CHECKPOINT_TYPE, "seq": seq, "hash": hash, "ts": ts_text(ts), "key_id": key_id}
    )


def sign_checkpoint(seq: int, hash: str, ts: datetime, signer: CheckpointSigner) -> Checkpoint:
    """A checkpoint stating that the chain had ``hash`` at ``seq``, signed by ``signer``."""
    signature = signer.sign(checkpoint_statement(seq, hash, ts, signer.key_id))
    text = base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii")
    return Checkpoint(seq=seq, hash=hash, ts=ts, key_id=signer.key_id, signature=text)


def _b64url_decode(text: str) -> bytes | None:
    """Strict base64url without padding; None unless ``text`` is the one canonical encoding."""
    if not isinstance(text, str) or not text.isascii() or any(c in text for c in "+/= \r\n"):
        return None
    try:
        raw = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except ValueError:
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        return None
    return raw


def checkpoint_signature_ok(checkpoint: Checkpoint, verifier: SignatureVerifier) -> bool:
    """True if the checkpoint's signature is valid under a key ``verifier`` knows."""
    try:
        signature = _b64url_decode(checkpoint.signature)
        if signature is None:
            return False
        statement = checkpoint_statement(
            checkpoint.seq, checkpoint.hash, checkpoint.ts, checkpoint.key_id
        )
        return verifier.verify(checkpoint.key_id, statement, signature) is True
    except Exception:  # INVARIANT: a checkpoint that cannot even be checked is a bad one
        return False


# --------------------------------------------------------------------------- the chain


def _same(a: object, b: object) -> bool:
    """Constant-time equality of two texts (digests); False for anything else."""
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a.encode(), b.encode())


def _same_time(text: Any, ts: datetime) -> bool:
    """True if ``text`` names the instant ``ts`` (parsing is ~15x cheaper than formatting)."""
    try:
        return type(text) is str and datetime.fromisoformat(text) == ts
    except ValueError:  # not an ISO 8601 time
        return False


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name}")


def is_canonical(body: str) -> bool:
    """True if ``body`` is exactly the RFC 8785 text of the JSON value it holds."""
    try:
        value = json.loads(
            body, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
        return canonical(value) == body.encode("utf-8")
    except Exception:
        return False


class ChainVerifier:
    """Checks a chain fed in order: checkpoints (any time before the record they cover) and
    records. Stops at the first problem; :meth:`finish` returns the report."""

    def __init__(
        self,
        verifier: SignatureVerifier,
        *,
        strict: bool = False,
        start: tuple[int, str] = (0, GENESIS),
        progress: Progress | None = None,
    ) -> None:
        self.verifier = verifier
        self.strict = strict
        self.progress = progress
        self.start_seq, self.last_hash = start
        self.last_seq = self.start_seq
        self.checked = 0
        self.checkpoints_verified = 0
        self._pending: dict[int, list[Checkpoint]] = {}
        self._failure: tuple[int, str, str] | None = None

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def fail(self, seq: int, problem: str, message: str) -> bool:
        """Record the first problem (later ones are ignored); always False."""
        if self._failure is None:
            self._failure = (seq, problem, message)
        return False

    # ----------------------------------------------------------------- checkpoints

    def add_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Queue a checkpoint to check when the chain reaches its seq (or now, if it is there).
        Checkpoints before the start of a partial check cannot be checked and are skipped."""
        if self.failed:
            return False
        seq = checkpoint.seq
        if not isinstance(seq, int) or seq < self.start_seq:
            return True
        if seq == self.last_seq:
            return self._check_checkpoint(checkpoint, self.last_hash)
        if seq < self.last_seq:
            return self.fail(
                seq, CHECKPOINT_OUT_OF_ORDER, f"checkpoint at seq {seq} comes after later records"
            )
        self._pending.setdefault(seq, []).append(checkpoint)
        return True

    def _signature_ok(self, checkpoint: Checkpoint) -> bool:
        if checkpoint_signature_ok(checkpoint, self.verifier):
            return True
        return self.fail(
            checkpoint.seq,
            BAD_CHECKPOINT_SIGNATURE,
            f"checkpoint at seq {checkpoint.seq} has a bad signature or an unknown key "
            f"`{checkpoint.key_id}`",
        )

    def _check_checkpoint(self, checkpoint: Checkpoint, chain_hash: str) -> bool:
        if not self._signature_ok(checkpoint):
            return False
        if not _same(checkpoint.hash, chain_hash):
            return self.fail(
                checkpoint.seq,
                CHECKPOINT_MISMATCH,
                f"record {checkpoint.seq} does not have the hash its signed checkpoint states",
            )
        self.checkpoints_verified += 1
        return True

    # ----------------------------------------------------------------- records

    def _link(self, seq: int, hash: str, prev_hash: str, body: str) -> dict[str, Any] | None:
        """Check one link; return its parsed envelope, or None after recording a problem."""
        expected = self.last_seq + 1
        if seq != expected or type(seq) is not int:
            if isinstance(seq, int) and seq > expected:
                self.fail(expected, SEQ_GAP, f"record {expected} is missing (found {seq} next)")
            else:
                self.fail(expected, SEQ_ORDER, f"record {seq!r} found where {expected} belongs")
            return None
        try:
            hash_ok = hmac.compare_digest(sha256(body.encode("utf-8")).hexdigest(), hash)
        except (AttributeError, TypeError, UnicodeError):  # not text, or a non-ASCII hash
            hash_ok = False
        if not hash_ok:
            self.fail(seq, HASH_MISMATCH, f"record {seq} body does not match its hash")
            return None
        try:
            link_ok = hmac.compare_digest(prev_hash, self.last_hash)
        except TypeError:
            link_ok = False
        if not link_ok:
            self.fail(seq, BROKEN_LINK, f"record {seq} does not link to record {seq - 1}")
            return None
        try:
            env = orjson.loads(body)  # ~3x the standard library here; verify is bound by it
        except ValueError:
            env = None
        if type(env) is not dict or env.keys() != ENVELOPE_KEYS:
            self.fail(seq, MALFORMED_BODY, f"record {seq} body is not an audit envelope")
            return None
        if env["seq"] != seq or type(env["seq"]) is not int:
            self.fail(seq, COLUMN_MISMATCH, f"record {seq} column `seq` disagrees with its body")
            return None
        if env["prev"] != prev_hash:
            self.fail(seq, COLUMN_MISMATCH, f"record {seq} column `prev_hash` disagrees with body")
            return None
        if self.strict and not is_canonical(body):
            self.fail(seq, NOT_CANONICAL, f"record {seq} body is not canonical JSON")
            return None
        return env

    def _accept(self, seq: int, hash: str) -> bool:
        due = self._pending.pop(seq, None)
        if due is not None:
            for checkpoint in due:
                if not self._check_checkpoint(checkpoint, hash):
                    return False
        self.last_seq = seq
        self.last_hash = hash
        self.checked += 1
        if self.progress is not None and self.checked % PROGRESS_EVERY == 0:
            self.progress(self.checked)
        return True

    def add_body(self, seq: int, hash: str, prev_hash: str, body: str) -> bool:
        """Check a record known only by its body (as in an export): the body is its columns."""
        if self.failed or self._link(seq, hash, prev_hash, body) is None:
            return False
        return self._accept(seq, hash)

    def add_record(self, record: AuditRecord) -> bool:
        """Check a stored record, including its indexed columns against its body."""
        if self.failed:
            return False
        seq = record.seq
        env = self._link(seq, record.hash, record.prev_hash, record.body)
        if env is None:
            return False
        # INVARIANT: a record's kind is a StrEnum (or its text), so it compares with the body's.
        if env["kind"] != record.kind:
            bad = "kind"
        elif not _same_time(env["ts"], record.ts):
            bad = "ts"
        elif env["action_id"] != record.action_id:
            bad = "action_id"
        elif env["task_id"] != record.task_id:
            bad = "task_id"
        elif env["agent_id"] != record.agent_id:
            bad = "agent_id"
        else:
            return self._accept(seq, record.hash)
        return self.fail(seq, COLUMN_MISMATCH, f"record {seq} column `{bad}` disagrees with body")

    def finish(self) -> VerifyReport:
        """The report. Checkpoints never reached mean records they cover are gone."""
        beyond = [c for seq in sorted(self._pending) for c in self._pending[seq]]
        # INVARIANT: a forged checkpoint beyond the end is reported as forged, not as a cut.
        if beyond and not self.failed and all(self._signature_ok(c) for c in beyond):
            last = beyond[-1].seq
            self.fail(
                self.last_seq + 1,
                CHECKPOINT_BEYOND_END,
                f"records {self.last_seq + 1}..{last} are gone: a signed checkpoint covers "
                f"seq {last} but the chain ends at {self.last_seq}",
            )
        if self.progress is not None:
            self.progress(self.checked)
        if self._failure is not None:
            seq, problem, message = self._failure
            return VerifyReport(
                ok=False,
                checked=self.checked,
                first_bad_seq=seq,
                problem=problem,
                message=message,
                checkpoints_verified=self.checkpoints_verified,
                last_seq=self.last_seq,
                last_hash=self.last_hash,
            )
        return VerifyReport(
            ok=True,
            checked=self.checked,
            message=f"{self.checked} records and {self.checkpoints_verified} checkpoints verified",
            checkpoints_verified=self.checkpoints_verified,
            last_seq=self.last_seq,
            last_hash=self.last_hash,
        )


def verify_chain(
    records: Iterable[AuditRecord],
    checkpoints: Sequence[Checkpoint],
    verifier: SignatureVerifier,
    *,
    progress: Progress | None = None,
    strict: bool = False,
    start: tuple[int, str] = (0, GENESIS),
) -> VerifyReport:
    """Verify ``records`` (in chain order) and ``checkpoints``; see the module docstring.

    ``start`` is the (seq, hash) the records follow: the genesis for a whole chain, or a
    trusted earlier point for a partial check.
    """
    chain = ChainVerifier(verifier, strict=strict, start=start, progress=progress)
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        if not chain.add_checkpoint(checkpoint):
            break
    if not chain.failed:
        add = chain.add_record
        for record in records:
            if not add(record):
                break
    return chain.finish()
