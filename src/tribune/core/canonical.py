"""Canonical JSON per RFC 8785 (JCS): the bytes that are hashed and signed."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON value."""
    return rfc8785.dumps(value)


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical form: how arguments and actions are fingerprinted."""
    return "sha256:" + hashlib.sha256(canonical(value)).hexdigest()
