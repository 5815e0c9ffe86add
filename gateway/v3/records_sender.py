"""Validated v3 records to Kafka, many at once, and each record's result object (reference 8.2).

Both produce endpoints hand over records in groups: the streaming one everything parsed while
the previous group was on its way, the batch one its whole batch. A group goes through v2's
sender (:func:`gateway.produce.sender.send_all`), which packs it into one record batch per
partition, so a stream of many small records costs about what one v2 request of them costs.

Kafka's verdicts become Confluent's in-stream codes: 40401 for a topic that never shows up
in metadata within ``producer.max.block.ms`` (no topic is created by producing: the shared
producer only asks about it), 40403 / 413 / 40101 / 40301 / 50002 / 50003 from the client's
errors. A partition the topic does not have is refused before sending with 40402, where
Confluent's producer would wait a minute for it and answer 40401.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from ..context import CONFIG
from ..kafka_pool import producer_of
from ..observability import traffic
from ..produce.sender import NotSent, ProducerGate, send_all
from .records_request import Record

Result = dict[str, Any]
_NOT_IN_METADATA = "not present in metadata"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request's records go, and what every result names."""

    app: web.Application
    gate: ProducerGate
    cluster_id: str
    topic: str
    max_block_ms: int


def target(request: web.Request, cluster_id: str, topic: str) -> Target:
    config = request.app[CONFIG]
    return Target(
        request.app, producer_of(request), cluster_id, topic, config.producer_max_block_ms
    )


def error(code: int, message: str) -> Result:
    # Confluent cuts messages at the first newline, so parser locations never leak.
    return {"error_code": code, "message": message.split("\n", 1)[0]}


async def produce(
    to: Target, records: Sequence[Record], handed: asyncio.Event | None = None
) -> list[Result]:
    """One result per record, in order: success objects or error objects.

    ``handed`` is set once the records are queued in the producer (or failed before): the
    caller's next records, produced after that, stay behind them in every partition.
    """
    try:
        return await _produce(to, records, handed)
    finally:
        if handed is not None:
            handed.set()


async def _produce(
    to: Target, records: Sequence[Record], handed: asyncio.Event | None
) -> list[Result]:
    try:
        producer, known = await to.gate.partitions(to.topic, to.max_block_ms)
    except NotSent as exc:
        code = 40401 if _NOT_IN_METADATA in exc.message else exc.error_code
        failed = error(code, exc.message)
        return [failed] * len(records)
    results: list[Result | None] = [None] * len(records)
    sending = []
    for i, record in enumerate(records):
        partition = record.partition
        if partition is not None and partition not in known:
            results[i] = error(
                40402,
                f"Partition not found: topic {to.topic} has partitions 0 to {len(known) - 1}, "
                f"not {partition}.",
            )
        else:
            sending.append(i)
    if sending:
        group = [records[i] for i in sending] if len(sending) < len(records) else records
        keys = [r.key for r in group]
        values = [r.value for r in group]
        offsets = await send_all(
            producer,
            to.topic,
            keys,
            values,
            [r.partition for r in group],
            known,
            to.gate.turns,
            [r.timestamp for r in group],
            [r.headers for r in group],
            handed,  # send_all's ``queued``
            limits=to.gate.limits,
        )
        traffic.produced(to.app, offsets, keys, values)
        for i, record, offset in zip(sending, group, offsets, strict=True):
            results[i] = _result(to, record, offset)
    return results  # type: ignore[return-value]  # every slot is filled above


def _result(to: Target, record: Record, offset: dict[str, Any]) -> Result:
    code = offset["error_code"]
    if code is not None:
        return error(_v3_code(code, offset["error"]), offset["error"])
    result: Result = {
        "error_code": 200,
        "cluster_id": to.cluster_id,
        "topic_name": to.topic,
        "partition_id": offset["partition"],
        "offset": offset["offset"],
    }
    stamp = offset.get("timestamp")
    if stamp is not None and stamp >= 0:
        result["timestamp"] = instant(stamp)
    if record.key_info is not None:
        result["key"] = _side(record.key_info, record.key)
    if record.value_info is not None:
        result["value"] = _side(record.value_info, record.value)
    return result


def _side(info: dict[str, Any], data: bytes | None) -> dict[str, Any]:
    return {**info, "size": -1 if data is None else len(data)}


def _v3_code(code: int, message: str) -> int:
    # send_all reports v2's codes; v3 names a few Kafka errors more precisely (reference 8.5).
    if "UnknownTopicOrPartition" in message:
        return 40403
    if "MessageSizeTooLarge" in message or message.startswith("The message is "):
        return 413
    return code


_second = [-1, ""]  # the last second formatted, and its text: records share their second


def instant(millis: int) -> str:
    """Java's ``Instant.toString()`` of epoch ms: UTC, ``Z``, millis only when not zero."""
    seconds, ms = divmod(millis, 1000)
    if seconds != _second[0]:
        _second[0], _second[1] = (
            seconds,
            datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        )
    text = _second[1]
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


def line(result: Result) -> bytes:
    """A result as the stream writes it: compact JSON and CRLF (Jersey's chunk delimiter)."""
    return orjson.dumps(result) + b"\r\n"
