"""Risk facts from a tool call's arguments: typed extractors, secret detection, redaction. Pure.

A tool declares ``ExtractorSpec`` rows (kind, JSON pointer, aggregate, ...); ``extract`` reads
them into one ``ArgFacts`` value: the targets the call reaches, the total amount, how many items
it affects, credential-like strings leaving, links, card numbers and IBANs in free text, and
whether secret arguments equal the literals the user supplied.

Rules:

- A value of the wrong type, or arguments of the wrong shape, raise ``ExtractionFailed``
  naming the pointer and the kind, NEVER the value ("a failed extraction denies").
- A missing value (absent or ``null``) is ignored unless the spec is ``required``. Through a
  ``*`` every walked item must hold it; an empty list holds none and is not missing.
- A list where one value is expected stands for its items (``to: "a@x.io"`` and
  ``to: ["a@x.io", "b@y.io"]`` read alike); ``count`` specs read a list as its length.
- ``target`` makes values of identity kinds (email, person, account, iban, url, host) and
  object ids into targets. E-mail addresses found in ``text`` are always targets.
- Aggregates: ``each`` reads every value; ``sum`` (amount and count only) adds them, as amounts
  and counts always add up; ``count`` also adds the number of values found to ``count``.
- Secrets: every string in the arguments (values and keys) is scanned with
  ``core.secrets``, except values read by ``secret`` specs (which are judged by their literal).
  A string, or a detected value, whose SHA-256 equals a task literal's digest is the user's own
  and does not count as leaving.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tribune.core.canonical import digest, keyed_digest
from tribune.core.model import ExtractorSpec, Tool
from tribune.core.normalise import (
    MAX_LONG,
    Invalid,
    normalise_account,
    normalise_email,
    normalise_host,
    normalise_iban,
    normalise_object_id,
    normalise_person,
    parse_amount,
    parse_count,
    url_host,
)
from tribune.core.pointer import Hit, Key, ShapeMismatch, leaves, parse_pointer, resolve
from tribune.core.secrets import find_secrets, might_hold_secret
from tribune.core.textscan import scan_text
from tribune.errors import ExtractionFailed, InvalidInput

KINDS = frozenset(
    {
        "email",
        "person",
        "account",
        "iban",
        "url",
        "host",
        "amount",
        "count",
        "object_id",
        "secret",
        "text",
    }
)
AGGREGATES = frozenset({"each", "sum", "count"})
_SUMMABLE = frozenset({"amount", "count"})
_IDENTITY = {  # kind -> (normaliser, target kind)
    "email": (normalise_email, "email"),
    "person": (normalise_person, "email"),
    "account": (normalise_account, "account"),
    "iban": (normalise_iban, "account"),
    "url": (url_host, "host"),
    "host": (normalise_host, "host"),
}
OBJECT_PREFIX = "object:"


@dataclass(frozen=True, slots=True)
class Target:
    """Whom or what a call reaches. ``value`` is the normalised identity: an e-mail address, a
    host, an account id, or ``object:<id>``. Two targets with the same kind and value are the
    same target whatever their role."""

    kind: str  # "email" | "host" | "account" | "object"
    value: str
    role: str  # the extractor's role, e.g. "recipient", "payee", "fetch"


@dataclass(frozen=True, slots=True)
class ArgFacts:
    """Typed facts read from one call's arguments."""

    targets: tuple[Target, ...] = ()  # de-duplicated by (kind, value), first role wins
    amount: int = 0  # total, minor units (cents)
    count: int = 0  # items affected
    secrets: tuple[str, ...] = ()  # one kind per distinct credential-like value leaving
    links: tuple[str, ...] = ()  # hosts of links in free text
    cards: int = 0  # distinct Luhn-valid card numbers in free text
    ibans: tuple[str, ...] = ()  # valid IBANs in free text
    literals_ok: bool = True  # every secret argument with a literal equals that literal
    object_ids: tuple[str, ...] = ()


def check_extractor(spec: ExtractorSpec) -> None:
    """Raise ``InvalidInput`` if ``spec`` cannot be applied (for configuration time)."""
    if spec.kind not in KINDS:
        raise InvalidInput(f"unknown extractor kind `{spec.kind}`")
    if spec.aggregate not in AGGREGATES:
        raise InvalidInput(f"unknown aggregate `{spec.aggregate}` for `{spec.pointer}`")
    if spec.aggregate == "sum" and spec.kind not in _SUMMABLE:
        raise InvalidInput(f"`sum` applies to amounts and counts, not `{spec.kind}`")
    if spec.literal and spec.kind != "secret":
        raise InvalidInput(f"a literal applies to `secret` extractors, not `{spec.kind}`")
    parse_pointer(spec.pointer)


