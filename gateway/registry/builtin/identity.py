"""When two schema texts are "the same schema": the rule behind id reuse and lookups.

Whitespace and key order never matter; everything else does. In particular this is *not*
Avro's Parsing Canonical Form: that form drops defaults, aliases, docs and logical types, so
two schemas a reader resolves differently (a field with a default and one without, ``bytes``
and ``decimal``) would share an id, and a client fetching that id would get the wrong one.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.formats.codec import nesting_depth

from .model import AVRO, PROTOBUF, SchemaText

Identity = tuple[str, str, tuple[tuple[str, str, int], ...]]

# Deeper JSON is refused as a schema. Not for its size: the rules here and in parsing recurse,
# and how deep Python can recurse depends on the caller's stack, so without a fixed bound the
# same record could be accepted by one replica's replay and refused by another's. 200 is within
# orjson's own limits (254 to write) and far beyond any schema a person or a generator writes.
MAX_NESTING = 200


class SchemaTooDeep(ValueError):
    """JSON schema text nested deeper than :data:`MAX_NESTING`."""


def identity(schema: SchemaText) -> Identity:
    """Cheap enough to run on every replayed record (no schema parsing)."""
    refs = tuple((r.name, r.subject, r.version) for r in schema.references)
    return (schema.schema_type, normalized_text(schema), refs)


def normalized_text(schema: SchemaText) -> str:
    """Raises :class:`SchemaTooDeep`."""
    if schema.schema_type == PROTOBUF:
        return schema.text.strip()
    try:
        doc = _loads(schema.text)
    except RecursionError:
        raise SchemaTooDeep(f"nested more than {MAX_NESTING} levels deep") from None
    except ValueError:
        return schema.text.strip()  # not JSON: only ever equal to itself
    check_nesting(doc)
    if schema.schema_type == AVRO:
        doc = simplify_avro(doc)
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check_nesting(doc: Any) -> None:
    """Raises :class:`SchemaTooDeep`; iterative, so it is safe on any document."""
    if nesting_depth(doc, MAX_NESTING) > MAX_NESTING:
        raise SchemaTooDeep(f"nested more than {MAX_NESTING} levels deep")


_AVRO_PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)


def simplify_avro(doc: Any) -> Any:
    """``{"type": "int"}`` is ``"int"``, as Avro's own canonical string writes it."""
    if isinstance(doc, dict):
        kind = doc.get("type")
        if len(doc) == 1 and isinstance(kind, str) and kind in _AVRO_PRIMITIVES:
            return kind
        return {k: simplify_avro(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [simplify_avro(v) for v in doc]
    return doc


def compact_json(doc: Any) -> str:
    """The text stored for a new JSON-based schema: compact, key order kept (as Confluent
    stores a canonical string rather than the client's formatting)."""
    try:
        return orjson.dumps(doc).decode()
    except TypeError:  # integers beyond 64 bits: the standard library copes
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # e.g. integers beyond 64 bits; raises ValueError if not JSON
