"""Avro schema text -> a parsed schema the compatibility checker can walk.

fastavro does the parsing (and checks defaults against their types); on top of it a few rules
Avro's Java parser enforces and fastavro does not, because Confluent's registry rejects such
schemas and a client could not use them anyway: legal names, records with a ``fields`` list,
unique field names, no union directly inside a union, no two union branches of one type.
Blocking: call it through ``asyncio.to_thread`` for anything a client sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastavro.schema import parse_schema

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InvalidAvro(ValueError):
    """The text is not an Avro schema; the message says why."""


@dataclass(frozen=True)
class AvroSchema:
    """fastavro's parsed form plus every named type it can refer to (its own and referenced)."""

    schema: Any
    names: Mapping[str, Any] = field(default_factory=dict)


def parse_avro(doc: Any, references: Iterable[Any] = ()) -> AvroSchema:
    """``references``: the referenced schemas' JSON documents, dependencies first."""
    names: dict[str, Any] = {}
    try:
        for ref in references:
            parse_schema(ref, named_schemas=names)
        _lint(doc, path="")
        parsed = parse_schema(doc, named_schemas=names)
    except InvalidAvro:
        raise
    except Exception as exc:  # fastavro raises several unrelated types (KeyError, TypeError...)
        detail = str(exc) or type(exc).__name__
        if type(exc).__name__ == "UnknownType":
            detail = f"unknown type {exc}"
        raise InvalidAvro(detail) from exc
    return AvroSchema(parsed, names)


def _lint(schema: Any, path: str) -> None:
    if isinstance(schema, list):
        _lint_union(schema, path)
        return
    if not isinstance(schema, dict):
        return  # a name: fastavro resolves it or fails
    kind = schema.get("type")
    if isinstance(kind, list | dict):
        _lint(kind, path)
        return
    if kind in ("record", "error", "enum", "fixed"):
        _check_name(schema.get("name"), f"{path}/name")
        for alias in schema.get("aliases") or ():
            _check_name(alias, f"{path}/aliases")
    if kind in ("record", "error"):
        fields = schema.get("fields")
        if not isinstance(fields, list):
            raise InvalidAvro(f"record {schema.get('name')!r} has no fields list")
        seen: set[str] = set()
        for i, fld in enumerate(fields):
            if not isinstance(fld, dict) or "type" not in fld:
                raise InvalidAvro(f"{path}/fields/{i}: a field needs a name and a type")
            name = fld.get("name")
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise InvalidAvro(f"{path}/fields/{i}: illegal field name {name!r}")
            if name in seen:
                raise InvalidAvro(f"duplicate field {name!r} in record {schema.get('name')!r}")
            seen.add(name)
            _lint(fld["type"], f"{path}/fields/{i}/type")
    elif kind == "enum":
        symbols = schema.get("symbols")
        if not isinstance(symbols, list):
            raise InvalidAvro(f"enum {schema.get('name')!r} has no symbols list")
        for sym in symbols:
            if not isinstance(sym, str) or not _NAME.fullmatch(sym):
                raise InvalidAvro(f"enum {schema.get('name')!r}: illegal symbol {sym!r}")
    elif kind == "fixed":
        size = schema.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidAvro(f"fixed {schema.get('name')!r} needs a non-negative size")
    elif kind == "array":
        _lint(schema.get("items"), f"{path}/items")
    elif kind == "map":
        _lint(schema.get("values"), f"{path}/values")


def _lint_union(branches: list[Any], path: str) -> None:
    seen: set[str] = set()
    for i, branch in enumerate(branches):
        if isinstance(branch, list):
            raise InvalidAvro(f"{path}/{i}: unions may not immediately contain other unions")
        key = _branch_key(branch)
        if key in seen:
            raise InvalidAvro(f"{path}: duplicate {key} in union")
        seen.add(key)
        _lint(branch, f"{path}/{i}")


def _branch_key(branch: Any) -> str:
    """Unions may hold one schema per unnamed type and one per name."""
    if isinstance(branch, str):
        return branch
    if isinstance(branch, dict):
        kind = branch.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            name = str(branch.get("name"))
            ns = branch.get("namespace")
            return f"{ns}.{name}" if ns and "." not in name else name
        return str(kind)
    return repr(branch)


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not all(_NAME.fullmatch(p) for p in name.split(".")):
        raise InvalidAvro(f"{where}: illegal name {name!r}")