@dataclass(slots=True)
class _Facts:
    """The mutable accumulator behind one ``ArgFacts``."""

    literal_digests: tuple[bytes, ...]
    key: bytes | None = None  # literals are HMAC-SHA256 digests under this key (else SHA-256)
    targets: dict[tuple[str, str], Target] = field(default_factory=dict)
    amount: int = 0
    count: int = 0
    secrets: dict[bytes, str] = field(default_factory=dict)  # sha256 of the value -> kind
    links: dict[str, None] = field(default_factory=dict)
    cards: dict[str, None] = field(default_factory=dict)
    ibans: dict[str, None] = field(default_factory=dict)
    literals_ok: bool = True
    object_ids: dict[str, None] = field(default_factory=dict)

    def target(self, kind: str, value: str, role: str) -> None:
        self.targets.setdefault((kind, value), Target(kind, value, role))

    def hash(self, text: str) -> bytes:
        data = text.encode("utf-8")
        if self.key is None:
            return hashlib.sha256(data).digest()
        return hmac.new(self.key, data, hashlib.sha256).digest()

    def secret(self, kind: str, value: str) -> None:
        value_digest = self.hash(value)
        if not self.is_literal(value_digest):
            self.secrets.setdefault(value_digest, kind)

    def is_literal(self, value_digest: bytes) -> bool:
        # INVARIANT: constant-time comparisons; every literal is compared
        hits = [hmac.compare_digest(value_digest, d) for d in self.literal_digests]
        return any(hits)

    def freeze(self) -> ArgFacts:
        return ArgFacts(
            targets=tuple(self.targets.values()),
            amount=self.amount,
            count=self.count,
            secrets=tuple(self.secrets.values()),
            links=tuple(self.links),
            cards=len(self.cards),
            ibans=tuple(self.ibans),
            literals_ok=self.literals_ok,
            object_ids=tuple(self.object_ids),
        )


def extract(
    tool: Tool,
    arguments: Mapping[str, Any],
    literal_digests: Mapping[str, str] | None = None,
    *,
    literal_key: bytes | None = None,
) -> ArgFacts:
    """Read ``tool``'s extractors over ``arguments`` (see the module docstring).

    ``literal_digests`` maps a task literal's name to the hex digest of its UTF-8 text:
    HMAC-SHA256 under ``literal_key`` when one is given, plain SHA-256 otherwise.
    Raises ``ExtractionFailed`` for a value of the wrong type, arguments of the wrong shape, a
    missing required value, or a spec that cannot be applied.
    """
    literals = dict(literal_digests or {})
    facts = _Facts(tuple(_hex_bytes(d) for d in literals.values()), literal_key)
    judged: list[tuple[Key, ...]] = []  # places read by `secret` specs
    for spec in tool.extractors:
        for hit in _values(spec, arguments):
            _read(spec, hit, facts, literals)
            if spec.kind == "secret":
                judged.append(hit.keys)
        if facts.amount > MAX_LONG or facts.count > MAX_LONG:
            raise ExtractionFailed(f"cannot read `{spec.pointer}` as {spec.kind}: total too large")
    _scan_secrets(arguments, judged, facts)
    return facts.freeze()


@functools.lru_cache(maxsize=1024)
def _check_once(spec: ExtractorSpec) -> None:
    # specs are frozen: a spec that passed once always passes (a failure is not cached)
    check_extractor(spec)


def _values(spec: ExtractorSpec, arguments: Mapping[str, Any]) -> list[Hit]:
    """The values ``spec`` reads: found hits, lists expanded into their items (except for
    counts), missing ones dropped or, when required, refused."""
    try:
        _check_once(spec)
        hits = resolve(arguments, parse_pointer(spec.pointer))
    except InvalidInput as exc:
        raise ExtractionFailed(f"cannot apply extractor `{spec.pointer}`: {exc.message}") from None
    except ShapeMismatch as exc:
        raise ExtractionFailed(
            f"cannot read `{spec.pointer}` as {spec.kind}: `{exc.path}` is not an object or list"
        ) from None
    values: list[Hit] = []
    for hit in hits:
        if not hit.found:
            if spec.required:
                raise ExtractionFailed(f"`{hit.path}` is required ({spec.kind})")
            continue
        if spec.kind != "count" and isinstance(hit.value, list | tuple):
            for index, item in enumerate(hit.value):
                if item is not None:
                    values.append(Hit((*hit.keys, index), f"{hit.path}/{index}", item, True))
        else:
            values.append(hit)
    return values


