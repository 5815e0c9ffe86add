"""The ``avro`` embedded format: Avro's JSON encoding over HTTP, Avro binary in Kafka.

Requests carry values in Avro's *JSON encoding* (what Confluent's ``AvroSchemaUtils.toObject``
reads through Avro's ``JsonDecoder``): a non-null union value is wrapped as
``{"<branch>": value}`` (named types by full name), ``bytes`` and ``fixed`` are strings whose
characters are the byte values (ISO-8859-1). Responses use the same encoding, as Avro's
``JsonEncoder`` writes it, with one quirk of Confluent's converter kept on purpose: the
*top-level* value is written with the schema of the branch it holds (Confluent derives the
schema from the deserialized Java object), so a top-level union is not wrapped.

Logical types are not applied in either direction, like Confluent's converters (their
``avro.use.logical.type.converters`` defaults to false): a ``timestamp-millis`` travels as its
long, a ``decimal`` as its bytes.

Writing goes through fastavro's ``schemaless_writer``; the JSON is first turned into the datum
fastavro expects, with each union branch named explicitly (fastavro's tuple notation) so the
branch written is the one the client chose, never one fastavro guesses from the Python type
(``{"long": 1}`` in an ``["int", "long"]`` union must write branch 1). Reading is a small
decoder of our own, for the same reason: the JSON must say which branch was written, and a
decoded Python ``int`` no longer knows whether it was an ``int`` or a ``long``.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import Any

from fastavro import schemaless_writer
from fastavro.schema import parse_schema

from .avro_read import Buf, ReaderBuilder
from .avro_schema import Types, prepared
from .avro_write import DatumBuilder, Mismatch
from .codec import DataError, SchemaError
from .framing import PayloadError


def compile_schema(schema: str, references: Mapping[str, str] | None = None) -> AvroCodec:
    """Compile schema text; ``references`` (name -> text, dependencies first) define named
    types the schema uses, as the registry's schema references do."""
    named: dict[str, Any] = {}
    try:
        for text in (references or {}).values():
            parse_schema(prepared(text), named_schemas=named)
        parsed = parse_schema(prepared(schema), named_schemas=named)
        return AvroCodec(parsed, named)
    except SchemaError:
        raise
    except Exception as exc:  # fastavro raises many types for a bad schema
        raise SchemaError(f"{type(exc).__name__}: {exc}") from None


class AvroCodec:
    """One compiled Avro schema; see the module docstring for the JSON rules."""

    format = "avro"

    def __init__(self, parsed: Any, named: Mapping[str, Any]) -> None:
        self._parsed = parsed
        types = Types(named)
        self._to_datum = DatumBuilder(types).build(parsed)
        self._read = ReaderBuilder(types).top(parsed)

    def encode(self, value: Any) -> bytes | None:
        """Avro binary for ``value``; ``None`` for a null the schema allows (no bytes, as
        Confluent's serializer returns for a null object)."""
        try:
            datum = self._to_datum(value)
        except Mismatch as exc:
            raise DataError(exc.message()) from None
        if datum is None:
            return None
        out = io.BytesIO()
        try:
            schemaless_writer(out, self._parsed, datum)
        except (ValueError, TypeError, OverflowError, struct.error) as exc:
            raise DataError(str(exc)) from None
        return out.getvalue()

    def decode(self, payload: bytes | memoryview) -> Any:
        buf = Buf(bytes(payload))
        try:
            return self._read(buf)
        except (IndexError, struct.error):
            raise PayloadError("Malformed Avro data: the payload ends early") from None
