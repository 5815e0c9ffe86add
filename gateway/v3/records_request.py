"""One v3 produce record (reference 8.1): JSON object in, Kafka-ready parts or a record error out.

A record's problem never fails its neighbours: everything here raises :class:`RecordError`,
which becomes that record's result entry (400 for what Jackson would refuse or a bad
``data``, 40402 for a negative partition). Keys and values of the schema-less types (BINARY,
JSON, STRING) are converted right here; a side naming a schema is left as a :class:`SchemaSide`
for :mod:`.records_schemas`, which needs the registry.

Timestamps are ISO-8601 strings with a zone (``2024-05-01T10:00:00.123Z``, offsets allowed),
as Confluent's Jackson reads an ``Instant``. A JSON number is read the way that Jackson reads
it too: epoch **seconds**, a fraction kept to the millisecond, so a client moving from
Confluent keeps its timestamps. A number only milliseconds can explain (past the year 5138 as
seconds) is refused with a message saying so, rather than producing a record dated in the
far future that the broker would refuse anyway.
"""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from ..body import INT32, as_int
from ..errors import GatewayError
from ..formats import binary
from ..formats.codec import DataError, json_text
from ..produce.batching import Headers

TYPES = ("BINARY", "JSON", "STRING", "AVRO", "JSONSCHEMA", "PROTOBUF")
SCHEMA_TYPES = ("AVRO", "JSONSCHEMA", "PROTOBUF")
STRATEGIES = ("TOPIC_NAME", "RECORD_NAME", "TOPIC_RECORD_NAME")
RECORD_FIELDS = ("partition_id", "headers", "key", "value", "timestamp")
_DATA_FIELDS = frozenset(
    {"type", "data", "subject", "subject_name_strategy", "schema_id", "schema_version", "schema"}
)
_SCHEMA_FIELDS = ("subject", "subject_name_strategy", "schema_id", "schema_version", "schema")
_HEADER_FIELDS = frozenset({"name", "value"})
_RECORD_FIELD_SET = frozenset(RECORD_FIELDS)
_PLAIN_FIELDS = frozenset({"type", "data"})
# Shared, never mutated: a result copies it (records_sender adds the size).
_PLAIN_INFO: dict[Any, dict[str, Any]] = {k: {"type": k} for k in ("BINARY", "JSON", "STRING")}
# Seconds past this can only be milliseconds sent by mistake (year 5138).
_MAX_SECONDS = 100_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