def _read(spec: ExtractorSpec, hit: Hit, facts: _Facts, literals: Mapping[str, str]) -> None:
    try:
        _read_value(spec, hit.value, facts, literals)
    except Invalid as exc:
        # INVARIANT: no value in the message, and no chained exception that could carry one
        raise ExtractionFailed(f"cannot read `{hit.path}` as {spec.kind}: {exc}") from None


def _read_value(
    spec: ExtractorSpec, value: Any, facts: _Facts, literals: Mapping[str, str]
) -> None:
    kind = spec.kind
    if kind in _IDENTITY:
        normalise, target_kind = _IDENTITY[kind]
        normalised = normalise(value)
        if spec.is_target:
            facts.target(target_kind, normalised, spec.role)
    elif kind == "amount":
        facts.amount += parse_amount(value)
    elif kind == "count":
        facts.count += parse_count(value)
    elif kind == "object_id":
        object_id = normalise_object_id(value)
        facts.object_ids.setdefault(object_id, None)
        if spec.is_target:
            facts.target("object", OBJECT_PREFIX + object_id, spec.role)
    elif kind == "secret":
        _read_secret(spec, value, facts, literals)
    else:  # text
        _read_text(spec, value, facts)
    if spec.aggregate == "count" and kind != "count":
        facts.count += 1


def _read_secret(
    spec: ExtractorSpec, value: Any, facts: _Facts, literals: Mapping[str, str]
) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise Invalid("expected text")
    if not spec.literal:
        facts.secret("password_field", value)
        return
    expected = literals.get(spec.literal)
    if expected is None or not hmac.compare_digest(facts.hash(value), _hex_bytes(expected)):
        facts.literals_ok = False


def _read_text(spec: ExtractorSpec, value: Any, facts: _Facts) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise Invalid("expected text")
    found = scan_text(value)
    for email in found.emails:
        facts.target("email", email, spec.role)
    facts.links.update(dict.fromkeys(found.links))
    facts.cards.update(dict.fromkeys(found.cards))
    facts.ibans.update(dict.fromkeys(found.ibans))


def _scan_secrets(arguments: Any, judged: list[tuple[Key, ...]], facts: _Facts) -> None:
    texts = [
        (keys, text)
        for keys, text in leaves(arguments)
        if not any(keys[: len(j)] == j for j in judged)
    ]
    # One screen over all the text: every detector's match lies inside one leaf, so no hit in
    # the joined text means no secret anywhere (a hit only means: look leaf by leaf).
    if not might_hold_secret("\n".join(text for _, text in texts)):
        return
    for _keys, text in texts:
        if facts.literal_digests and facts.is_literal(facts.hash(text)):
            continue
        for kind, value in find_secrets(text):
            facts.secret(kind, value)


def _hex_bytes(hex_digest: str) -> bytes:
    """A SHA-256 hex digest (optionally ``sha256:``-prefixed) as bytes; junk never matches."""
    text = hex_digest.removeprefix("sha256:").strip().lower()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return b""
    return raw if len(raw) == 32 else b""


# --------------------------------------------------------------------------- redaction


def redact(
    arguments: Mapping[str, Any], pointers: Iterable[str], *, key: bytes | None = None
) -> dict[str, Any]:
    """A deep copy of ``arguments`` with the value at each pointer (``*`` allowed) replaced by
    ``{"digest": "sha256:<hex of its canonical JSON>"}`` (``hmac-sha256:`` under ``key``).

    Errs toward hiding: where the arguments hold a scalar on the way to a pointer's place (the
    agent sent a different shape), that scalar is replaced. Ancestors are replaced before
    descendants, so every digest is of an original value. Raises ``InvalidInput`` for a
    malformed pointer.
    """
    parsed = sorted((parse_pointer(p) for p in pointers), key=len)
    out: Any = copy.deepcopy(dict(arguments))
    hide = (lambda v: keyed_digest(v, key)) if key is not None else digest
    for segments in parsed:
        out = _replace(out, segments, 0, hide)
    result: dict[str, Any] = out
    return result


def _replace(node: Any, segments: tuple[str, ...], i: int, hide: Callable[[Any], str]) -> Any:
    if node is None:
        return None
    if i == len(segments):
        return {"digest": hide(node)}
    segment = segments[i]
    if isinstance(node, dict):
        if segment == "*":
            return {k: _replace(v, segments, i + 1, hide) for k, v in node.items()}
        if segment in node:
            node[segment] = _replace(node[segment], segments, i + 1, hide)
        return node
    if isinstance(node, list):
        if segment == "*":
            return [_replace(v, segments, i + 1, hide) for v in node]
        if segment.isascii() and segment.isdigit() and int(segment) < len(node):
            node[int(segment)] = _replace(node[int(segment)], segments, i + 1, hide)
        return node
    return {"digest": hide(node)}  # a scalar where a container was expected: hide it
