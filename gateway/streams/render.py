"""Kafka records -> the JSON text of a topic stream's events, per ``format``.

A topic stream is for browsers and humans watching a topic, so every record becomes an
event, whatever its bytes: a side (key or value) the chosen format cannot read is still sent,
as text or base64, and the object says so (``"key_encoding"``/``"value_encoding"``:
``"string"`` or ``"base64"``; absent when the side is in the requested format). Nothing is
skipped and nothing wedges the stream, and a client that needs exactness can always ask for
``binary``.

- ``json`` (default): a side that is JSON text is sent as that JSON value; otherwise its
  UTF-8 text as a string, otherwise base64. Stored JSON is spliced in as stored (the
  producer's spelling), with raw line breaks, which valid JSON can only have between tokens,
  turned into spaces: an SSE ``data:`` field ends at a line break.
- ``string``: UTF-8 text (base64 when not UTF-8).
- ``binary``: base64, as v2's binary format.
- ``avro``, ``jsonschema``, ``protobuf``: Confluent-framed records decoded with their schema
  from the registry, as v2 reads them; a record that cannot be decoded is sent in base64 with
  ``"error"`` saying why.

Every object also carries ``headers`` (values base64), ``timestamp`` and ``timestamp_type``
in v2's ``include.metadata`` shape.
"""

from __future__ import annotations

from binascii import b2a_base64
from collections.abc import Callable, Sequence
from typing import Protocol

import orjson

from sessions.fetched import Record
from sessions.instance import DecodeError

from ..consume.decoding import SchemaDecoder, metadata_text
from ..registry.schemas import Schemas

FORMATS = ("json", "string", "binary", "avro", "jsonschema", "protobuf")
SCHEMA_FORMATS = frozenset({"avro", "jsonschema", "protobuf"})

# One side as the event shows it: (JSON text, encoding marker or None, text for key matching).
Side = tuple[bytes, str | None, str | None]
_NULL: Side = (b"null", None, None)


class Renderer(Protocol):
    async def prepare(self, records: Sequence[Record]) -> None: ...

    def __call__(self, rec: Record) -> tuple[bytes, str | None]:
        """The event's data (one line of JSON) and the key as text, for ``key=``."""
        ...


def renderer(fmt: str, schemas: Schemas) -> Renderer:
    if fmt in SCHEMA_FORMATS:
        return _SchemaRenderer(schemas)
    return _PlainRenderer(_SIDES[fmt])


def _base64(data: bytes) -> Side:
    text = b2a_base64(data, newline=False)
    return b'"' + text + b'"', "base64", text.decode()


def _string(data: bytes) -> Side:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return _base64(data)
    return orjson.dumps(text), "string", text


def json_side(data: bytes | None) -> Side:
    if data is None:
        return _NULL
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _string(data)
    shown = (
        data.replace(b"\n", b" ").replace(b"\r", b" ") if b"\n" in data or b"\r" in data else data
    )
    return shown, None, value if isinstance(value, str) else None


def string_side(data: bytes | None) -> Side:
    if data is None:
        return _NULL
    shown, encoding, text = _string(data)
    return shown, None if encoding == "string" else encoding, text


def binary_side(data: bytes | None) -> Side:
    if data is None:
        return _NULL
    shown, _, text = _base64(data)
    return shown, None, text


_SIDES = {"json": json_side, "string": string_side, "binary": binary_side}


def _event(rec: Record, key: Side, value: Side, extra: bytes = b"") -> bytes:
    head = b'{"topic":%s,"partition":%d,"offset":%d,"key":%s,"value":%s' % (
        orjson.dumps(rec.topic),
        rec.partition,
        rec.offset,
        key[0],
        value[0],
    )
    if key[1] is not None:
        head += b',"key_encoding":"%s"' % key[1].encode()
    if value[1] is not None:
        head += b',"value_encoding":"%s"' % value[1].encode()
    return head + extra + metadata_text(rec)


class _PlainRenderer:
    def __init__(self, side: Callable[[bytes | None], Side]) -> None:
        self._side = side

    async def prepare(self, records: Sequence[Record]) -> None:
        return None

    def __call__(self, rec: Record) -> tuple[bytes, str | None]:
        key, value = self._side(rec.key), self._side(rec.value)
        return _event(rec, key, value), key[2]


class _SchemaRenderer:
    """v2's schema decoder (registry lookups batched in :meth:`prepare`), its element taken
    apart again: a stream's cost is the browser, not this."""

    def __init__(self, schemas: Schemas) -> None:
        self._decoder = SchemaDecoder(schemas)

    async def prepare(self, records: Sequence[Record]) -> None:
        await self._decoder.prepare(records)

    def __call__(self, rec: Record) -> tuple[bytes, str | None]:
        try:
            element, _ = self._decoder(rec)
        except DecodeError as exc:
            key = _NULL if rec.key is None else _base64(rec.key)
            value = _NULL if rec.value is None else _base64(rec.value)
            return _event(rec, key, value, b',"error":' + orjson.dumps(str(exc))), key[2]
        decoded = orjson.loads(element)
        key_value = decoded["key"]
        return (
            _event(
                rec,
                (orjson.dumps(key_value), None, None),
                (orjson.dumps(decoded["value"]), None, None),
            ),
            key_value if isinstance(key_value, str) else None,
        )
