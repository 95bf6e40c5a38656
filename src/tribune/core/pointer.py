"""JSON pointers (RFC 6901) with one extension: a ``*`` segment walks every item of a list (or
every value of an object, in sorted key order). Pure.

``~0`` and ``~1`` escape ``~`` and ``/``. A key literally named ``*`` cannot be addressed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tribune.errors import InvalidInput

WILDCARD = "*"
_INDEX = re.compile(r"^(?:0|[1-9][0-9]*)$")
_BAD_ESCAPE = re.compile(r"~(?![01])")

Key = str | int  # one step into a document: an object key or a list index


class ShapeMismatch(Exception):
    """The document has a scalar where the pointer needs an object or a list."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True, slots=True)
class Hit:
    """One place a pointer reaches.

    ``keys`` are the exact steps taken. ``path`` is the pointer to show in messages: the
    configured segments with list indices filled in; a ``*`` over an object stays ``*``
    because object keys come from the caller and may carry anything.
    ``found`` is False when the place does not exist or holds ``null``.
    """

    keys: tuple[Key, ...]
    path: str
    value: Any
    found: bool


@functools.lru_cache(maxsize=1024)
def parse_pointer(pointer: str) -> tuple[str, ...]:
    """The unescaped segments of ``pointer``; ``""`` is the whole document (cached: pure)."""
    if not isinstance(pointer, str) or (pointer and not pointer.startswith("/")):
        raise InvalidInput(
            f"invalid json pointer `{pointer}`", hint="write it as `/to` or `/items/*/id`"
        )
    if pointer == "":
        return ()
    segments = []
    for raw in pointer[1:].split("/"):
        if _BAD_ESCAPE.search(raw):
            raise InvalidInput(
                f"invalid json pointer `{pointer}`", hint="`~` must be followed by 0 or 1"
            )
        segments.append(raw.replace("~1", "/").replace("~0", "~"))
    return tuple(segments)


def escape(segment: str) -> str:
    """One segment in pointer form."""
    return segment.replace("~", "~0").replace("/", "~1")


def resolve(document: Any, segments: tuple[str, ...]) -> list[Hit]:
    """Every place ``segments`` reach in ``document``, in document order.

    Raises ``ShapeMismatch`` when a step meets a scalar (text, number, boolean), or a list
    with a segment that is neither an index, ``-`` nor ``*``: the arguments do not have the
    shape the pointer was written for.
    """
    hits: list[Hit] = []
    _walk(document, segments, 0, (), "", hits)
    return hits


def _walk(
    node: Any, segments: tuple[str, ...], i: int, keys: tuple[Key, ...], path: str, out: list[Hit]
) -> None:
    if node is None:
        rest = "".join("/" + escape(s) for s in segments[i:])
        out.append(Hit(keys, path + rest, None, False))
        return
    if i == len(segments):
        out.append(Hit(keys, path, node, True))
        return
    segment = segments[i]
    if isinstance(node, Mapping):
        if segment == WILDCARD:
            for key in sorted(node, key=str):
                _walk(node[key], segments, i + 1, (*keys, key), path + "/*", out)
        else:
            step = path + "/" + escape(segment)
            _walk(node.get(segment), segments, i + 1, (*keys, segment), step, out)
        return
    if isinstance(node, list | tuple):
        if segment == WILDCARD:
            for index, item in enumerate(node):
                _walk(item, segments, i + 1, (*keys, index), f"{path}/{index}", out)
            return
        if _INDEX.match(segment) or segment == "-":
            index = int(segment) if segment != "-" else len(node)
            item = node[index] if index < len(node) else None
            _walk(item, segments, i + 1, (*keys, index), path + "/" + segment, out)
            return
    raise ShapeMismatch(path or "/")


def leaves(document: Any) -> Iterator[tuple[tuple[Key, ...], str]]:
    """Every text in ``document`` (values and object keys) with the keys leading to it.

    Iterative, so deeply nested arguments cannot exhaust the stack. An object key is reported
    with the path of its object.
    """
    stack: list[tuple[tuple[Key, ...], Any]] = [((), document)]
    while stack:
        keys, node = stack.pop()
        if isinstance(node, str):
            yield keys, node
        elif isinstance(node, Mapping):
            items = list(node.items())
            for key, _ in items:
                if isinstance(key, str):
                    yield keys, key
            stack.extend(((*keys, key), value) for key, value in reversed(items))
        elif isinstance(node, list | tuple):
            stack.extend(((*keys, i), node[i]) for i in reversed(range(len(node))))
