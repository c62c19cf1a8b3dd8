"""Request-body checks that :func:`lakehouse.web.decode_json` runs around msgspec.

Two jobs, both driven by the request type's structure (``msgspec.inspect.type_info``), so
neither depends on a library's wording:

* **Nesting limit.** Every request body may nest at most :data:`MAX_JSON_DEPTH` arrays and
  objects. A typed field (``list[float]``, a Struct) cannot nest deeper than its type says,
  so only the free-form parts (``Any``, ``dict[str, Any]``, ``msgspec.Raw``) are looked at:
  :func:`depth_check` compiles, once per type, a checker that visits only those parts. A
  body without free-form fields (a vector search) costs one dict lookup.
* **Our own message for a body of the wrong shape.** :func:`explain` walks the decoded JSON
  against the type and names the first problem: the field path (``items[3].id``) and what
  was expected (``expected a string, got a number``, ``unknown field 'q'``, ``missing
  required field 'sql'``, ``must be >= 0``). It runs only after the strict decode failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi
import numpy as np

__all__ = [
    "MAX_JSON_DEPTH",
    "TYPED_LATER",
    "TooDeep",
    "depth_check",
    "explain",
    "explain_value",
    "raw_depth_exceeds",
]

#: arrays and objects one request body may nest (the body's own object is level 1)
MAX_JSON_DEPTH = 64


#: annotate a ``msgspec.Raw`` field that the handler decodes later against a typed schema
#: (``Annotated[msgspec.Raw, TYPED_LATER]``): that decode bounds its nesting, so the body
#: check skips it (vectord's vectors: scanning 10,000 of them would double an add's cost)
TYPED_LATER = msgspec.Meta(extra={"json_depth": "typed"})


class TooDeep(ValueError):
    """A body nests arrays and objects deeper than :data:`MAX_JSON_DEPTH`."""

    def __init__(self, path: str = "") -> None:
        where = f" (at {path})" if path else ""
        super().__init__(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects{where}; "
            f"{MAX_JSON_DEPTH} is the limit for every request body"
        )


# -- nesting ----------------------------------------------------------------------------

_STRINGS = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'[]{}"')
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def raw_depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether the (valid) JSON ``data`` nests more than ``limit`` arrays and objects.

    Fast path: fewer opening brackets than ``limit`` in all (strings included) cannot nest
    deeper. Otherwise escapes are removed, only brackets and quotes kept, strings dropped,
    and the running depth computed with numpy: all C loops.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = _STRINGS.sub(b"", data.translate(None, _NOT_STRUCTURE))
    if not structure:
        return False
    steps = _STEP[np.frombuffer(structure, np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max()) > limit


def _free_exceeds(value: Any, level: int) -> bool:
    """Whether a decoded free-form value, itself at nesting ``level`` if it is a container,
    goes past the limit. Iterative: the value may be as deep as the decoder allowed."""
    stack = [(value, level)]
    while stack:
        v, lv = stack.pop()
        if isinstance(v, dict):
            if lv > MAX_JSON_DEPTH:
                return True
            stack.extend((x, lv + 1) for x in v.values())
        elif isinstance(v, list | tuple):
            if lv > MAX_JSON_DEPTH:
                return True
            stack.extend((x, lv + 1) for x in v)
        elif isinstance(v, msgspec.Raw):
            if raw_depth_exceeds(bytes(v), MAX_JSON_DEPTH - lv + 1):
                return True
        elif isinstance(v, msgspec.Struct):
            if lv > MAX_JSON_DEPTH:
                return True
            stack.extend((getattr(v, f), lv + 1) for f in v.__struct_fields__)
    return False


#: FrozenDictType exists from msgspec 0.19 on
_DICT_TYPES = tuple(getattr(mi, n) for n in ("DictType", "FrozenDictType") if hasattr(mi, n))

Checker = Callable[[Any, int], bool]  # (value, its level) -> exceeds the limit


def _free(value: Any, level: int) -> bool:
    return _free_exceeds(value, level)


def _plan(t: mi.Type, seen: dict[int, Checker | None]) -> Checker | None:
    """A checker for values of type ``t``, or None when ``t`` has no free-form part."""
    if isinstance(t, mi.Metadata):
        if (t.extra or {}).get("json_depth") == "typed":
            return None
        return _plan(t.type, seen)
    if isinstance(t, mi.AnyType | mi.RawType | mi.CustomType):
        return _free
    if isinstance(t, mi.UnionType):
        return _free if any(_plan(m, seen) for m in t.types) else None
    if isinstance(t, mi.CollectionType):
        item = _plan(t.item_type, seen)
        if item is None:
            return None
        return lambda v, lv: lv > MAX_JSON_DEPTH or any(item(x, lv + 1) for x in v)
    if isinstance(t, mi.TupleType):
        return _free if any(_plan(m, seen) for m in t.item_types) else None
    if isinstance(t, _DICT_TYPES):
        value = _plan(t.value_type, seen)
        if value is None:
            return None
        return lambda v, lv: lv > MAX_JSON_DEPTH or any(value(x, lv + 1) for x in v.values())
    if isinstance(t, mi.StructType | mi.DataclassType | mi.TypedDictType | mi.NamedTupleType):
        key = id(t.cls)
        if key in seen:  # a recursive type: walk its values without a plan
            return seen[key] or _free
        seen[key] = None
        fields = [(f.name, c) for f in t.fields if (c := _plan(f.type, seen)) is not None]
        if not fields:
            return None
        if isinstance(t, mi.TypedDictType):

            def check_mapping(v: Any, lv: int) -> bool:
                return lv > MAX_JSON_DEPTH or any(
                    c(v[name], lv + 1) for name, c in fields if name in v
                )

            seen[key] = check_mapping
            return check_mapping

        def check_fields(v: Any, lv: int) -> bool:
            return lv > MAX_JSON_DEPTH or any(c(getattr(v, name), lv + 1) for name, c in fields)

        seen[key] = check_fields
        return check_fields
    return None


@cache
def depth_check(tp: Any) -> Checker | None:
    """The nesting checker for request type ``tp`` (None: nothing to check). Cached."""
    return _plan(mi.type_info(tp), {})


# -- our own message for a wrong shape ----------------------------------------------------

_MISSING = object()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _expected(t: mi.Type) -> str:
    if isinstance(t, mi.Metadata):
        return _expected(t.type)
    names = {
        mi.StrType: "a string",
        mi.IntType: "an integer",
        mi.FloatType: "a number",
        mi.BoolType: "a boolean (true or false)",
        mi.NoneType: "null",
        mi.DictType: "an object",
        mi.StructType: "an object",
        mi.TypedDictType: "an object",
        mi.DataclassType: "an object",
        mi.ListType: "an array",
        mi.TupleType: "an array",
        mi.VarTupleType: "an array",
        mi.SetType: "an array",
        mi.FrozenSetType: "an array",
    }
    for cls, name in names.items():
        if isinstance(t, cls):
            return name
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in t.values)
    if isinstance(t, mi.EnumType):
        return "one of " + ", ".join(repr(m.value) for m in t.cls)
    if isinstance(t, mi.UnionType):
        return " or ".join(dict.fromkeys(_expected(m) for m in t.types))
    return "a value of another kind"


def _bounds(t: Any, value: Any, size: bool) -> str | None:
    """The first numeric or length bound ``value`` breaks, as words."""
    n = len(value) if size else value
    what = "length" if size else "value"
    lo = getattr(t, "min_length", None) if size else getattr(t, "ge", None)
    hi = getattr(t, "max_length", None) if size else getattr(t, "le", None)
    if lo is not None and n < lo:
        return f"{what} must be >= {lo}, got {n}"
    if hi is not None and n > hi:
        return f"{what} must be <= {hi}, got {n}"
    if not size:
        gt, lt = getattr(t, "gt", None), getattr(t, "lt", None)
        if gt is not None and n <= gt:
            return f"must be > {gt}, got {n}"
        if lt is not None and n >= lt:
            return f"must be < {lt}, got {n}"
    return None


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _problem(t: mi.Type, v: Any, path: str) -> tuple[str, str] | None:
    """``(path, what is wrong)`` for the first mismatch of decoded JSON ``v`` with ``t``."""
    if isinstance(t, mi.Metadata):
        return _problem(t.type, v, path)
    if isinstance(t, mi.AnyType | mi.RawType):
        return None
    if isinstance(t, mi.UnionType):
        if any(_problem(m, v, path) is None for m in t.types):
            return None
        # one member of the right JSON kind: report inside it (more precise than the union)
        fitting = [m for m in t.types if _expected(m) == _kind(v) or _kind_fits(m, v)]
        if len(fitting) == 1:
            return _problem(fitting[0], v, path)
        return path, f"expected {_expected(t)}, got {_kind(v)}"
    if isinstance(t, mi.NoneType):
        return None if v is None else (path, f"expected null, got {_kind(v)}")
    if isinstance(t, mi.BoolType):
        return None if isinstance(v, bool) else (path, f"expected {_expected(t)}, got {_kind(v)}")
    if isinstance(t, mi.IntType | mi.FloatType):
        ok = isinstance(v, int) if isinstance(t, mi.IntType) else isinstance(v, int | float)
        if not ok or isinstance(v, bool):
            return path, f"expected {_expected(t)}, got {_kind(v)}"
        bound = _bounds(t, v, size=False)
        return (path, bound) if bound else None
    if isinstance(t, mi.StrType):
        if not isinstance(v, str):
            return path, f"expected a string, got {_kind(v)}"
        bound = _bounds(t, v, size=True)
        if bound:
            return path, bound
        if t.pattern is not None and not re.search(t.pattern, v):
            return path, f"must match the pattern {t.pattern!r}"
        return None
    if isinstance(t, mi.LiteralType | mi.EnumType):
        values = t.values if isinstance(t, mi.LiteralType) else tuple(m.value for m in t.cls)
        return None if v in values else (path, f"expected {_expected(t)}, got {v!r}")
    if isinstance(t, mi.CollectionType | mi.TupleType):
        if not isinstance(v, list):
            return path, f"expected an array, got {_kind(v)}"
        if isinstance(t, mi.TupleType):
            if len(v) != len(t.item_types):
                return path, f"expected an array of {len(t.item_types)} items, got {len(v)}"
            items = list(zip(t.item_types, v, strict=True))
        else:
            bound = _bounds(t, v, size=True)
            if bound:
                return path, bound
            items = [(t.item_type, x) for x in v]
        for i, (it, x) in enumerate(items):
            found = _problem(it, x, _join(path, i))
            if found:
                return found
        return None
    if isinstance(t, _DICT_TYPES):
        if not isinstance(v, dict):
            return path, f"expected an object, got {_kind(v)}"
        bound = _bounds(t, v, size=True)
        if bound:
            return path, bound
        for key, x in v.items():
            found = _problem(t.key_type, key, _join(path, key)) or _problem(t.value_type, x, _join(path, key))
            if found:
                return found
        return None
    if isinstance(t, mi.StructType | mi.TypedDictType | mi.DataclassType):
        if isinstance(t, mi.StructType) and t.array_like:
            return None
        if not isinstance(v, dict):
            return path, f"expected an object, got {_kind(v)}"
        by_name = {f.encode_name: f for f in t.fields}
        if getattr(t, "forbid_unknown_fields", False):
            for key in v:
                if key not in by_name and key != getattr(t, "tag_field", None):
                    return path, f"unknown field {key!r}"
        for f in t.fields:
            x = v.get(f.encode_name, _MISSING)
            if x is _MISSING:
                if f.required:
                    return path, f"missing required field {f.encode_name!r}"
                continue
            found = _problem(f.type, x, _join(path, f.encode_name))
            if found:
                return found
        return None
    return None


def _kind_fits(t: mi.Type, v: Any) -> bool:
    if isinstance(t, mi.Metadata):
        return _kind_fits(t.type, v)
    if isinstance(v, list):
        return isinstance(t, mi.CollectionType | mi.TupleType)
    if isinstance(v, dict):
        return isinstance(t, mi.DictType | mi.StructType | mi.TypedDictType | mi.DataclassType)
    return False


def explain_value(tp: Any, value: Any) -> str | None:
    """:func:`explain` for an already decoded value (``msgspec.convert`` input)."""
    found = _problem(mi.type_info(tp), value, "")
    if found is None:
        return None
    path, problem = found
    return f"{path}: {problem}" if path else problem


def explain(tp: Any, data: bytes) -> str | None:
    """What is wrong with syntactically valid JSON ``data`` for type ``tp``, in our words:
    ``"items[3].id: expected a string, got a number"``. None when the walk finds nothing
    (the caller then falls back to a generic message)."""
    try:
        value = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    return explain_value(tp, value)
