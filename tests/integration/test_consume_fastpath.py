"""The consume fast path against real Kafka: same bytes on the wire, same positions.

binary and json reads decode whole partition batches and prefill the instance's buffer between
reads (sessions/instance.py). What a client sees must not change: each element is exactly the
compact JSON of Confluent's ``{"topic","key","value","partition","offset"}``, and prefilled
records follow seeks, small ``max_bytes`` reads and commits like any buffered record.
Records are written with an independent aiokafka producer; committed offsets are read with
an independent admin client.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import orjson
import pytest

from tests.support.kafka import committed_offsets
from tests.support.v2 import BINARY, V2, V2_JSON

pytestmark = pytest.mark.asyncio

JSON_V2 = "application/vnd.kafka.json.v2+json"


def group_name() -> str:
    return "g-" + uuid.uuid4().hex[:10]


async def raw_read(api: V2, group: str, name: str, accept: str, **params: Any) -> bytes:
    async with api.http.get(
        api.inst(group, name) + "/records", headers={"Accept": accept}, params=params or None
    ) as resp:
        body = await resp.read()
        assert resp.status == 200, body
        return body


async def read_all(
    api: V2, group: str, name: str, accept: str, want: int, **params: Any
) -> list[bytes]:
    """Raw response bodies until ``want`` records came back (bounded number of reads)."""
    bodies: list[bytes] = []
    count = 0
    for _ in range(200):
        body = await raw_read(api, group, name, accept, **params)
        bodies.append(body)
        count += len(orjson.loads(body))
        if count >= want:
            break
    return bodies


def same_as_compact_json(body: bytes) -> list[dict[str, Any]]:
    """The body parsed, after checking its bytes are orjson's compact form of what it says
    (field order included): what the dict-per-record path used to write."""
    parsed = orjson.loads(body)
    assert body == b"[" + b",".join(orjson.dumps(e) for e in parsed) + b"]"
    for element in parsed:
        assert list(element) == ["topic", "key", "value", "partition", "offset"]
    return parsed


BINARY_RECORDS = [
    (None, b"v"),
    (b"k", None),
    (None, b""),
    (b"", b"\x00\xff"),
    ("clé".encode(), "värde ✓ 🙂".encode()),
    (b"%s%d", b"%(x)s"),
]
JSON_RECORDS = [
    (None, b'{"a":1}'),
    (b'"k"', None),
    (None, b""),  # read as null
    (b'"cl\xc3\xa9"', '{"värde":"✓ 🙂","n":[1,2.5,null,true]}'.encode()),
    (b"1", b'"%s%d%%"'),
]


@pytest.mark.parametrize("fmt", ["binary", "json"])
async def test_tricky_records_read_byte_identical(fmt, gateway, new_topic, producer):
    api = V2(gateway)
    topic = await new_topic(partitions=2)
    pairs = BINARY_RECORDS if fmt == "binary" else JSON_RECORDS
    for key, value in pairs:
        for partition in (0, 1):
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    total = 2 * len(pairs)
    group = group_name()
    status, _ = await api.create(
        group, name="c", format=fmt, **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1}
    )
    assert status == 200
    assert await api.subscribe(group, "c", [topic]) == 204
    accept = BINARY if fmt == "binary" else JSON_V2
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for body in await read_all(api, group, "c", accept, total, timeout=2000):
        for element in same_as_compact_json(body):
            seen[(element["partition"], element["offset"])] = element
    assert sorted(seen) == [(p, o) for p in (0, 1) for o in range(len(pairs))]
    for (partition, offset), element in seen.items():
        key, value = pairs[offset]
        if fmt == "binary":
            expected = [None if d is None else base64.b64encode(d).decode() for d in (key, value)]
        else:
            expected = [orjson.loads(d) if d else None for d in (key, value)]
        assert [element["key"], element["value"]] == expected
        assert (element["topic"], element["partition"]) == (topic, partition)
    assert await api.delete(group, "c") == 204


async def test_json_reader_sees_stored_values(gateway, new_topic, producer):
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    values: list[Any] = [{"a": 1}, "clé ✓", None, [1, 2.5, None, True], 2**63 - 1, {}]
    for i, value in enumerate(values):
        await producer.send_and_wait(
            topic, None if value is None else orjson.dumps(value), key=orjson.dumps(f"k{i}")
        )
    group = group_name()
    status, _ = await api.create(
        group, name="c", format="json", **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1}
    )
    assert status == 200
    assert await api.subscribe(group, "c", [topic]) == 204
    got: list[dict[str, Any]] = []
    for body in await read_all(api, group, "c", JSON_V2, len(values), timeout=2000):
        got.extend(same_as_compact_json(body))
    assert [e["value"] for e in got] == values
    assert [e["key"] for e in got] == [f"k{i}" for i in range(len(values))]
    assert [e["offset"] for e in got] == list(range(len(values)))


async def test_prefilled_records_follow_small_reads_seeks_and_commits(
    gateway, new_topic, producer, kafka_bootstrap
):
    """Small max_bytes reads leave most of a fetch buffered (and prefilled); a seek drops
    it, the empty-body commit commits only what was returned, and every offset comes back
    exactly once, in order."""
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    n = 3000
    batch = producer.create_batch()
    for i in range(n):
        if batch.append(key=None, value=b"%06d" % i, timestamp=None) is None:  # full
            await (await producer.send_batch(batch, topic, partition=0))
            batch = producer.create_batch()
            assert batch.append(key=None, value=b"%06d" % i, timestamp=None) is not None
    await (await producer.send_batch(batch, topic, partition=0))
    group = group_name()
    status, _ = await api.create(
        group,
        name="c",
        **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1, "auto.commit.enable": "false"},
    )
    assert status == 200
    status, _, _ = await api.call(
        "POST",
        api.inst(group, "c") + "/assignments",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 204

    first = orjson.loads(await raw_read(api, group, "c", BINARY, max_bytes=60, timeout=2000))
    assert [e["offset"] for e in first] == list(range(10))
    await asyncio.sleep(0.2)  # the instance prefills meanwhile

    status, body, _ = await api.call("POST", api.inst(group, "c") + "/offsets")
    assert (status, body) == (200, [])
    assert (await committed_offsets(kafka_bootstrap, group)).get((topic, 0)) == 10

    status, _, _ = await api.call(
        "POST",
        api.inst(group, "c") + "/positions",
        {"offsets": [{"topic": topic, "partition": 0, "offset": 5}]},
        ctype=V2_JSON,
    )
    assert status == 204
    offsets: list[int] = []
    reads = 0
    while len(offsets) < n - 5 and reads < 400:
        body = await raw_read(api, group, "c", BINARY, max_bytes=6000, timeout=2000)
        reads += 1
        elements = orjson.loads(body)
        assert sum(len(base64.b64decode(e["value"])) for e in elements) <= 6000
        offsets.extend(e["offset"] for e in elements)
        await asyncio.sleep(0)
    assert offsets == list(range(5, n))
    values = orjson.loads(await raw_read(api, group, "c", BINARY, timeout=300))
    assert values == []
    status, _, _ = await api.call("POST", api.inst(group, "c") + "/offsets")
    assert status == 200
    assert (await committed_offsets(kafka_bootstrap, group)).get((topic, 0)) == n


async def test_an_instance_consumer_hands_out_lean_records(kafka_bootstrap, new_topic, producer):
    """What every read above ran on: the instance's consumer unpacks fetched records as
    LeanRecord (aiokafka's ConsumerRecord construction was the largest cost of a read), with
    aiokafka's values, also once the consumer was replaced (as a manual assignment after a
    subscription, or a healed fetcher, does)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from sessions.fetched import LeanRecord
    from sessions.instance import ConsumerInstance, InstanceSpec

    topic = await new_topic(partitions=1)
    tp = TopicPartition(topic, 0)
    await producer.send_and_wait(topic, b"v0", key=b"k", partition=0, headers=[("h", b"1")])
    await producer.send_and_wait(topic, None, key=b"gone", partition=0, timestamp_ms=1234)
    reference = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await reference.start()
    try:
        reference.assign([tp])
        await reference.seek_to_beginning(tp)
        want = (await reference.getmany(tp, timeout_ms=10_000))[tp]
    finally:
        await reference.stop()
    assert len(want) == 2

    inst = ConsumerInstance(
        InstanceSpec(group=group_name(), name="i", auto_offset_reset="earliest"),
        bootstrap_servers=kafka_bootstrap,
        kafka_settings={},
        instance_timeout_ms=60_000,
        kafka_timeout_ms=10_000,
    )
    await inst.start()
    try:
        for replaced in (False, True):
            if replaced:
                await inst._replace_consumer()
            consumer = inst._consumer
            consumer.assign([tp])
            consumer.seek(tp, 0)
            got = (await consumer.getmany(tp, timeout_ms=10_000))[tp]
            assert [type(r) for r in got] == [LeanRecord, LeanRecord]
            assert [
                (r.topic, r.partition, r.offset, r.timestamp, r.timestamp_type, r.key, r.value)
                for r in got
            ] == [
                (r.topic, r.partition, r.offset, r.timestamp, r.timestamp_type, r.key, r.value)
                for r in want
            ]
            assert [tuple(r.headers) for r in got] == [tuple(r.headers) for r in want]
            assert got[1].timestamp == 1234 and got[1].value is None
    finally:
        await inst.stop(commit=False)


