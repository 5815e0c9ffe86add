"""Embedded format -> how a produce request's keys and values become Kafka bytes.

The one place that knows which formats exist on the produce path. A schema format needs more
than a pure function (a registry lookup, the topic for the subject name, schema ids in the
response), so every encoder has the same async signature.

Schema formats follow Confluent's ``AbstractProduceAction``: resolve the key schema, then the
value schema (each only if the request names one), then convert every record, key before
value, record after record; the first problem rejects the whole request, so nothing is sent
unless everything converted. Subjects follow TopicNameStrategy (``<topic>-key``,
``<topic>-value``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..context import SCHEMAS
from ..errors import bad_request, unprocessable
from ..formats import binary, framing, json
from ..formats.codec import Codec, DataError, SchemaError
from ..registry.schemas import Schemas, invalid_schema
from .request import ProduceRequest


@dataclass(frozen=True, slots=True)
class Encoded:
    keys: list[bytes | None]
    values: list[bytes | None]
    key_schema_id: int | None = None
    value_schema_id: int | None = None


Encoder = Callable[[web.Application, str, ProduceRequest], Awaitable[Encoded]]


def _plain(serialize: Callable[[list[Any]], list[bytes | None]]) -> Encoder:
    """A schema-less format: keys and values converted column by column; schema fields
    ignored."""

    async def encode(app: web.Application, topic: str, request: ProduceRequest) -> Encoded:
        keys = request.keys
        # Keyless requests (most of them) skip the key column's conversion entirely.
        no_keys = keys.count(None) == len(keys)
        return Encoded(list(keys) if no_keys else serialize(keys), serialize(request.values))

    return encode


def _each(serialize: Callable[[Any], bytes | None]) -> Callable[[list[Any]], list[bytes | None]]:
    return lambda column: [serialize(v) for v in column]


@dataclass(frozen=True, slots=True)
class _Side:
    """The schema one side (key or value) of a request is written with."""

    schema_id: int
    codec: Codec
    header: bytes  # magic byte + schema id, the same for every record


async def _side(
    schemas: Schemas, fmt: str, topic: str, which: str, text: str | None, schema_id: int | None
) -> _Side | None:
    subject = f"{topic}-{which}"  # TopicNameStrategy
    if text is not None and schema_id is not None:
        # Confluent answers this with a 500 (a null detail trips its own error); it is the
        # client's mistake, so a 422 that says which two fields collide.
        raise unprocessable(
            f"Unsupported argument: {which}_schema and {which}_schema_id are mutually "
            "exclusive; send one of them."
        )
    if schema_id is not None:
        codec = await schemas.for_id(fmt, subject, schema_id)
    elif text is not None:
        schema_id, codec = await schemas.for_text(fmt, subject, text)
    else:
        return None
    return _Side(schema_id, codec, framing.frame(schema_id, b""))


def _schema_format(fmt: str) -> Encoder:
    async def encode(app: web.Application, topic: str, request: ProduceRequest) -> Encoded:
        schemas = app[SCHEMAS]
        key = await _side(schemas, fmt, topic, "key", request.key_schema, request.key_schema_id)
        value = await _side(
            schemas, fmt, topic, "value", request.value_schema, request.value_schema_id
        )
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        for k, v in zip(request.keys, request.values, strict=True):
            keys.append(_convert(key, k, KEY_SCHEMA_MISSING, 42201))
            values.append(_convert(value, v, VALUE_SCHEMA_MISSING, 42202))
        return Encoded(
            keys,
            values,
            key.schema_id if key is not None else None,
            value.schema_id if value is not None else None,
        )

    return encode


KEY_SCHEMA_MISSING = "Request includes keys but does not include key schema"
VALUE_SCHEMA_MISSING = "Request includes values but does not include value schema"


def _convert(side: _Side | None, data: Any, missing: str, code: int) -> bytes | None:
    if side is None:
        if data is None:
            return None
        raise unprocessable(missing, code)
    # A null still goes through the schema, as in Confluent's serializer: Avro writes no
    # bytes when the schema allows null, JSON Schema stores a JSON null, protobuf refuses.
    try:
        payload = side.codec.encode(data)
    except DataError as exc:
        raise bad_request(f"Bad Request: {exc}") from None
    except SchemaError as exc:
        raise invalid_schema(str(exc)) from None
    return None if payload is None else side.header + payload


ENCODERS: dict[str, Encoder] = {
    "binary": _plain(binary.serialize_all),
    "json": _plain(_each(json.serialize)),
    "avro": _schema_format("avro"),
    "jsonschema": _schema_format("jsonschema"),
    "protobuf": _schema_format("protobuf"),
}


async def encode(
    app: web.Application, embedded_format: str, topic: str, request: ProduceRequest
) -> Encoded:
    return await ENCODERS[embedded_format](app, topic, request)
