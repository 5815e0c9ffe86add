"""The ``include.metadata`` extension: v2 reads that also show headers and timestamps.

Off by default, so a v2 client sees exactly Confluent's element; an instance created with
``"include.metadata": true`` gets each record's headers (name, base64 value) and Kafka
timestamp. Records are written with an independent aiokafka producer (headers, explicit
timestamps), so what the gateway shows is checked against what Kafka stored.
"""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest

from tests.support.v2 import BINARY, JSON, V2

pytestmark = pytest.mark.asyncio

HEADERS = [("trace", b"\x00\x01\xff"), ("trace", b"second"), ("empty", b""), ("none", None)]
BASE_TS = 1_700_000_000_123


def group_name() -> str:
    return "g-" + uuid.uuid4().hex[:10]


async def produce(producer, topic: str, n: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        await producer.send_and_wait(
            topic,
            orjson.dumps({"i": i}),
            key=b'"k%d"' % i,
            partition=0,
            headers=HEADERS if i % 2 == 0 else [],
            timestamp_ms=BASE_TS + i,
        )


@pytest.mark.parametrize(("fmt", "accept"), [("binary", BINARY), ("json", JSON)])
async def test_opted_in_reads_show_headers_and_timestamp(fmt, accept, gateway, new_topic, producer):  # type: ignore[no-untyped-def]
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    n = 50
    await produce(producer, topic, n)
    group = group_name()
    cfg = {"auto.offset.reset": "earliest", "include.metadata": True}
    status, _ = await api.create(group, name="m", format=fmt, **cfg)
    assert status == 200
    assert await api.subscribe(group, "m", [topic]) == 204
    # Small reads too, so prefilled and partly consumed buffers are covered.
    records = await api.drain(group, "m", 10, accept, max_bytes=40)
    records += await api.drain(group, "m", n - len(records), accept, timeout=2000)
    assert [r["offset"] for r in records] == list(range(n))
    for r in records:
        i = r["offset"]
        assert list(r) == [
            "topic", "key", "value", "partition", "offset",
            "headers", "timestamp", "timestamp_type",
        ]  # fmt: skip
        assert r["timestamp"] == BASE_TS + i
        assert r["timestamp_type"] == "CREATE_TIME"
        expected = [
            {"name": k, "value": None if v is None else base64.b64encode(v).decode()}
            for k, v in (HEADERS if i % 2 == 0 else [])
        ]
        assert r["headers"] == expected
        if fmt == "json":
            assert r["value"] == {"i": i}
        else:
            assert base64.b64decode(r["value"]) == orjson.dumps({"i": i})
    assert await api.delete(group, "m") == 204


async def test_default_reads_keep_confluents_element(gateway, new_topic, producer):  # type: ignore[no-untyped-def]
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    await produce(producer, topic, 4)
    group = group_name()
    status, _ = await api.create(group, name="d", **{"auto.offset.reset": "earliest"})
    assert status == 200
    assert await api.subscribe(group, "d", [topic]) == 204
    records = await api.drain(group, "d", 4, BINARY, timeout=2000)
    assert len(records) == 4
    assert all(list(r) == ["topic", "key", "value", "partition", "offset"] for r in records)
    assert await api.delete(group, "d") == 204


async def test_bad_include_metadata_is_422(gateway):  # type: ignore[no-untyped-def]
    api = V2(gateway)
    status, body = await api.create(group_name(), **{"include.metadata": "maybe"})
    assert status == 422
    assert body["error_code"] == 42204
    assert "include.metadata" in body["message"]
