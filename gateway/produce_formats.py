"""Embedded format -> how a produce request's keys and values become Kafka bytes.

The one place that knows which formats exist on the produce path. A schema format needs more
than a pure function (a registry lookup, the topic for the subject name, schema ids in the
response), so every encoder has the same async signature and adding avro / jsonschema /
protobuf means adding one entry to :data:`ENCODERS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import unprocessable
from .formats import binary, json
from .produce_request import ProduceRequest


@dataclass(frozen=True, slots=True)
class Encoded:
    keys: list[bytes | None]
    values: list[bytes | None]
    key_schema_id: int | None = None
    value_schema_id: int | None = None


Encoder = Callable[[web.Application, str, ProduceRequest], Awaitable[Encoded]]


def _plain(serialize: Callable[[Any], bytes | None]) -> Encoder:
    """A schema-less format: each key and value converted on its own; schema fields ignored."""

    async def encode(app: web.Application, topic: str, request: ProduceRequest) -> Encoded:
        return Encoded([serialize(k) for k in request.keys], [serialize(v) for v in request.values])

    return encode


async def _schema_not_supported(
    app: web.Application, topic: str, request: ProduceRequest
) -> Encoded:
    # 42206 is the code Confluent uses when schema formats cannot be served at all, so clients
    # already treat it as "this proxy cannot do schemas", not as a problem with their data.
    raise unprocessable("Payload error. Schema formats are not supported yet.", 42206)


ENCODERS: dict[str, Encoder] = {
    "binary": _plain(binary.serialize),
    "json": _plain(json.serialize),
    "avro": _schema_not_supported,
    "jsonschema": _schema_not_supported,
    "protobuf": _schema_not_supported,
}


async def encode(
    app: web.Application, embedded_format: str, topic: str, request: ProduceRequest
) -> Encoded:
    return await ENCODERS[embedded_format](app, topic, request)
