"""The embedded formats' byte rules: what a produce stores and what a consume shows."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from gateway.errors import GatewayError, to_gateway_error
from gateway.formats import binary, json
from gateway.formats.codec import DataError, PayloadError


def mapped(call: Callable[[Any], object], arg: Any) -> GatewayError:
    """The HTTP answer a format's failure becomes (formats raise their own error types)."""
    with pytest.raises((DataError, PayloadError)) as raised:
        call(arg)
    return to_gateway_error(raised.value)


# --- binary: decoding follows Confluent's (Guava's) base64 rules ------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", b""),
        ("QUJD", b"ABC"),
        ("QUI=", b"AB"),
        ("QUI", b"AB"),  # padding is optional
        ("QQ==", b"A"),
        ("QQ", b"A"),
        ("+/+/", b"\xfb\xff\xbf"),  # the standard alphabet's two extra characters
        ("AAECAwQ=", b"\x00\x01\x02\x03\x04"),
    ],
)
def test_binary_decodes_standard_base64_with_optional_padding(text: str, expected: bytes) -> None:
    assert binary.serialize(text) == expected


def test_binary_null_is_no_bytes_at_all() -> None:
    assert binary.serialize(None) is None
    assert binary.deserialize(None) is None


def test_binary_round_trips_every_byte_value() -> None:
    data = bytes(range(256))
    text = binary.deserialize(data)
    assert text == base64.b64encode(data).decode()
    assert "\n" not in text and text.endswith("=")  # one padded line, as Confluent writes it
    assert binary.serialize(text) == data
    assert binary.serialize(text.rstrip("=")) == data


@pytest.mark.parametrize(
    ("value", "shown"),
    [(5, "5"), (True, "true"), ({"a": 1}, '{"a":1}'), (["QQ=="], '["QQ=="]'), (1.5, "1.5")],
)
def test_binary_rejects_a_value_that_is_not_a_json_string(value: object, shown: str) -> None:
    err = mapped(binary.serialize, value)
    assert (err.status, err.error_code) == (400, 400)
    assert err.message == f"Bad Request: data={shown} is not a base64 string."


@pytest.mark.parametrize(
    "text",
    [
        "A-E=",  # URL-safe alphabet
        "a_b=",
        "QUJD\n",  # no line breaks
        "QU JD",  # no whitespace
        " QUJD",
        "QUJD\r\n",
        "Q",  # a length of 1 (mod 4) cannot be base64
        "QUJDR",
        "=QUJ",  # padding only at the end
        "QU=JD",
        "%%%",
        "QUJDé",
    ],
)
def test_binary_rejects_anything_guava_would(text: str) -> None:
    err = mapped(binary.serialize, text)
    assert (err.status, err.error_code) == (400, 400)
    quoted = json_text(text)
    assert err.message == f"Bad Request: data={quoted} is not a valid base64 string."


def test_binary_encodes_empty_bytes_as_empty_string() -> None:
    assert binary.deserialize(b"") == ""
    assert binary.serialize("") == b""


def json_text(value: str) -> str:
    return orjson.dumps(value).decode()


# --- json: compact UTF-8 JSON text, as Jackson writes it --------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("alice", b'"alice"'),
        ({"tickets": 5}, b'{"tickets":5}'),
        (53.5, b"53.5"),
        (10, b"10"),
        (True, b"true"),
        ([1, "a", None, {"b": [False]}], b'[1,"a",null,{"b":[false]}]'),
        ("caf\u00e9 \u2603", '"caf\u00e9 \u2603"'.encode()),  # raw UTF-8, not \\u escapes
        ("", b'""'),
    ],
)
def test_json_stores_compact_utf8_text(value: object, stored: bytes) -> None:
    assert json.serialize(value) == stored
    assert json.deserialize(stored) == value


def test_json_null_is_no_bytes_at_all() -> None:
    assert json.serialize(None) is None
    assert json.deserialize(None) is None


def test_json_reads_bytes_written_by_other_clients() -> None:
    assert json.deserialize(b' { "a" : [1, 2.5] } ') == {"a": [1, 2.5]}


def test_json_bytes_that_are_not_json_are_a_serializer_error() -> None:
    err = mapped(json.deserialize, b"\x00not json")
    assert (err.status, err.error_code) == (408, 40801)


def test_json_too_deep_to_answer_is_an_unreadable_record() -> None:
    """orjson writes at most 254 levels: a deeper stored value is a poison record (408),
    never a response that fails to serialize on every read."""
    err = mapped(json.deserialize, b"[" * 300 + b"]" * 300)
    assert (err.status, err.error_code) == (408, 40801)
    assert json.deserialize(b"[" * 254 + b"]" * 254) is not None  # the deepest it answers
    assert json.deserialize(b'"' + b"[" * 400 + b'"') == "[" * 400  # brackets in a string