class RecordError(Exception):
    """This record's result entry: ``{"error_code": code, "message": message}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad(detail: str) -> RecordError:
    return RecordError(400, f"Bad Request: {detail}")


@dataclass(slots=True)
class SchemaSide:
    """A key or value written with a registry schema, still to be resolved and converted."""

    type: str | None  # AVRO / JSONSCHEMA / PROTOBUF, or None: the schema's own
    data: Any
    subject: str | None
    strategy: str | None
    schema_id: int | None
    schema_version: int | None
    schema: str | None


@dataclass(slots=True)
class Record:
    """A validated record: bytes where known, ``*_info`` what its result reports per side."""

    partition: int | None
    timestamp: int  # epoch ms
    headers: Headers
    key: bytes | None
    value: bytes | None
    key_info: dict[str, Any] | None  # {"type": ..., subject/schema_id/schema_version}
    value_info: dict[str, Any] | None
    key_schema: SchemaSide | None = None
    value_schema: SchemaSide | None = None


def parse_record(obj: Any) -> Record:
    """The record, or :class:`RecordError` naming the first problem."""
    if type(obj) is not dict:
        raise bad(f"Cannot deserialize a produce record from {_kind(obj)}: expected an object")
    if not obj.keys() <= _RECORD_FIELD_SET:
        name = next(n for n in obj if n not in _RECORD_FIELD_SET)
        raise RecordError(400, _unrecognized(name, "ProduceRequest", RECORD_FIELDS))
    partition = _partition(obj.get("partition_id"))
    stamp = obj.get("timestamp")
    timestamp = time.time_ns() // 1_000_000 if stamp is None else _timestamp(stamp)
    headers = _headers(obj.get("headers"))
    record = Record(partition, timestamp, headers, None, None, None, None)
    if "key" in obj:
        side = obj["key"]
        if side is not None:
            record.key, record.key_info, record.key_schema = _side(side)
    if "value" in obj:
        side = obj["value"]
        if side is not None:
            record.value, record.value_info, record.value_schema = _side(side)
    return record


def _partition(value: Any) -> int | None:
    try:
        partition = as_int(value, "partition_id", INT32)
    except GatewayError as exc:
        raise bad(exc.message) from None
    if partition is not None and partition < 0:
        raise RecordError(40402, "Partition not found.")
    return partition


def _timestamp(value: Any) -> int:
    if isinstance(value, bool):
        raise bad(f"timestamp={json_text(value)} is not an ISO-8601 date-time.")
    if isinstance(value, int | float):
        if abs(value) >= _MAX_SECONDS:
            raise bad(
                f"timestamp={json_text(value)} is read as epoch seconds (as Jackson reads a "
                "number); it looks like milliseconds: send seconds or an ISO-8601 string."
            )
        # The number's decimal text, as Jackson reads it (no binary rounding): 1.001 is 1001 ms.
        millis = int(Decimal(repr(value)) * 1000) if isinstance(value, float) else value * 1000
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise bad(
                f"timestamp={json_text(value)} is not an ISO-8601 date-time "
                "(e.g. 2024-05-01T10:00:00.123Z)."
            ) from None
        if moment.tzinfo is None:
            raise bad(
                f"timestamp={json_text(value)} has no time zone: add Z or an offset "
                "(e.g. 2024-05-01T10:00:00.123Z)."
            )
        if moment >= _EPOCH:  # exact: whole seconds, then the millisecond; finer is dropped
            millis = int(moment.timestamp()) * 1000 + moment.microsecond // 1000
        else:
            millis = (moment - _EPOCH) // _MILLISECOND
    else:
        raise bad(f"timestamp={json_text(value)} is not an ISO-8601 date-time.")
    if millis < 0:
        raise bad(f"Invalid timestamp: {millis}. Timestamp should always be non-negative or null.")
    return millis


def _headers(value: Any) -> Headers:
    if value is None:
        return []
    if type(value) is not list:
        raise bad(f"headers={_short(value)} is not an array of {{name, value}} objects.")
    out: Headers = []
    for header in value:
        if type(header) is not dict:
            raise bad(f"header {_short(header)} is not a {{name, value}} object.")
        if not header.keys() <= _HEADER_FIELDS:
            name = next(n for n in header if n not in _HEADER_FIELDS)
            raise RecordError(400, _unrecognized(name, "ProduceRequestHeader", ("name", "value")))
        name = header.get("name")
        if not isinstance(name, str):
            raise bad(f"header name={json_text(name)} is not a string.")
        if not name.isascii() and not _encodable(name):
            raise bad(f"header name={json_text(name)} is not valid Unicode text.")
        raw = header.get("value")
        try:
            data = binary.serialize(raw)
        except DataError as exc:
            raise bad(f"header {name}: {exc}") from None
        out.append((name, data))
    if len(out) < 2 or len({name for name, _ in out}) == len(out):
        return out
    # Confluent keeps headers in a multimap: same-name headers travel together, names in
    # order of first appearance.
    grouped: dict[str, list[bytes | None]] = {}
    for name, data in out:
        grouped.setdefault(name, []).append(data)
    return [(name, data) for name, values in grouped.items() for data in values]


def _side(side: Any) -> tuple[bytes | None, dict[str, Any], SchemaSide | None]:
    """(bytes, info, None) for a schema-less side; (None, info, SchemaSide) for a schema one."""
    if type(side) is not dict:
        raise bad(f"Cannot deserialize a key or value from {_kind(side)}: expected an object")
    if not side.keys() <= _DATA_FIELDS:
        name = next(n for n in side if n not in _DATA_FIELDS)
        raise RecordError(400, _unrecognized(name, "ProduceRequestData", sorted(_DATA_FIELDS)))
    kind = side.get("type")
    if kind is not None and kind not in TYPES:
        raise bad(
            f"Cannot deserialize value of type `EmbeddedFormat` from String {json_text(kind)}: "
            f"not one of the values accepted for Enum class: [{', '.join(TYPES)}]"
        )
    data = side.get("data")
    plain_info = _PLAIN_INFO.get(kind)
    if plain_info is not None:
        if not side.keys() <= _PLAIN_FIELDS:
            given = [f for f in _SCHEMA_FIELDS if side.get(f) is not None]
            if given:
                raise bad(f"type={kind} cannot be combined with {', '.join(given)}.")
        return _plain(plain_info["type"], data), plain_info, None
    schema_side = _schema_side(kind, side)
    return None, {"type": kind}, schema_side


def _plain(kind: str, data: Any) -> bytes | None:
    if data is None:
        return None
    if kind == "BINARY":
        if isinstance(data, str):
            try:
                return binascii.a2b_base64(data, strict_mode=True)  # the common, canonical case
            except ValueError:
                pass
        try:
            return binary.serialize(data)
        except DataError as exc:
            raise bad(str(exc)) from None
    if kind == "STRING":
        if not isinstance(data, str):
            raise bad(f"data={_short(data)} is not a string.")
        try:
            return data.encode("utf-8")
        except UnicodeEncodeError:
            raise bad(f"data={_short(data)} is not valid Unicode text.") from None
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        raise bad(f"data cannot be written as JSON: {exc}") from None


def _schema_side(kind: str | None, side: dict[str, Any]) -> SchemaSide:
    subject = side.get("subject")
    strategy = side.get("subject_name_strategy")
    schema = side.get("schema")
    if subject is not None and not isinstance(subject, str):
        raise bad(f"subject={_short(subject)} is not a string.")
    if strategy is not None and strategy not in STRATEGIES:
        raise bad(
            f"Cannot deserialize value of type `EnumSubjectNameStrategy` from String "
            f"{json_text(strategy)}: not one of the values accepted for Enum class: "
            f"[{', '.join(STRATEGIES)}]"
        )
    if subject is not None and strategy is not None:
        raise bad("Only one of subject or subject_name_strategy can be used.")
    if schema is not None and not isinstance(schema, str):
        raise bad(f"schema={_short(schema)} is not a string (the raw schema text).")
    try:
        schema_id = as_int(side.get("schema_id"), "schema_id", INT32)
        version = as_int(side.get("schema_version"), "schema_version", INT32)
    except GatewayError as exc:
        raise bad(exc.message) from None
    if kind is not None:
        # Confluent: a type names a raw schema to look up or register, nothing else.
        if schema_id is not None or version is not None:
            raise bad(
                f"type={kind} cannot be combined with schema_id or schema_version: omit type "
                "to use a registered schema."
            )
        if schema is None:
            raise bad(f"type={kind} needs schema (the raw schema text), or omit type.")
    elif schema is not None:
        raise bad("schema needs type (AVRO, JSONSCHEMA or PROTOBUF).")
    elif schema_id is not None and version is not None:
        raise bad("Only one of schema_id or schema_version can be used.")
    return SchemaSide(kind, side.get("data"), subject, strategy, schema_id, version, schema)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unrecognized(name: str, java_class: str, known: Any) -> str:
    # Jackson's text (class name shortened); Confluent cuts messages at the first newline.
    names = ", ".join(f'"{k}"' for k in known)
    first = name.splitlines()[0] if name else name
    return (
        f'Unrecognized field "{first}" (class {java_class}), not marked as ignorable '
        f"({len(known)} known properties: {names}])"
    )


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "Array value (token `JsonToken.START_ARRAY`)"
    return _short(value)


def _short(value: Any, limit: int = 80) -> str:
    text = json_text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
