"""Confluent's wire framing and the Avro JSON encoding, byte for byte.

The expected bytes are written out by hand from Confluent's serializer source
(``SchemaId.idToBytes``, ``MessageIndexes.toByteArray``, Kafka's ``ByteUtils.writeVarint``)
and the Avro specification, and the Avro payloads are cross-checked with fastavro, an
independent implementation, so a mistake in our code cannot hide behind itself.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro
import pytest

from gateway.formats import avro, framing
from gateway.formats.codec import DataError, SchemaError
from gateway.formats.framing import PayloadError

# --- framing ------------------------------------------------------------------------------------


def test_frame_is_magic_zero_then_big_endian_id_then_payload() -> None:
    assert framing.frame(1, b"abc") == b"\x00\x00\x00\x00\x01abc"
    assert framing.frame(0x01020304, b"") == b"\x00\x01\x02\x03\x04"
    assert framing.frame(2**31 - 1, b"x") == b"\x00\x7f\xff\xff\xffx"


def test_unframe_reads_the_id_and_leaves_the_rest() -> None:
    schema_id, rest = framing.unframe(b"\x00\x00\x00\x01\x00payload")
    assert (schema_id, bytes(rest)) == (256, b"payload")
    assert framing.schema_id(b"\x00\x00\x00\x00\x07") == 7


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x01", b"\x01\x00\x00\x00\x01x", b"{}"])
def test_unframe_rejects_what_a_confluent_deserializer_rejects(data: bytes) -> None:
    with pytest.raises(PayloadError, match="Unknown magic byte!"):
        framing.unframe(data)
    assert framing.schema_id(data) is None


@pytest.mark.parametrize(
    ("indexes", "expected"),
    [
        ([0], b"\x00"),  # Confluent's optimization: the first message is a single 0
        ([1], b"\x02\x02"),  # count 1 -> zigzag 2; index 1 -> zigzag 2
        ([0, 0], b"\x04\x00\x00"),
        ([1, 2], b"\x04\x02\x04"),
        ([3, 0, 1], b"\x06\x06\x00\x02"),
        ([64], b"\x02\x80\x01"),  # zigzag(64) = 128: a two-byte varint
        ([0, 100000], b"\x04\x00\xc0\x9a\x0c"),
    ],
)
def test_message_indexes_are_zigzag_varints(indexes: list[int], expected: bytes) -> None:
    assert framing.encode_indexes(indexes) == expected
    assert framing.decode_indexes(expected + b"payload") == (indexes, len(expected))


def test_an_explicit_single_zero_index_reads_as_the_first_message_too() -> None:
    # Other serializers write [0] unoptimized (count 1, index 0); both mean the same.
    assert framing.decode_indexes(b"\x02\x00") == ([0], 2)


@pytest.mark.parametrize("data", [b"", b"\x04\x02", b"\x01", b"\xff\xff\xff\xff\xff\xff"])
def test_bad_message_indexes_are_payload_errors(data: bytes) -> None:
    with pytest.raises(PayloadError):
        framing.decode_indexes(data)


# --- Avro: JSON (Avro JSON encoding) -> bytes ----------------------------------------------------

USER = {
    "type": "record",
    "name": "User",
    "namespace": "com.example",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "email", "type": ["null", "string"], "default": None},
        {"name": "score", "type": ["int", "long", "double"]},
        {"name": "raw", "type": "bytes"},
        {"name": "tag", "type": {"type": "fixed", "name": "Tag", "size": 2}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "ratio", "type": "float"},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "boolean"]}},
        {"name": "friends", "type": {"type": "array", "items": "string"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
USER_JSON = {
    "id": 7,
    "name": "Ann",
    "email": {"string": "ann@example.com"},
    "score": {"long": 5},
    "raw": "\u00ff\u0000A",
    "tag": "\u0001\u0002",
    "kind": "B",
    "ratio": 0.1,
    "attrs": {"x": {"boolean": True}, "y": None},
    "friends": ["Bob"],
    "at": 1700000000000,
}


def codec(schema: Any) -> avro.AvroCodec:
    return avro.compile_schema(json.dumps(schema))


def fastavro_read(schema: Any, data: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), fastavro.parse_schema(schema))


def fastavro_write(schema: Any, datum: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


def test_avro_writes_the_union_branch_the_client_named() -> None:
    data = codec(USER).encode(USER_JSON)
    assert data is not None
    # "score" is the 4th field; {"long": 5} must write branch 1, not branch 0 (int).
    without_logical = {**USER, "fields": [*USER["fields"][:-1], {"name": "at", "type": "long"}]}
    decoded = fastavro_read(without_logical, data)
    assert decoded == {
        "id": 7,
        "name": "Ann",
        "email": "ann@example.com",
        "score": 5,
        "raw": b"\xff\x00A",
        "tag": b"\x01\x02",
        "kind": "B",
        "ratio": pytest.approx(0.1),
        "attrs": {"x": True, "y": None},
        "friends": ["Bob"],
        "at": 1700000000000,
    }
    one_field = codec({"type": "record", "name": "R", "fields": [USER["fields"][3]]})
    assert one_field.encode({"score": {"long": 5}}) == b"\x02\x0a"  # branch 1, then 5
    assert one_field.encode({"score": {"int": 5}}) == b"\x00\x0a"
    assert one_field.encode({"score": {"double": 1.0}}) == b"\x04" + struct.pack("<d", 1.0)


def test_avro_payload_matches_fastavro_byte_for_byte() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": "int"},
            {"name": "b", "type": "string"},
            {"name": "c", "type": {"type": "array", "items": "double"}},
            {"name": "d", "type": {"type": "map", "values": "long"}},
            {"name": "e", "type": "boolean"},
        ],
    }
    value = {"a": -3, "b": "héllo", "c": [1.5, -2.0], "d": {"k": 2**40}, "e": True}
    assert codec(schema).encode(value) == fastavro_write(schema, value)


def test_avro_applies_defaults_and_accepts_aliases() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "a", "type": "int", "aliases": ["old_a"]},
            {"name": "b", "type": ["null", "string"], "default": None},
            {"name": "c", "type": ["string", "null"], "default": "x"},
            {"name": "d", "type": "bytes", "default": "\u00ff"},
        ],
    }
    data = codec(schema).encode({"old_a": 1})
    assert data is not None
    assert fastavro_read(schema, data) == {"a": 1, "b": None, "c": "x", "d": b"\xff"}


def test_avro_null_the_schema_allows_writes_no_bytes_at_all() -> None:
    # Confluent's serializer returns null for a null object: a tombstone, not an encoded null.
    assert codec(["null", "string"]).encode(None) is None
    assert codec("null").encode(None) is None


@pytest.mark.parametrize(
    ("schema", "value", "message"),
    [
        ("int", "1", "Expected int. Got VALUE_STRING"),
        ("int", 1.5, "Expected int. Got VALUE_NUMBER_FLOAT"),
        ("int", 2**31, "out of range of int"),
        ("long", True, "Expected long. Got VALUE_TRUE"),
        ("string", None, "Expected string. Got VALUE_NULL"),
        ("bytes", "\u0100", "ISO-8859-1"),
        (["null", "string"], "plain", "Expected start-union. Got VALUE_STRING"),
        (["null", "string"], {"int": 1}, "Unknown union branch int"),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "B", "Unknown symbol in enum E: B"),
        ({"type": "fixed", "name": "F", "size": 2}, "a", "Expected fixed length 2, but got 1"),
        (USER, {**USER_JSON, "extra": 1}, "Unknown fields: ['extra']"),
        (USER, {k: v for k, v in USER_JSON.items() if k != "name"}, "not found: name"),
        (USER, {**USER_JSON, "friends": ["a", 2]}, "(at friends[1])"),
        (USER, {**USER_JSON, "email": {"string": 5}}, "(at email.string)"),
    ],
)
def test_avro_data_that_does_not_fit_is_a_data_error(schema: Any, value: Any, message: str) -> None:
    with pytest.raises(DataError) as err:
        codec(schema).encode(value)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"type": "record", "name": "R"}',  # no fields
        '{"type": "nope"}',
        '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "Missing"}]}',
    ],
)
def test_avro_invalid_schema_text_is_a_schema_error(text: str) -> None:
    with pytest.raises(SchemaError):
        avro.compile_schema(text)


def test_avro_named_types_from_references() -> None:
    address = {
        "type": "record",
        "name": "Address",
        "namespace": "x",
        "fields": [{"name": "city", "type": "string"}],
    }
    person = {
        "type": "record",
        "name": "Person",
        "namespace": "x",
        "fields": [{"name": "home", "type": "x.Address"}],
    }
    c = avro.compile_schema(json.dumps(person), {"x.Address": json.dumps(address)})
    data = c.encode({"home": {"city": "Oslo"}})
    assert data == b"\x08Oslo"
    assert c.decode(data) == {"home": {"city": "Oslo"}}


# --- Avro: bytes -> JSON, as Confluent's AvroConverter shows it ---------------------------------


def test_avro_decode_is_the_avro_json_encoding() -> None:
    c = codec(USER)
    data = c.encode(USER_JSON)
    assert data is not None
    assert c.decode(data) == USER_JSON  # unions wrapped, bytes/fixed as ISO-8859-1 strings


def test_avro_decode_reads_bytes_written_by_an_independent_writer() -> None:
    record = {
        "type": "record",
        "name": "R",
        "namespace": "n",
        "fields": [
            {
                "name": "u",
                "type": [
                    "null",
                    "long",
                    {"type": "record", "name": "S", "fields": [{"name": "x", "type": "int"}]},
                ],
            },
            {"name": "v", "type": ["null", "n.S"]},
        ],
    }
    data = fastavro_write(record, {"u": ("n.S", {"x": 1}), "v": None})
    assert codec(record).decode(data) == {"u": {"n.S": {"x": 1}}, "v": None}


def test_avro_top_level_union_is_not_wrapped() -> None:
    # Confluent derives the output schema from the Java object, i.e. the branch written.
    c = codec(["null", "string", "long"])
    assert c.encode({"string": "hi"}) == b"\x02\x04hi"
    assert c.decode(b"\x02\x04hi") == "hi"
    assert c.decode(b"\x04\x0a") == 5
    assert c.decode(b"\x00") is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.1, 0.1), (1.0, 1.0), (3.4e38, 3.4e38), (float("nan"), "NaN"), (float("-inf"), "-Infinity")],
)
def test_avro_floats_print_as_java_prints_them(value: float, shown: Any) -> None:
    c = codec("float")
    assert c.decode(struct.pack("<f", value)) == shown


def test_avro_doubles_keep_their_digits_and_name_non_finite_values() -> None:
    c = codec("double")
    assert c.decode(struct.pack("<d", 0.1)) == 0.1
    assert c.decode(struct.pack("<d", float("inf"))) == "Infinity"
    assert c.encode("NaN") == struct.pack("<d", float("nan"))


def test_avro_primitive_top_levels() -> None:
    assert codec("string").encode("k") == b"\x02k"
    assert codec("string").decode(b"\x02k") == "k"
    assert codec("bytes").decode(b"\x04\x00\xff") == "\u0000\u00ff"
    assert codec("long").decode(b"\x01") == -1


@pytest.mark.parametrize(
    ("schema", "data"),
    [
        ("string", b"\x0aab"),  # says 5 bytes, has 2
        ("int", b"\xff\xff\xff\xff\x7f"),  # beyond 32 bits
        ({"type": "enum", "name": "E", "symbols": ["A"]}, b"\x02"),
        (["null", "int"], b"\x06"),
        ("long", b""),
    ],
)
def test_avro_unreadable_bytes_are_payload_errors(schema: Any, data: bytes) -> None:
    with pytest.raises(PayloadError):
        codec(schema).decode(data)
