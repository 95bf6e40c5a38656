"""Codec: model values to JSON text and back, driven by the dataclasses' type hints.

Round-trips every dataclass in ``tribune.core.model`` exactly: frozensets (written sorted, so the
text is deterministic), tuples, enums, nested dataclasses, ``X | None``, dicts with string keys,
``Any`` (plain JSON) and timezone-aware datetimes (written in UTC with microseconds; read back in
UTC). Also the integer form of times used in indexed columns (microseconds since the epoch).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar, cast

from tribune.core.audit import ts_text
from tribune.errors import InvalidInput

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

Decoder = Callable[[Any], Any]
_DECODERS: dict[Any, Decoder] = {}


# --------------------------------------------------------------------------- times


def check_aware(ts: datetime) -> datetime:
    """Return ``ts`` if it is timezone-aware, else raise ``InvalidInput``."""
    if ts.utcoffset() is None:
        raise InvalidInput(f"naive datetime `{ts.isoformat()}`", hint="pass a timezone-aware time")
    return ts


def to_micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, integer arithmetic)."""
    return (check_aware(ts) - EPOCH) // _MICRO


def from_micros(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=us)


# --------------------------------------------------------------------------- encode


def encode(value: Any) -> Any:
    """A JSON-ready form of a model value (dataclasses become objects, sets sorted lists)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return ts_text(check_aware(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        items = [encode(v) for v in value]
        try:
            return sorted(items)
        except TypeError:  # mixed or unorderable items: order by their JSON text
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"cannot encode a mapping key of type `{type(key).__name__}`")
            out[key] = encode(item)
        return out
    raise InvalidInput(f"cannot encode a value of type `{type(value).__name__}`")


def dumps(value: Any) -> str:
    """Deterministic JSON text of a model value."""
    try:
        return json.dumps(
            encode(value),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except ValueError as exc:  # NaN or infinity
        raise InvalidInput(f"cannot encode value: {exc}") from None


# --------------------------------------------------------------------------- decode


def decode(tp: type[T], data: Any) -> T:
    """Rebuild a value of type ``tp`` from its JSON-ready form; raise ``InvalidInput`` if it
    does not fit."""
    return cast(T, _decoder(tp)(data))


def loads(tp: type[T], text: str) -> T:
    """Rebuild a value of type ``tp`` from JSON text made by ``dumps``."""
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidInput(f"stored `{_name(tp)}` is not valid JSON") from None
    return decode(tp, data)


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _bad(tp: Any, data: Any) -> InvalidInput:
    return InvalidInput(f"expected `{_name(tp)}`, found `{type(data).__name__}`")


def _decoder(tp: Any) -> Decoder:
    found = _DECODERS.get(tp)
    if found is None:
        found = _DECODERS[tp] = _build(tp)
    return found


def _build(tp: Any) -> Decoder:  # one branch per supported shape
    if tp is Any:
        return lambda data: data
    if tp is type(None):
        return _exact(tp, type(None))
    if tp is bool:
        return _exact(tp, bool)
    if tp is int:
        return lambda data: data if type(data) is int else _raise(_bad(tp, data))
    if tp is float:
        return lambda data: float(data) if type(data) in (int, float) else _raise(_bad(tp, data))
    if tp is str:
        return _exact(tp, str)
    if tp is datetime:
        return _decode_datetime
    if isinstance(tp, type) and issubclass(tp, Enum):
        return _enum_decoder(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return _union_decoder(tp, args)
    if origin in (frozenset, set, list) or (origin is tuple and args[-1:] == (...,)):
        item = _decoder(args[0]) if args else _decoder(Any)
        make: Callable[[Any], Any] = tuple if origin is tuple else origin
        return lambda data: (
            make(item(v) for v in data) if type(data) is list else _raise(_bad(tp, data))
        )
    if origin is tuple:
        parts = [_decoder(a) for a in args]
        return lambda data: (
            tuple(d(v) for d, v in zip(parts, data, strict=True))
            if type(data) is list and len(data) == len(parts)
            else _raise(_bad(tp, data))
        )
    if origin is dict:
        key, value = (_decoder(a) for a in args) if args else (_decoder(str), _decoder(Any))
        return lambda data: (
            {key(k): value(v) for k, v in data.items()}
            if type(data) is dict
            else _raise(_bad(tp, data))
        )
    raise InvalidInput(f"the store codec does not support `{tp}`")


def _raise(exc: Exception) -> Any:
    raise exc


def _exact(tp: Any, kind: type) -> Decoder:
    return lambda data: data if type(data) is kind else _raise(_bad(tp, data))


def _decode_datetime(data: Any) -> datetime:
    if type(data) is not str:
        raise _bad(datetime, data)
    try:
        ts = datetime.fromisoformat(data)
    except ValueError:
        raise InvalidInput(f"invalid time `{data}`") from None
    return check_aware(ts).astimezone(UTC)


def _enum_decoder(tp: type[Enum]) -> Decoder:
    by_value = {member.value: member for member in tp}

    def run(data: Any) -> Enum:
        try:
            return by_value[data]
        except (KeyError, TypeError):
            raise InvalidInput(f"invalid `{tp.__name__}` value `{data}`") from None

    return run


def _union_decoder(tp: Any, args: tuple[Any, ...]) -> Decoder:
    others = [a for a in args if a is not type(None)]
    if len(others) != 1:
        raise InvalidInput(f"the store codec does not support `{tp}`")
    inner = _decoder(others[0])
    nullable = len(others) < len(args)
    return lambda data: None if data is None and nullable else inner(data)


def _dataclass_decoder(cls: type[Any]) -> Decoder:
    hints = typing.get_type_hints(cls)
    specs: list[tuple[str, Decoder, bool]] = []
    for f in dataclasses.fields(cls):
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        specs.append((f.name, _decoder(hints[f.name]), has_default))

    def run(data: Any) -> Any:
        if type(data) is not dict:
            raise _bad(cls, data)
        kwargs: dict[str, Any] = {}
        for name, dec, has_default in specs:
            if name in data:
                kwargs[name] = dec(data[name])
            elif not has_default:
                raise InvalidInput(f"stored `{cls.__name__}` lacks `{name}`")
            # a missing field with a default takes it: values written before it existed
        return cls(**kwargs)

    return run
