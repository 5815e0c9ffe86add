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
