"""The gateway's producer is idempotent by default, and a rejected batch does not cost a partition.

Against the session's real broker. The failover half of idempotence (a retried batch after a
leader change is not written twice) needs several brokers: ``tests/cluster/test_kafka_failover.py``.

What is shown here is the other half, the one aiokafka gets wrong on its own: with idempotence
a batch the broker refuses (here a keyless record on a compacted topic, which Kafka rejects
as an invalid record) used to leave its sequence numbers used, and every later produce to that
partition from the replica then failed with OUT_OF_ORDER_SEQUENCE_NUMBER until a restart.
``sessions.kafka_internals.keep_sequences_dense`` hands the numbers back; both hand-over paths of the
sender are covered (a request's records as one whole batch, and record by record).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.context import PRODUCER
from gateway.kafka import DEFAULT_BATCH_SIZE
from tests.harness.api import MakeGatewayFn, NewTopicFn, ReadBackFn

BINARY = "application/vnd.kafka.binary.v2+json"
V2 = "application/vnd.kafka.v2+json"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def produce(
    client: TestClient[web.Request, web.Application], topic: str, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    async with client.post(
        f"/topics/{topic}",
        json={"records": records},
        headers={"Content-Type": BINARY, "Accept": V2},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        offsets: list[dict[str, Any]] = body["offsets"]
        return offsets


async def test_idempotent_by_default(make_gateway: MakeGatewayFn, new_topic: NewTopicFn) -> None:
    topic = await new_topic()
    client = await make_gateway()
    (offset,) = await produce(client, topic, [{"value": b64("one")}])
    assert offset["error_code"] is None, offset
    producer = await client.app[PRODUCER].producer()
    txn = producer._txn_manager  # aiokafka keeps the producer id here
    assert txn is not None and txn.has_pid() and txn.producer_id >= 0


async def test_idempotence_can_be_turned_off(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn
) -> None:
    topic = await new_topic()
    client = await make_gateway({"producer.enable.idempotence": "false"})
    (offset,) = await produce(client, topic, [{"value": b64("one")}])
    assert offset["error_code"] is None, offset
    producer = await client.app[PRODUCER].producer()
    assert producer._txn_manager is None


# Twelve records of WHOLE bytes fill over half of the producer's batch: handed over whole.
WHOLE = DEFAULT_BATCH_SIZE // 2 // 12 + 100


@pytest.mark.parametrize("size", [1, WHOLE], ids=["record-by-record", "whole-batch"])
async def test_a_rejected_batch_does_not_break_the_partition(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, read_back: ReadBackFn, size: int
) -> None:
    """``size``: value bytes per record. Twelve records of :data:`WHOLE` bytes fill over half
    of the producer's batch, so the sender hands them over as one batch; 1-byte records go one
    by one into the partition's open batch."""
    topic = await new_topic(configs={"cleanup.policy": "compact"})
    client = await make_gateway()

    def records(tag: str, keyed: bool) -> list[dict[str, Any]]:
        return [
            {**({"key": b64(f"{tag}{i}")} if keyed else {}), "value": b64(tag[0] * size)}
            for i in range(12)
        ]

    before = await produce(client, topic, records("a", keyed=True))
    assert [o["error_code"] for o in before] == [None] * 12, before
    rejected = await produce(client, topic, records("b", keyed=False))
    assert all(o["error_code"] is not None for o in rejected), rejected
    for round_ in ("c", "d"):
        after = await produce(client, topic, records(round_, keyed=True))
        assert [o["error_code"] for o in after] == [None] * 12, after  # was error 45
    got = await read_back(topic, 36)
    assert [r.key for r in got] == [f"{t}{i}".encode() for t in "acd" for i in range(12)]