async def test_prefill_follows_the_fetches_until_the_next_read(
    kafka_bootstrap, new_topic, producer
):
    """A read drains what aiokafka holds; the prefill then takes aiokafka's following fetches
    as they arrive (waiting for them without holding the instance), so the next read of a
    polling client finds its records decoded instead of waiting on Kafka. Small fetches
    (1 KiB a partition) make that many fetches; the records are then read exactly once."""
    from aiokafka import TopicPartition

    from gateway.consume.decoding import DECODERS
    from sessions.instance import ConsumerInstance, InstanceSpec, ReadLimits

    topic = await new_topic(partitions=1)
    tp = TopicPartition(topic, 0)
    n = 6000
    batch = producer.create_batch()
    for i in range(n):
        if batch.append(key=None, value=b"%06d" % i, timestamp=None) is None:
            await (await producer.send_batch(batch, topic, partition=0))
            batch = producer.create_batch()
            assert batch.append(key=None, value=b"%06d" % i, timestamp=None) is not None
    await (await producer.send_batch(batch, topic, partition=0))

    inst = ConsumerInstance(
        InstanceSpec(group=group_name(), name="i", auto_offset_reset="earliest"),
        bootstrap_servers=kafka_bootstrap,
        kafka_settings={"max_partition_fetch_bytes": 1024},
        instance_timeout_ms=60_000,
        kafka_timeout_ms=10_000,
    )
    await inst.start()
    try:
        await inst.assign([tp])
        decode = DECODERS["binary"]
        # A small first read (600 bytes: 100 records), so that most records are still in
        # Kafka or in aiokafka's hands when it ends, however fast this machine fetches.
        small = ReadLimits(wait_ms=5000, max_bytes=600, min_bytes=1)
        async with inst.read(small, decode) as out:
            first = [orjson.loads(e)["offset"] for e in out]
        assert first == list(range(100))
        # The rest arrives in many small fetches after that read; the prefill takes them all.
        async with asyncio.timeout(10):
            while sum(len(c.records) - c.pos for c in inst._buffer) < n - len(first):  # noqa: ASYNC110 (polls another task's state)
                await asyncio.sleep(0.05)
        limits = ReadLimits(wait_ms=5000, max_bytes=64 * 1024 * 1024, min_bytes=1)
        async with inst.read(limits, decode) as out:
            rest = [orjson.loads(e)["offset"] for e in out]
        assert first + rest == list(range(n))
    finally:
        await inst.stop(commit=False)
