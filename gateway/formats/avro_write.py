"""JSON in Avro's JSON encoding -> the datum fastavro's ``schemaless_writer`` takes.

Built once per schema as nested closures. Each union value becomes fastavro's tuple notation
``(branch name, datum)`` so the branch written is the one the client named. Mismatches use
the wording of Avro's ``JsonDecoder`` ("Expected int. Got VALUE_STRING") plus where in the
value they are, since that is what Confluent's clients see in their 400s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .avro_schema import INT_MAX, INT_MIN, LONG_MAX, LONG_MIN, NamedTypeBuilder

_FLOAT_MAX = 3.4028234663852886e38
# Jackson writes non-finite numbers as these strings; Avro's JsonDecoder reads them back.
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

ToDatum = Callable[[Any], Any]


class Mismatch(Exception):
    """The data does not fit; ``path`` grows as the error travels out of nested values."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def message(self) -> str:
        if not self.path:
            return self.reason
        where = ""
        for part in reversed(self.path):
            where += part if part.startswith("[") or not where else "." + part
        return f"{self.reason} (at {where})"


def _token(value: Any) -> str:
    """Jackson's name for the JSON token, as Avro's JsonDecoder reports a mismatch."""
    if value is None:
        return "VALUE_NULL"
    if value is True:
        return "VALUE_TRUE"
    if value is False:
        return "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, list):
        return "START_ARRAY"
    return "START_OBJECT"


def _expected(what: str, value: Any) -> Mismatch:
    return Mismatch(f"Expected {what}. Got {_token(value)}")


def _null(v: Any) -> Any:
    if v is not None:
        raise _expected("null", v)
    return None


def _boolean(v: Any) -> Any:
    if type(v) is not bool:
        raise _expected("boolean", v)
    return v


def _integer(name: str, lo: int, hi: int) -> ToDatum:
    def conv(v: Any) -> Any:
        if type(v) is not int:
            raise _expected(name, v)
        if not lo <= v <= hi:
            raise Mismatch(f"Numeric value ({v}) out of range of {name}")
        return v

    return conv


def _floating(name: str, limit: float) -> ToDatum:
    def conv(v: Any) -> Any:
        if type(v) is float or type(v) is int:
            v = float(v)
            if math.isfinite(v) and abs(v) > limit:
                raise Mismatch(f"Numeric value ({v}) out of range of {name}")
            return v
        if isinstance(v, str) and v in _NON_FINITE:
            return _NON_FINITE[v]
        raise _expected(name, v)

    return conv


def _latin1(what: str, v: Any) -> bytes:
    if not isinstance(v, str):
        raise _expected(what, v)
    try:
        return v.encode("latin-1")
    except UnicodeEncodeError:
        raise Mismatch(
            f"Expected {what} as an ISO-8859-1 string (characters U+0000..U+00FF only)"
        ) from None


def _bytes(v: Any) -> Any:
    return _latin1("bytes", v)


def _string(v: Any) -> Any:
    if not isinstance(v, str):
        raise _expected("string", v)
    return v


_PRIMITIVE_DATUM: dict[str, ToDatum] = {
    "null": _null,
    "boolean": _boolean,
    "int": _integer("int", INT_MIN, INT_MAX),
    "long": _integer("long", LONG_MIN, LONG_MAX),
    "float": _floating("float", _FLOAT_MAX),
    "double": _floating("double", math.inf),
    "bytes": _bytes,
    "string": _string,
}


