"""Avro schema text as both directions of the ``avro`` format need it (see :mod:`.avro`).

Preparation makes fastavro agree with Avro's Java parser where they differ (records without
fields, duplicate field names) and drops logical types, which Confluent's converters do not
apply; :class:`Types` resolves named-type references of the parsed schema, which fastavro
leaves as names after their first definition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import orjson

from .codec import SchemaError

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


def _load(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"Schema is not valid JSON: {exc}") from None


def prepared(text: str) -> Any:
    """Schema text as the JSON document to hand to fastavro's ``parse_schema``."""
    document = _load(text)
    _check_records(document)
    return _without_logical_types(document)


def _check_records(node: Any) -> None:
    """What Avro's Java parser refuses and fastavro quietly fills in: a record without
    ``fields``, or with a field name twice."""
    if isinstance(node, list):
        for item in node:
            _check_records(item)
    elif isinstance(node, dict):
        if node.get("type") in ("record", "error"):
            fields = node.get("fields")
            if not isinstance(fields, list):
                raise SchemaError(f"Record has no fields: {node.get('name')}")
            names = [f.get("name") for f in fields if isinstance(f, dict)]
            if len(names) != len(set(names)):
                raise SchemaError(f"Duplicate field name in record {node.get('name')}")
        for key, value in node.items():
            if key != "default":
                _check_records(value)


def _without_logical_types(node: Any) -> Any:
    # Logical types only change how values are presented, never their bytes; dropping them
    # keeps fastavro from converting values Confluent passes through raw.
    if isinstance(node, list):
        return [_without_logical_types(n) for n in node]
    if isinstance(node, dict):
        return {
            k: (v if k == "default" else _without_logical_types(v))
            for k, v in node.items()
            if k != "logicalType"
        }
    return node


class Types:
    """Resolves type references of a fastavro-parsed schema to their definitions."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named

    def resolve(self, schema: Any) -> Any:
        """A primitive name, a union list, or a complex type's definition dict."""
        while True:
            if isinstance(schema, str):
                if schema in PRIMITIVES:
                    return schema
                if schema not in self.named:
                    raise SchemaError(f"Unknown type: {schema}")
                return self.named[schema]
            if isinstance(schema, list):
                return schema
            kind = schema["type"]
            if isinstance(kind, str) and kind in COMPLEX:
                return schema
            schema = kind

    def label(self, schema: Any) -> str:
        """How Avro's JSON encoding names a union branch: full name, else the type."""
        resolved = self.resolve(schema)
        if isinstance(resolved, str):
            return resolved
        if isinstance(resolved, list):
            raise SchemaError("Unions may not immediately contain other unions")
        name: str = resolved.get("name") or resolved["type"]
        return name


F = TypeVar("F", bound=Callable[..., Any])


class NamedTypeBuilder(Generic[F]):
    """Shared by the Avro reader and writer builders: each named type (record, enum, fixed) is
    compiled once, and a recursive type refers to itself through a forwarding cell filled in
    when its own compilation finishes."""

    def __init__(self, types: Types) -> None:
        self.types = types
        self.memo: dict[str, F] = {}

    def _named(self, t: dict[str, Any]) -> F:
        name = t["name"]
        if name in self.memo:
            return self.memo[name]
        cell: list[F] = []
        self.memo[name] = lambda *args: cell[0](*args)  # type: ignore[assignment]
        kind = t["type"]
        if kind == "enum":
            real = self._enum(t)
        elif kind == "fixed":
            real = self._fixed(t)
        else:
            real = self._record(t)
        cell.append(real)
        self.memo[name] = real
        return real

    def _enum(self, t: dict[str, Any]) -> F:
        raise NotImplementedError

    def _fixed(self, t: dict[str, Any]) -> F:
        raise NotImplementedError

    def _record(self, t: dict[str, Any]) -> F:
        raise NotImplementedError
