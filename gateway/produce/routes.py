"""v2 produce: ``POST /topics/{topic}`` and ``POST /topics/{topic}/partitions/{partition}``.

The request's Content-Type names the embedded format of its keys and values; the answer is
``application/vnd.kafka.v2+json`` (``application/json`` to a client that asks for only that)
with one ``offsets`` entry per record. Client
mistakes are answered before anything is sent (see :mod:`.request`); Kafka's
verdicts come back per record with HTTP 200, as Confluent's do.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from ..body import read_json
from ..context import CONFIG
from ..errors import GatewayError, partition_not_found, unprocessable
from ..kafka_pool import producer_of
from ..media import EMBEDDED, PRODUCE_CONSUMES, V2_ONLY, check_content_type, respond_as
from ..observability import traffic
from ..paths import PARTITION, path_partition
from ..security.authz import authorizer
from ..topics import check_client_topics
from .encoding import encode
from .request import parse_produce_request
from .sender import NotSent, not_sent, response_status, send_all


def add_routes(app: web.Application) -> None:
    app.router.add_post("/topics/{topic}", produce_to_topic)
    app.router.add_post(f"/topics/{{topic}}/partitions/{PARTITION}", produce_to_partition)


async def produce_to_topic(request: web.Request) -> web.Response:
    return await _produce(request, None)


async def produce_to_partition(request: web.Request) -> web.Response:
    return await _produce(request, path_partition(request))


async def _produce(request: web.Request, path_partition: int | None) -> web.Response:
    # Jersey reads a body without a Content-Type (or octet-stream) and picks the method with
    # the highest weight among the produce methods: binary.
    embedded_format = EMBEDDED.get(check_content_type(request, PRODUCE_CONSUMES), "binary")
    ctype = respond_as(request, V2_ONLY)
    topic = request.match_info["topic"]
    # Before the body is even read: a refused request must not register schemas either.
    check_client_topics(request.app[CONFIG], [topic])
    authorizer(request).topics(request, "produce", [topic])
    body = parse_produce_request(await read_json(request))
    encoded = await encode(request.app, embedded_format, topic, body)
    if None in encoded.keys and None in encoded.values:
        _check_key_or_value(encoded.keys, encoded.values)
    partitions = body.partitions
    if path_partition is not None:
        # A record's own partition overrides the path's (Confluent's ProduceRecord rule).
        partitions = [path_partition if p is None else p for p in partitions]

    config = request.app[CONFIG]
    gate = producer_of(request)
    try:
        producer, known = await gate.partitions(topic, config.producer_max_block_ms)
    except NotSent as exc:
        offsets = not_sent(exc, len(body))
    else:
        _check_partitions(known, path_partition, partitions)
        offsets = await send_all(
            producer,
            topic,
            encoded.keys,
            encoded.values,
            partitions,
            known,
            gate.turns,
            limits=gate.limits,
        )
    traffic.produced(request.app, offsets, encoded.keys, encoded.values)

    payload = {
        "offsets": offsets,
        "key_schema_id": encoded.key_schema_id,
        "value_schema_id": encoded.value_schema_id,
    }
    return web.Response(
        status=response_status(offsets), body=orjson.dumps(payload), content_type=ctype
    )


def _check_key_or_value(keys: list[bytes | None], values: list[bytes | None]) -> None:
    # Kafka would take a record with neither, but aiokafka refuses it; saying so up front
    # keeps the request all-or-nothing instead of failing midway.
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        if key is None and value is None:
            raise unprocessable(f"Record {i} has neither a key nor a value.")


def _check_partitions(
    known: frozenset[int], path_partition: int | None, partitions: list[int | None]
) -> None:
    """Reject the whole request before sending when it names a partition that does not exist.

    Confluent lets Kafka's send throw here (500 / 50002, after earlier records were already
    sent); a 4xx before anything is written tells the client it is their mistake and that
    retrying the corrected request will not duplicate records.
    """
    if path_partition is not None and path_partition not in known:
        raise partition_not_found()
    for partition in partitions:
        if partition is not None and partition not in known:
            raise GatewayError(
                400,
                40002,
                f"Invalid partition given with record: {partition} is not in the range "
                f"[0...{len(known)}).",
            )
