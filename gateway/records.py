"""Kafka records -> v2 response elements, per embedded format (the consume path's formats).

Each decoder returns the element and its size for ``max_bytes`` accounting: the raw key + value
byte length, as Confluent counts it for binary and json.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from sessions.instance import DecodeError

Decoder = Callable[[ConsumerRecord], tuple[dict[str, Any], int]]


def _size(rec: ConsumerRecord) -> int:
    return (len(rec.key) if rec.key is not None else 0) + (
        len(rec.value) if rec.value is not None else 0
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def decode_binary(rec: ConsumerRecord) -> tuple[dict[str, Any], int]:
    return (
        {
            "topic": rec.topic,
            "key": _b64(rec.key),
            "value": _b64(rec.value),
            "partition": rec.partition,
            "offset": rec.offset,
        },
        _size(rec),
    )


def _json(data: bytes | None, what: str) -> Any:
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"{what} is not valid JSON ({exc})") from None


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