class DatumBuilder(NamedTypeBuilder[ToDatum]):
    """Compiles a schema into one function JSON -> datum (closures, built once per schema)."""

    def build(self, schema: Any) -> ToDatum:
        t = self.types.resolve(schema)
        if isinstance(t, str):
            return _PRIMITIVE_DATUM[t]
        if isinstance(t, list):
            return self._union(t)
        if "name" in t:
            return self._named(t)
        if t["type"] == "array":
            return self._array(t)
        return self._map(t)

    def _enum(self, t: dict[str, Any]) -> ToDatum:
        symbols = frozenset(t["symbols"])
        name = t["name"]

        def conv(v: Any) -> Any:
            if not isinstance(v, str):
                raise _expected("enum symbol", v)
            if v not in symbols:
                raise Mismatch(f"Unknown symbol in enum {name}: {v}")
            return v

        return conv

    def _fixed(self, t: dict[str, Any]) -> ToDatum:
        size = t["size"]

        def conv(v: Any) -> Any:
            data = _latin1("fixed", v)
            if len(data) != size:
                raise Mismatch(f"Expected fixed length {size}, but got {len(data)}")
            return data

        return conv

    def _record(self, t: dict[str, Any]) -> ToDatum:
        fields = []
        known: set[str] = set()
        for f in t["fields"]:
            names = (f["name"], *f.get("aliases", ()))
            known.update(names)
            default = _Default(self, f["type"], f["default"]) if "default" in f else None
            fields.append((f["name"], names, self.build(f["type"]), default))

        def conv(v: Any) -> Any:
            if type(v) is not dict:
                raise _expected("record-start", v)
            out = {}
            for name, names, to_datum, default in fields:
                for key in names:
                    if key in v:
                        try:
                            out[name] = to_datum(v[key])
                        except Mismatch as exc:
                            exc.path.append(name)
                            raise
                        break
                else:
                    if default is None:
                        raise Mismatch(f"Expected field name not found: {name}")
                    out[name] = default.datum()
            if len(v) > len(out):
                unknown = [k for k in v if k not in known]
                if unknown:
                    raise Mismatch(f"Unknown fields: {unknown}")
            return out

        return conv

    def _array(self, t: dict[str, Any]) -> ToDatum:
        item = self.build(t["items"])

        def conv(v: Any) -> Any:
            if type(v) is not list:
                raise _expected("array-start", v)
            out = []
            for i, x in enumerate(v):
                try:
                    out.append(item(x))
                except Mismatch as exc:
                    exc.path.append(f"[{i}]")
                    raise
            return out

        return conv

    def _map(self, t: dict[str, Any]) -> ToDatum:
        value = self.build(t["values"])

        def conv(v: Any) -> Any:
            if type(v) is not dict:
                raise _expected("map-start", v)
            out = {}
            for k, x in v.items():
                try:
                    out[k] = value(x)
                except Mismatch as exc:
                    exc.path.append(k)
                    raise
            return out

        return conv

    def _union(self, branches: list[Any]) -> ToDatum:
        by_label: dict[str, tuple[str, ToDatum]] = {}
        short: dict[str, list[str]] = {}
        for b in branches:
            label = self.types.label(b)
            by_label[label] = (label, self.build(b))
            short.setdefault(label.rsplit(".", 1)[-1], []).append(label)
        # A short name is accepted too where it names one branch only.
        for name, labels in short.items():
            if len(labels) == 1 and name not in by_label:
                by_label[name] = by_label[labels[0]]
        nullable = "null" in by_label

        def conv(v: Any) -> Any:
            if v is None:
                if nullable:
                    return None
                raise _expected("start-union", v)
            if type(v) is not dict or len(v) != 1:
                raise _expected("start-union", v)
            ((key, inner),) = v.items()
            if key not in by_label:
                raise Mismatch(f"Unknown union branch {key}")
            label, to_datum = by_label[key]
            try:
                return (label, to_datum(inner))
            except Mismatch as exc:
                exc.path.append(key)
                raise

        return conv


class _Default:
    """A field default as a datum, converted on first use (its type may still be compiling)."""

    def __init__(self, builder: DatumBuilder, schema: Any, default: Any) -> None:
        self._builder = builder
        self._schema = schema
        self._default = default
        self._datum: Any = None
        self._ready = False

    def datum(self) -> Any:
        if not self._ready:
            schema = self._schema
            resolved = self._builder.types.resolve(schema)
            if isinstance(resolved, list):  # a union's default belongs to its first branch
                first = resolved[0]
                label = self._builder.types.label(first)
                inner = self._builder.build(first)(self._default)
                self._datum = None if label == "null" else (label, inner)
            else:
                self._datum = self._builder.build(schema)(self._default)
            self._ready = True
        return self._datum
