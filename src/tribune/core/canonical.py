"""Canonical JSON per RFC 8785 (JCS): the bytes that are hashed and signed.

The pure-Python ``rfc8785`` encoder costs tens of microseconds per record, which matters on the
decision path. For the values Tribune writes almost always — objects with ASCII keys, text,
booleans, null and integers within ±(2**53 - 1) — JCS is exactly what orjson emits with sorted
keys (compact, UTF-8, the same escapes), so those take a fast path. Anything
else (floats, non-ASCII keys, big integers, lone surrogates) goes through ``rfc8785``. A
property test holds the two paths equal.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import orjson
import rfc8785

_MAX_SAFE = 2**53 - 1
_SORTED = orjson.OPT_SORT_KEYS


def _fast(value: Any) -> bytes:
    """Compact, sorted-key, unescaped UTF-8 JSON (orjson): JCS for ``_simple`` values."""
    return orjson.dumps(value, option=_SORTED)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _simple(value: Any) -> bool:
    """True when the standard encoder's output is already JCS for ``value``.

    INVARIANT: ASCII keys sort the same by UTF-16 code units (JCS) and by code points (Python);
    both escape only `"`, `\\` and control characters, with the same short forms and lowercase
    ``\\u00xx``. Strings with surrogate code points are left to ``rfc8785`` (it rejects them).
    """
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and _SURROGATE.search(item):
                return False
        elif kind is dict:
            try:
                if not "".join(item).isascii():  # also fails on non-text keys
                    return False
            except TypeError:
                return False
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        elif kind is int:
            if not -_MAX_SAFE <= item <= _MAX_SAFE:
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value."""
    if _simple(value):
        return _fast(value)
    return rfc8785.dumps(value)


def keyed_digest(value: Any, key: bytes) -> str:
    """``hmac-sha256:<hex>`` of the canonical form under ``key``: for values that may be
    guessable (passwords, codes, small arguments) and end up in records others can read."""
    return "hmac-sha256:" + hmac.new(key, canonical(value), hashlib.sha256).hexdigest()


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical form: how arguments and actions are fingerprinted."""
    return "sha256:" + hashlib.sha256(canonical(value)).hexdigest()
