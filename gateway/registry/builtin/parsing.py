"""Is this text a schema of its type? Parse it once, into what storage and checks need.

Blocking (fastavro, the JSON Schema meta-schema check, protobuf parsing): the service calls
:func:`parse` through ``asyncio.to_thread``.

PROTOBUF: ``gateway.formats.protobuf.compile_schema`` (protoc, the produce path's compiler)
decides, with the references under their import names. Where it is unavailable (module or
grpcio-tools missing) a schema is only checked for plausibility: non-empty, balanced text
that declares something (``syntax``/``message``/``enum``/``service``/...).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .avro import AvroSchema, InvalidAvro, parse_avro
from .identity import (
    MAX_NESTING,
    Identity,
    SchemaTooDeep,
    check_nesting,
    compact_json,
    identity,
    simplify_avro,
)
from .model import AVRO, JSON, PROTOBUF, SchemaText


class InvalidSchema(ValueError):
    """The text is not a valid schema of its declared type."""


@dataclass(frozen=True)
class ParsedSchema:
    """``schema.text`` is the text to store for a new id (compact JSON for AVRO and JSON)."""

    schema: SchemaText
    identity: Identity
    avro: AvroSchema | None = None


def parse(schema: SchemaText, dependencies: Sequence[tuple[str, SchemaText]] = ()) -> ParsedSchema:
    """``dependencies``: (reference name, schema) for every referenced schema, transitively,
    dependencies first."""
    if schema.schema_type == AVRO:
        doc = _json(schema.text)
        refs = [_json(d.text) for _, d in dependencies if d.schema_type == AVRO]
        try:
            avro = parse_avro(doc, refs)
        except InvalidAvro as exc:
            raise InvalidSchema(f"{exc} (schema: {_excerpt(schema.text)})") from exc
        return _parsed(schema, compact_json(simplify_avro(doc)), avro)
    if schema.schema_type == JSON:
        doc = _json(schema.text)
        _check_json_schema(doc)
        return _parsed(schema, compact_json(doc))
    if schema.schema_type == PROTOBUF:
        _check_protobuf(schema.text, {name: d.text for name, d in dependencies})
        return _parsed(schema, schema.text)
    raise InvalidSchema(f"unknown schema type {schema.schema_type}")


def _parsed(schema: SchemaText, text: str, avro: AvroSchema | None = None) -> ParsedSchema:
    stored = SchemaText(schema.schema_type, text, schema.references)
    return ParsedSchema(stored, identity(stored), avro)


def _json(text: str) -> Any:
    try:
        doc = json.loads(text)
        check_nesting(doc)
    except (RecursionError, SchemaTooDeep):
        raise InvalidSchema(f"nested more than {MAX_NESTING} levels deep") from None
    except ValueError as exc:
        raise InvalidSchema(f"not valid JSON ({exc}) (schema: {_excerpt(text)})") from exc
    return doc


def _check_json_schema(doc: Any) -> None:
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(doc, dict | bool):
        raise InvalidSchema("a JSON Schema must be a JSON object or a boolean")
    # Confluent's default draft is 7 when "$schema" does not say otherwise.
    validator = validator_for(doc, default=Draft7Validator)
    try:
        validator.check_schema(doc)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise InvalidSchema(f"invalid JSON Schema at '/{where}': {exc.message}") from exc


_PROTO_DECL = re.compile(r"\b(syntax|edition|package|import|option|message|enum|service)\b")
_PROTO_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_PROTO_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'')


def _check_protobuf(text: str, references: Mapping[str, str]) -> None:
    compile_schema = _protobuf_compiler()
    if compile_schema is not None:
        try:
            compile_schema(text, references)
        except Exception as exc:  # SchemaError, and whatever protoc's wrapper may raise
            raise InvalidSchema(f"invalid protobuf schema: {exc}") from exc
        return
    body = _PROTO_STRING.sub('""', _PROTO_COMMENT.sub(" ", text))
    if not body.strip() or not _PROTO_DECL.search(body):
        raise InvalidSchema("not a protobuf schema (no declarations)")
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            break
    if depth != 0:
        raise InvalidSchema("not a protobuf schema (unbalanced braces)")


@functools.cache
def _protobuf_compiler() -> Any:
    if importlib.util.find_spec("grpc_tools") is None:
        return None  # the compiler shells out to grpc_tools' protoc
    try:
        module = importlib.import_module("gateway.formats.protobuf")
    except ImportError:
        return None
    return getattr(module, "compile_schema", None)


def _excerpt(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
