"""Kafka records -> v2 response elements, per embedded format (the consume path's formats).

Each decoder returns the element and its size for ``max_bytes`` accounting: the raw key + value
byte length for binary and json, the length of the JSON text for schema formats (both as
Confluent counts them).

Schema formats need the registry, which is asynchronous, while the instance's read loop decodes
synchronously, record by record. :class:`SchemaDecoder` therefore has an async ``prepare``
hook the read loop awaits for every batch before decoding it: it fetches and compiles every
schema id the batch names, so decoding itself never waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiohttp import web
from aiokafka import ConsumerRecord

from sessions.instance import DecodeError

from ..context import SCHEMAS
from ..formats import binary, framing, json
from ..formats.codec import Codec
from ..registry.schemas import Schemas

log = logging.getLogger(__name__)

Decoder = Callable[[ConsumerRecord], tuple[dict[str, Any], int]]


def _size(rec: ConsumerRecord) -> int:
    return (len(rec.key) if rec.key is not None else 0) + (
        len(rec.value) if rec.value is not None else 0
    )


def decode_binary(rec: ConsumerRecord) -> tuple[dict[str, Any], int]:
    return (
        {
            "topic": rec.topic,
            "key": binary.deserialize(rec.key),
            "value": binary.deserialize(rec.value),
            "partition": rec.partition,
            "offset": rec.offset,
        },
        _size(rec),
    )


def _json(data: bytes | None, what: str) -> Any:
    try:
        return json.deserialize(data)
    except framing.PayloadError as exc:  # a record the instance reports and skips
        raise DecodeError(f"{what}: {exc}") from None


def decode_json(rec: ConsumerRecord) -> tuple[dict[str, Any], int]:
    return (
        {
            "topic": rec.topic,
            "key": _json(rec.key, "key"),
            "value": _json(rec.value, "value"),
            "partition": rec.partition,
            "offset": rec.offset,
        },
        _size(rec),
    )


DECODERS: dict[str, Decoder] = {"binary": decode_binary, "json": decode_json}


def decoder_for(app: web.Application, fmt: str) -> Decoder:
    """The decoder for one read of an instance of format ``fmt``."""
    if fmt in DECODERS:
        return DECODERS[fmt]
    return SchemaDecoder(app[SCHEMAS])


class SchemaDecoder:
    """Reads Confluent-framed records of any schema format, one decoder per read request.

    The schema id in each record picks the codec, and the codec's format (the registry's
    ``schemaType``) decides how it is read: an avro instance reading a protobuf record shows
    it as protobuf JSON instead of failing. Confluent's avro deserializer would fail there;
    all three schema formats share one Accept family anyway, and a failure would make the
    instance skip data it can perfectly well show.

    Records that can never be read (no magic byte, an id the registry does not know, bytes
    that do not match their schema) raise :class:`DecodeError`: the instance answers
    408 / 40801 with the partition and offset and steps past the record, so one poison
    record cannot wedge a consumer. A registry that cannot be reached raises from
    :meth:`prepare` instead, before any record is decoded, and nothing is skipped.
    """

    def __init__(self, schemas: Schemas) -> None:
        self._schemas = schemas
        self._codecs: dict[int, Codec | str] = {}  # a str: why that id can never be read

    async def prepare(self, records: Iterable[ConsumerRecord]) -> None:
        """Fetch and compile every schema the records name (awaited before decoding)."""
        wanted: set[int] = set()
        for rec in records:
            for data in (rec.key, rec.value):
                schema_id = framing.schema_id(data)
                if schema_id is not None and schema_id not in self._codecs:
                    wanted.add(schema_id)
        if wanted:
            ids = sorted(wanted)
            found = await asyncio.gather(*(self._schemas.for_read(i) for i in ids))
            self._codecs.update(zip(ids, found, strict=True))

    def __call__(self, rec: ConsumerRecord) -> tuple[dict[str, Any], int]:
        key, key_size = self._decode(rec.key, "key")
        value, value_size = self._decode(rec.value, "value")
        return (
            {
                "topic": rec.topic,
                "key": key,
                "value": value,
                "partition": rec.partition,
                "offset": rec.offset,
            },
            key_size + value_size,
        )

    def _decode(self, data: bytes | None, what: str) -> tuple[Any, int]:
        if data is None:
            return None, 0
        try:
            schema_id, payload = framing.unframe(data)
        except framing.PayloadError as exc:
            raise DecodeError(f"{what}: {exc}") from None
        codec = self._codecs.get(schema_id)
        if codec is None:  # prepare() saw every record; only a caller skipping it gets here
            raise DecodeError(f"{what}: schema {schema_id} was not loaded before decoding")
        if isinstance(codec, str):
            raise DecodeError(f"{what}: {codec}")
        try:
            value = codec.decode(payload)
            return value, len(orjson.dumps(value))
        except framing.PayloadError as exc:
            raise DecodeError(f"{what} does not match schema {schema_id}: {exc}") from None
        except Exception as exc:  # a codec bug must not wedge the instance on this record
            log.warning("cannot decode %s with schema %d", what, schema_id, exc_info=True)
            raise DecodeError(f"{what} does not match schema {schema_id}: {exc}") from None
