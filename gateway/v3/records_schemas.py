"""Keys and values written with a Schema Registry schema (reference 8.1), one record side at a time.

Confluent's ``SchemaManagerImpl`` rules: ``type`` + ``schema`` looks the raw schema up under the
subject and registers it when missing; otherwise ``schema_id``, else ``schema_version``, else
the subject's latest version. The subject is ``subject``, or derived by
``subject_name_strategy`` (default TOPIC_NAME: ``<topic>-key`` / ``<topic>-value``).

Every answer comes from :mod:`gateway.registry` (cached there: ids never change meaning), and
every problem becomes the record's own error: 422 with ``Error: <code> : <message>`` for the
registry family (42205 bad schema, 42206 no registry, 42207 registry failure), as Confluent
writes them in-stream, and 400 for data the schema refuses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from ..context import SCHEMAS
from ..errors import GatewayError
from ..formats import framing
from ..formats.codec import FORMATS, SCHEMA_TYPES, Codec, DataError, SchemaError
from ..registry.client import NOT_CONFIGURED, Schema
from ..registry.schemas import Schemas, invalid_schema
from .records_request import RecordError, SchemaSide, bad

# v3's type names <-> our format names (the registry calls JSON Schema "JSON").
_FORMAT_OF = {"AVRO": "avro", "JSONSCHEMA": "jsonschema", "PROTOBUF": "protobuf"}
_TYPE_OF = {v: k for k, v in _FORMAT_OF.items()}
_LATEST = -1  # the registry's "latest version"
_VERSIONS_MAX = 10_000
_PROTO_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)
_PROTO_MESSAGE = re.compile(r"^\s*message\s+(\w+)", re.MULTILINE)

# (subject, schema id) -> version: the registry never renumbers a registered schema.
_VERSIONS: web.AppKey[dict[tuple[str, int], int]] = web.AppKey("v3_schema_versions", dict)


def install(app: web.Application) -> None:
    app[_VERSIONS] = {}


async def encode_side(
    app: web.Application, topic: str, which: str, side: SchemaSide
) -> tuple[bytes | None, dict[str, Any]]:
    """The side's Kafka bytes and what its result reports (type, subject, id, version)."""
    schemas: Schemas = app[SCHEMAS]
    if not schemas.configured:
        raise RecordError(422, f"Error: 42206 : {NOT_CONFIGURED}")
    try:
        return await _encode(app, schemas, topic, which, side)
    except GatewayError as exc:  # registry answers: 42205 / 42206 / 42207 / 40301
        if exc.status == 422:
            raise RecordError(422, f"Error: {exc.error_code} : {exc.message}") from None
        raise RecordError(exc.error_code, exc.message) from None


async def _encode(
    app: web.Application, schemas: Schemas, topic: str, which: str, side: SchemaSide
) -> tuple[bytes | None, dict[str, Any]]:
    client = schemas.client
    if side.schema is not None and side.type is not None:  # a raw schema: look up or register
        fmt = _FORMAT_OF[side.type]
        subject = _subject(topic, which, side, SCHEMA_TYPES[fmt], side.schema)
        schema_id, codec = await schemas.for_text(fmt, subject, side.schema)
        version = await _version(
            app, schemas, subject, schema_id, Schema(side.schema, SCHEMA_TYPES[fmt])
        )
    elif side.schema_id is not None:
        schema_id = side.schema_id
        registered = await client.schema_by_id(schema_id)
        fmt = _format(registered.schema_type, schema_id)
        subject = _subject(topic, which, side, registered.schema_type, registered.schema)
        codec = await schemas.for_id(fmt, subject, schema_id)
        version = await _version(app, schemas, subject, schema_id, registered)
    else:
        if side.strategy in ("RECORD_NAME", "TOPIC_RECORD_NAME"):
            raise bad(
                f"subject_name_strategy={side.strategy} needs schema_id or a raw schema: the "
                "record name comes from the schema."
            )
        subject = _subject(topic, which, side, "", "")
        wanted = _LATEST if side.schema_version is None else side.schema_version
        found = await client.subject_version(subject, wanted)
        schema_id, version = found.id, found.version
        fmt = _format(found.schema.schema_type, schema_id)
        codec = await _codec(schemas, schema_id)
    payload = _convert(codec, side.data)
    info = {
        "type": _TYPE_OF[fmt],
        "subject": subject,
        "schema_id": schema_id,
        "schema_version": version,
    }
    return (None if payload is None else framing.frame(schema_id, payload)), info


def _convert(codec: Codec, data: Any) -> bytes | None:
    # A null still goes through the schema, as Confluent's serializer does (Avro "null" writes
    # no bytes, JSON Schema stores null, protobuf refuses).
    try:
        return codec.encode(data)
    except DataError as exc:
        raise bad(str(exc)) from None
    except SchemaError as exc:
        raise RecordError(422, f"Error: 42205 : {invalid_schema(str(exc)).message}") from None


async def _codec(schemas: Schemas, schema_id: int) -> Codec:
    try:
        return await schemas.codec(schema_id)
    except SchemaError as exc:
        raise invalid_schema(f"schema {schema_id} cannot be used: {exc}") from None


async def _version(
    app: web.Application, schemas: Schemas, subject: str, schema_id: int, schema: Schema
) -> int | None:
    versions = app[_VERSIONS]
    known = versions.get((subject, schema_id))
    if known is not None:
        return known
    found = await schemas.client.lookup(subject, schema)
    if found is None:
        return None
    if len(versions) >= _VERSIONS_MAX:
        versions.clear()
    versions[(subject, schema_id)] = found[1]
    return found[1]


def _format(schema_type: str, schema_id: int) -> str:
    fmt = FORMATS.get(schema_type)
    if fmt is None:
        raise RecordError(
            422,
            f"Error: 42205 : Invalid schema: schema {schema_id} has unsupported type {schema_type}",
        )
    return fmt


def _subject(topic: str, which: str, side: SchemaSide, schema_type: str, text: str) -> str:
    if side.subject is not None:
        return side.subject
    strategy = side.strategy or "TOPIC_NAME"
    if strategy == "TOPIC_NAME":
        return f"{topic}-{which}"
    name = record_name(schema_type, text)
    if name is None:
        raise bad(
            f"subject_name_strategy={strategy}: the schema names no record to derive the "
            "subject from; give subject instead."
        )
    return name if strategy == "RECORD_NAME" else f"{topic}-{name}"


def record_name(schema_type: str, text: str) -> str | None:
    """The fully qualified record name Confluent's RecordNameStrategy would use, if any."""
    if schema_type == "PROTOBUF":
        message = _PROTO_MESSAGE.search(text)
        if message is None:
            return None
        package = _PROTO_PACKAGE.search(text)
        return f"{package.group(1)}.{message.group(1)}" if package else message.group(1)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, Mapping):
        return None
    if schema_type == "AVRO":
        name = parsed.get("name")
        if not isinstance(name, str):
            return None
        namespace = parsed.get("namespace")
        if "." in name or not isinstance(namespace, str) or not namespace:
            return name
        return f"{namespace}.{name}"
    title = parsed.get("title")  # JSON Schema: Confluent names it by its title
    return title if isinstance(title, str) else None
