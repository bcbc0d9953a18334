"""Typed JSON records: the manifest's schema is its dataclasses' annotations, checked here when a file is read.

Why not pydantic (which checks the codec's JSON sections): importing it and building the manifest's models took
about 130 ms, more than half of what ``trace-ckpt inspect`` may spend. The checks are the few the manifest needs:
UTF-8 JSON (no lone surrogate), types taken exactly (``"12"`` is not an int, ``true`` is not a number, numbers are
finite, integers fit in 64 bits, datetimes in UTC's years 1-9999), ``Literal``, optional, ``list[T]``,
``dict[str, T]``, nested records, ISO datetimes, and two constraints (:class:`Ge`, :class:`Pattern`). Keys a
record does not declare are kept in ``extras`` and written back, so a reader passes on what a newer writer added.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

R = TypeVar("R", bound="Record")

MAX_DEPTH = 200
"""Deepest nesting a document may have (free-form values included)."""

INT_RANGE = range(-(2**63), 2**63)
"""The integers a document holds, free-form ones too: 64 bits hold every size, offset, count and index (a larger
one broke the views that turn it into a float, and other languages' JSON parsers)."""

# half of a UTF-16 pair: json.loads joins an escaped whole pair into one character and makes a lone half
# (\ud800) a str that no UTF-8 stream can write
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclasses.dataclass(frozen=True)
class Ge:
    """``Annotated[int, Ge(0)]``: the number is at least ``bound``."""

    bound: int


@dataclasses.dataclass(frozen=True)
class Pattern:
    """``Annotated[str, Pattern(r"...")]``: the whole string matches ``regex``."""

    regex: str


@dataclasses.dataclass
class Record:
    """Base of the manifest's records: decoded from JSON with :meth:`from_json`, encoded with :func:`to_json`."""

    extras: dict[str, Any] = dataclasses.field(default_factory=dict, kw_only=True, repr=False)
    """Keys this reader does not know, kept as read."""

    @classmethod
    def from_json(cls: type[R], doc: Any, where: str = "", depth: int = 1) -> R:
        """``doc`` (parsed JSON) as a ``cls``, every field checked; ValueError naming the first wrong place (``where``
        the document sits, by default the class name; ``depth``: its nesting in the document)."""
        return _record(cls, doc, where or cls.__name__, depth)

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` (``extras`` are kept)."""
        return dataclasses.replace(self, **changes)


def to_json(value: Any) -> Any:
    """``value`` as JSON data: records become objects (their ``extras`` after their fields), datetimes ISO strings."""
    if isinstance(value, Record):
        out = {f.name: to_json(getattr(value, f.name)) for f in _fields(type(value))}
        out.update((k, to_json(v)) for k, v in value.extras.items() if k not in out)
        return out
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def dumps(record: Record) -> bytes:
    """The record as compact UTF-8 JSON, read back as a reader reads it: ValueError for what a reader would refuse
    (NaN, an integer beyond 64 bits, a ``metadata.plan`` of another shape: no unreadable file)."""
    text = json.dumps(to_json(record), separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    type(record).from_json(loads(text))
    return text


def loads(text: bytes | str) -> Any:
    """Parse UTF-8 JSON; ValueError (not RecursionError, not a str no UTF-8 stream can print) when it is nested too
    deep for the parser or a string holds a lone UTF-16 surrogate (``"\\ud800"``), as pydantic's parser refused."""
    try:
        if isinstance(text, str):
            text = text.encode("utf-8")  # a raw lone surrogate is no UTF-8 either
        text = text.decode("utf-8")  # json.loads would guess UTF-16 or UTF-32 from bytes and skip a BOM
        doc = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH}") from None
    except (UnicodeDecodeError, UnicodeEncodeError) as e:
        raise ValueError(f"JSON is not UTF-8 text ({e.reason} at {e.start})") from None
    if "\\ud" in text or "\\uD" in text:  # an escaped surrogate, or \ud000-\ud7ff (rare): every string is looked at
        _no_surrogates(doc)
    return doc


def _no_surrogates(doc: Any) -> None:
    stack = [doc]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            if _SURROGATE.search(x):
                raise ValueError(f"the string {_short(x)} holds a lone UTF-16 surrogate: it is not Unicode text")
        elif isinstance(x, dict):
            stack.extend(x)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)


_FIELDS: dict[type, tuple[tuple[dataclasses.Field[Any], Any], ...]] = {}


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.name != "extras"]


def _typed_fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any], ...]:
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls, include_extras=True)
        _FIELDS[cls] = tuple((f, hints[f.name]) for f in _fields(cls))
    return _FIELDS[cls]


def _record(cls: type[R], doc: Any, where: str, depth: int) -> R:
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: expected an object, got {_kind(doc)}")
    known: dict[str, Any] = {}
    for f, tp in _typed_fields(cls):
        if f.name in doc:
            known[f.name] = _value(tp, doc[f.name], f"{where}.{f.name}", depth + 1)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}.{f.name}: missing")
    extras = {k: v for k, v in doc.items() if k not in known}
    _bounded(extras, where, depth)
    return cls(**known, extras=extras)


def _value(tp: Any, v: Any, where: str, depth: int) -> Any:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *rules = get_args(tp)
        out = _value(base, v, where, depth)
        for rule in rules:
            if isinstance(rule, Ge) and isinstance(out, int) and out < rule.bound:
                raise ValueError(f"{where}: {out} is less than {rule.bound}")
            if isinstance(rule, Pattern) and isinstance(out, str) and not re.fullmatch(rule.regex, out):
                raise ValueError(f"{where}: {out[:60]!r} does not match {rule.regex}")
        return out
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if v is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is not type(None):
                try:
                    return _value(option, v, where, depth)
                except ValueError as e:
                    errors.append(e)
        raise errors[0]
    if origin is Literal:
        if any(v == x and type(v) is type(x) for x in get_args(tp)):
            return v
        raise ValueError(f"{where}: expected one of {', '.join(map(repr, get_args(tp)))}, got {_short(v)}")
    if origin is list:
        (item,) = get_args(tp)
        if not isinstance(v, list):
            raise ValueError(f"{where}: expected a list, got {_kind(v)}")
        quick = _QUICK.get(item)
        if quick is not None and all(map(quick, v)):  # no place name per item: 16M parents took 12 s, now 1 s
            return list(v)
        return [_value(item, x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
    if origin is dict:
        _, item = get_args(tp)
        if not isinstance(v, dict):
            raise ValueError(f"{where}: expected an object, got {_kind(v)}")
        quick = _QUICK.get(item)
        if quick is not None and all(map(quick, v.values())):
            return dict(v)
        return {k: _value(item, x, f"{where}[{k[:40]!r}]", depth + 1) for k, x in v.items()}
    if tp is Any:
        _bounded(v, where, depth)
        return v
    if isinstance(tp, type) and issubclass(tp, Record):
        return _record(tp, v, where, depth)
    if tp is bool:
        if isinstance(v, bool):
            return v
    elif tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            if v in INT_RANGE:
                return v
            raise ValueError(f"{where}: {_short(v)} does not fit in 64 bits")
    elif tp is float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                f = float(v)
            except OverflowError:  # a JSON integer beyond any float
                f = math.inf
            if math.isfinite(f):
                return f
            raise ValueError(f"{where}: {_short(v)} is not a finite number")
    elif tp is str:
        if isinstance(v, str):
            return v
    elif tp is datetime:
        if isinstance(v, str):
            try:  # Python 3.10's fromisoformat does not take "Z"
                dt = datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith("Z") else v)
            except ValueError:
                raise ValueError(f"{where}: {_short(v)} is not an ISO 8601 date and time") from None
            try:  # every reader shows it in UTC
                if dt.tzinfo is not None:
                    dt.astimezone(timezone.utc)
            except OverflowError:
                raise ValueError(f"{where}: {_short(v)} is before year 1 or after 9999 in UTC") from None
            return dt
    else:
        raise TypeError(f"{where}: records.py does not check {tp!r}")
    raise ValueError(f"{where}: expected {'a number' if tp is float else tp.__name__}, got {_kind(v)}")


_QUICK: dict[Any, Callable[[Any], bool]] = {
    int: lambda x: type(x) is int and x in INT_RANGE,
    float: lambda x: type(x) is float and math.isfinite(x),
    str: lambda x: type(x) is str,
    str | None: lambda x: x is None or type(x) is str,
}
"""Item types of long lists and objects (parents, factors, sub_workspaces, metrics) with a test that passes exactly
the items :func:`_value` takes unchanged: when every item passes, the list is taken at once; else each is checked."""


def _bounded(v: Any, where: str, depth: int) -> None:
    """A free-form value nests no deeper than MAX_DEPTH counted from the document's top (without recursion), and
    its numbers are finite (JSON has no NaN: ``inspect --json`` would print it, a rewrite would refuse it) and its
    integers in :data:`INT_RANGE`."""
    stack = [(v, depth)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError(f"{where}: {x} is not a finite number")
        if type(x) is int and x not in INT_RANGE:
            raise ValueError(f"{where}: {_short(x)} does not fit in 64 bits")
        if isinstance(x, (dict, list)):
            if d >= MAX_DEPTH:
                raise ValueError(f"{where}: nested deeper than {MAX_DEPTH}")
            stack.extend((y, d + 1) for y in (x.values() if isinstance(x, dict) else x))


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
