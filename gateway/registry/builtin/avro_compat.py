"""Can a reader schema read data written with a writer schema? (Avro schema resolution)

The rules of the Avro specification's "Schema Resolution", as Avro's Java
``SchemaCompatibility`` applies them (which is what Confluent's registry runs), so a schema
accepted here is accepted there and vice versa:

- same primitive; or a promotion: int -> long/float/double, long -> float/double,
  float -> double, string <-> bytes;
- records, enums and fixed match by unqualified name (or a reader alias);
- a reader field missing from the writer needs a default; writer-only fields are skipped;
- every writer enum symbol must be a reader symbol, unless the reader enum has a default;
- fixed sizes equal; arrays and maps compare their items / values;
- a writer union: every branch must be readable; a reader union: some branch must read the
  writer's type. Logical types are ignored, as Avro does.

Recursive types terminate: a (reader, writer) pair under examination is assumed compatible
when met again, and results are memoized. Pure and CPU-bound: run it off the event loop for
large schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .avro import PRIMITIVES, AvroSchema

# writer type -> reader types that can read it
_PROMOTIONS = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_NAMED = frozenset({"record", "error", "enum", "fixed"})


def incompatibilities(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why ``reader`` cannot read ``writer``'s data; empty when it can."""
    return _Checker(reader.names, writer.names).check(reader.schema, writer.schema, "")


def is_compatible(reader: AvroSchema, writer: AvroSchema) -> bool:
    return not incompatibilities(reader, writer)


class _Checker:
    def __init__(self, reader_names: Mapping[str, Any], writer_names: Mapping[str, Any]) -> None:
        self._rn = reader_names
        self._wn = writer_names
        # (id(reader), id(writer)) -> errors; None while being examined (recursion)
        self._memo: dict[tuple[int, int], list[str] | None] = {}

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        r = _resolve(reader, self._rn)
        w = _resolve(writer, self._wn)
        key = (id(r), id(w))
        if key in self._memo:
            return list(self._memo[key] or [])
        self._memo[key] = None
        errors = self._compare(r, w, path or "/")
        self._memo[key] = errors
        return errors

    def _compare(self, r: Any, w: Any, path: str) -> list[str]:
        rt, wt = _kind(r), _kind(w)
        if wt == "union":
            errors: list[str] = []
            for branch in w:
                errors += self.check(r, branch, path)
            return errors
        if rt == "union":
            for branch in r:
                if not self.check(branch, w, path):
                    return []
            return [
                f"MISSING_UNION_BRANCH at '{path}': the reader union lacks a branch for "
                f"the writer's {_describe(w)}"
            ]
        if rt == wt:
            if rt in PRIMITIVES:
                return []
            if rt in _NAMED and not _names_match(r, w):
                return [
                    f"NAME_MISMATCH at '{path}': expected {_short(w['name'])}, "
                    f"found {_short(r['name'])}"
                ]
            if rt in ("record", "error"):
                return self._records(r, w, path)
            if rt == "enum":
                return _enums(r, w, path)
            if rt == "fixed":
                if r.get("size") != w.get("size"):
                    return [
                        f"FIXED_SIZE_MISMATCH at '{path}': expected {w.get('size')}, "
                        f"found {r.get('size')}"
                    ]
                return []
            if rt == "array":
                return self.check(r["items"], w["items"], f"{path.rstrip('/')}/items")
            if rt == "map":
                return self.check(r["values"], w["values"], f"{path.rstrip('/')}/values")
        if rt in _PROMOTIONS.get(wt, ()):
            return []
        return [
            f"TYPE_MISMATCH at '{path}': reader type {_describe(r)} cannot read "
            f"writer type {_describe(w)}"
        ]

    def _records(self, r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> list[str]:
        writer_fields = {f["name"]: f for f in w.get("fields", ())}
        errors: list[str] = []
        base = path.rstrip("/")
        for i, rf in enumerate(r.get("fields", ())):
            wf = writer_fields.get(rf["name"])
            if wf is None:
                wf = next(
                    (writer_fields[a] for a in rf.get("aliases") or () if a in writer_fields),
                    None,
                )
            if wf is None:
                if "default" not in rf:
                    errors.append(
                        f"READER_FIELD_MISSING_DEFAULT_VALUE at '{base}/fields/{i}': field "
                        f"'{rf['name']}' has no default value and is missing in the writer schema"
                    )
                continue
            errors += self.check(rf["type"], wf["type"], f"{base}/fields/{i}/type")
        return errors


def _enums(r: Mapping[str, Any], w: Mapping[str, Any], path: str) -> list[str]:
    reader_symbols = set(r.get("symbols", ()))
    missing = [s for s in w.get("symbols", ()) if s not in reader_symbols]
    if not missing or r.get("default") in reader_symbols:
        return []
    return [
        f"MISSING_ENUM_SYMBOLS at '{path.rstrip('/')}/symbols': the reader enum "
        f"{_short(r['name'])} lacks {', '.join(missing)}"
    ]


def _resolve(schema: Any, names: Mapping[str, Any]) -> Any:
    """A named reference becomes the definition; ``{"type": "int"}`` stays as it is."""
    if isinstance(schema, str) and schema not in PRIMITIVES:
        found = names.get(schema)
        if found is None:
            raise ValueError(f"unknown Avro type {schema!r}")
        return found
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        kind = schema["type"]
        return kind if isinstance(kind, str) else _kind(kind)
    return str(schema)


def _names_match(r: Mapping[str, Any], w: Mapping[str, Any]) -> bool:
    if _short(r["name"]) == _short(w["name"]):
        return True
    namespace = r["name"].rpartition(".")[0]
    for alias in r.get("aliases") or ():
        qualified = alias if "." in alias or not namespace else f"{namespace}.{alias}"
        if w["name"] in (alias, qualified):
            return True
    return False


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if kind in _NAMED and isinstance(schema, dict):
        return f"{kind} {schema['name']}"
    return kind
