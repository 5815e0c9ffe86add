"""v3 produce against a real broker (reference 8, 10): streaming records, records:batch, limits.

Every stored record is read back with an independent aiokafka consumer; every result line is
checked against what Kafka holds at the offset it names.
"""

from __future__ import annotations

import asyncio
import base64
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness.api import MakeGatewayFn, NewTopicFn, ReadBackFn
from tests.harness.ports import free_port
from tests.integration.test_produce import java_murmur2

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}
NO_REGISTRY = "Error: 42206 : Payload error. Schema Registry must be configured when using schemas."


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def java_instant(millis: int) -> str:
    """Java's Instant.toString() of epoch ms, written independently of the gateway."""
    moment = datetime.fromtimestamp(millis / 1000, UTC).replace(microsecond=0)
    text = moment.isoformat().removesuffix("+00:00")
    return f"{text}.{millis % 1000:03d}Z" if millis % 1000 else f"{text}Z"


@pytest.fixture
async def cid(kafka_admin: AIOKafkaAdminClient) -> str:
    return str((await kafka_admin.describe_cluster())["cluster_id"])


def records_path(cid: str, topic: str) -> str:
    return f"/v3/clusters/{cid}/topics/{topic}/records"


async def stream(
    client: Client, cid: str, topic: str, body: bytes | str, headers: dict[str, str] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """POST a whole body; the status and the result objects (each line must end in CRLF)."""
    resp = await client.post(records_path(cid, topic), data=body, headers=headers or JSON)
    raw = await asyncio.wait_for(resp.read(), 60)
    if resp.status != 200:
        return resp.status, [orjson.loads(raw)]
    assert resp.content_type == "application/json"
    assert raw.endswith(b"\r\n") or not raw
    return 200, [orjson.loads(part) for part in raw.split(b"\r\n")[:-1]]


async def next_offset(client: Client, cid: str, topic: str, partition: int = 0) -> int:
    """The offset a new record gets: how many records the partition holds (fresh topics)."""
    sentinel = {"partition_id": partition, "value": {"type": "STRING", "data": "sentinel"}}
    status, [result] = await stream(client, cid, topic, concat([sentinel]))
    assert (status, result["error_code"]) == (200, 200), result
    return int(result["offset"])


def concat(objects: Iterable[Any], sep: str = "") -> str:
    return sep.join(orjson.dumps(o).decode() for o in objects)


# --- the 100k stream, read back byte-exact ---------------------------------------------------


def _record(i: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """Record i as JSON text, and what Kafka must hold for it."""
    kind = i % 4
    obj: dict[str, Any] = {}
    want: dict[str, Any] = {"key": None, "value": None, "headers": (), "ts": None, "part": None}
    ts_text = ""
    if kind == 0:  # keyed STRING key, BINARY value, repeated header names, ISO timestamp
        key = f"k{i % 97}"
        value = rng.randbytes(rng.randrange(0, 60))
        ms = 1_700_000_000_000 + i * 7 - (i * 7) % 1000 * (i % 3 == 0)  # some whole seconds
        moment = datetime.fromtimestamp(ms / 1000, UTC)
        obj = {
            "key": {"type": "STRING", "data": key},
            "value": {"type": "BINARY", "data": b64(value)},
            "headers": [
                {"name": "trace", "value": b64(i.to_bytes(4, "big"))},
                {"name": "empty", "value": None},
                {"name": "trace", "value": b64(b"second")},
            ],
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        want.update(
            key=key.encode(),
            value=value,
            headers=(("trace", i.to_bytes(4, "big")), ("trace", b"second"), ("empty", None)),
            ts=ms,
            keyed=True,
        )
    elif kind == 1:  # explicit partition, JSON value, timestamp as epoch seconds (a number)
        ms = 1_600_000_000_000 + i
        obj = {"partition_id": i % 3, "value": {"type": "JSON", "data": {"i": i, "s": "é✓"}}}
        ts_text = f',"timestamp":{ms // 1000}.{ms % 1000:03d}'
        want.update(value=orjson.dumps({"i": i, "s": "é✓"}), ts=ms, part=i % 3)
    elif kind == 2:  # keyless STRING, no timestamp (the gateway's clock), a non-ASCII header
        obj = {
            "value": {"type": "STRING", "data": f"värde {i} 🙂"},
            "headers": [{"name": "ñame", "value": b64(b"\x00\xff")}],
        }
        want.update(value=f"värde {i} 🙂".encode(), headers=(("ñame", b"\x00\xff"),))
    else:  # BINARY key, tombstone value
        key_bytes = rng.randbytes(8)
        obj = {"key": {"type": "BINARY", "data": b64(key_bytes)}, "value": {"type": "JSON"}}
        want.update(key=key_bytes, keyed=True)
    text = orjson.dumps(obj).decode()
    if ts_text:
        text = text[:-1] + ts_text + "}"
    return text, want


async def test_stream_of_100k_records_round_trips_byte_exact(
    gateway: Client, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    n = 100_000
    topic = await new_topic(partitions=3)
    rng = random.Random(7)
    texts, wants = zip(*(_record(i, rng) for i in range(n)), strict=True)
    # Whitespace varies between objects; chunks cut objects (and UTF-8 characters) anywhere.
    body = "".join(t + ("\n" if i % 3 else "") for i, t in enumerate(texts)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        step = 65_537
        for start in range(0, len(body), step):
            yield body[start : start + step]

    started = time.time_ns() // 1_000_000
    resp = await gateway.post(records_path(cid, topic), data=chunks(), headers=JSON)
    assert resp.status == 200
    lines = [line async for line in resp.content]
    finished = time.time_ns() // 1_000_000
    assert all(line.endswith(b"\r\n") for line in lines)
    results = [orjson.loads(line) for line in lines]
    assert len(results) == n

    stored = await read_back(topic, n, timeout=60)
    assert len(stored) == n
    at = {(r.partition, r.offset): r for r in stored}
    seen: set[tuple[int, int]] = set()
    last_offset: dict[int, int] = {}
    partition_of_key: dict[bytes, int] = {}
    for i, (result, want) in enumerate(zip(results, wants, strict=True)):
        assert result["error_code"] == 200, (i, result)
        assert (result["cluster_id"], result["topic_name"]) == (cid, topic)
        where = (result["partition_id"], result["offset"])
        assert where not in seen
        seen.add(where)
        record = at[where]
        assert record.key == want["key"], i
        assert record.value == want["value"], i
        assert tuple(record.headers) == want["headers"], i
        if want["ts"] is not None:
            assert record.timestamp == want["ts"], i
        else:
            assert started <= record.timestamp <= finished, i
        assert result["timestamp"] == java_instant(record.timestamp), i
        if want["part"] is not None:
            assert record.partition == want["part"]
        if want.get("keyed"):
            assert record.partition == (java_murmur2(record.key) & 0x7FFFFFFF) % 3, i
            assert partition_of_key.setdefault(record.key, record.partition) == record.partition
        # A partition's records keep input order.
        assert record.offset > last_offset.get(record.partition, -1)
        last_offset[record.partition] = record.offset
        sizes = {
            k: -1 if v is None else len(v)
            for k, v in (("key", want["key"]), ("value", want["value"]))
        }
        if "key" in result:
            assert result["key"]["size"] == sizes["key"]
        assert result["value"]["size"] == sizes["value"]
    assert len(seen) == n


# --- full duplex -----------------------------------------------------------------------------


async def test_full_duplex_each_result_arrives_before_the_next_record_is_sent(
    gateway: Client, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    answered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(5):
            sent.append(i)
            yield orjson.dumps({"value": {"type": "STRING", "data": f"r{i}"}})
            # The next record only once this one's result has been read off the response.
            result = await asyncio.wait_for(answered.get(), 30)
            assert result["offset"] == i

    resp = await gateway.post(records_path(cid, topic), data=body(), headers=JSON)
    assert resp.status == 200
    for i in range(5):
        line = await asyncio.wait_for(resp.content.readline(), 30)
        result = orjson.loads(line)
        assert sent == list(range(i + 1))  # nothing after record i was sent yet
        assert (result["error_code"], result["offset"]) == (200, i)
        answered.put_nowait(result)
    assert await asyncio.wait_for(resp.content.read(), 30) == b""
    assert [r.value for r in await read_back(topic, 5)] == [f"r{i}".encode() for i in range(5)]


async def test_content_length_body_with_two_objects_and_no_whitespace(
    gateway: Client, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    """The README curl example: objects back to back, sent with Content-Length."""
    topic = await new_topic()
    body = '{"value":{"type":"JSON","data":"ONE"}}{"value":{"type":"JSON","data":"TWO"}}'
    status, results = await stream(gateway, cid, topic, body)
    assert status == 200
    assert [(r["error_code"], r["partition_id"], r["offset"]) for r in results] == [
        (200, 0, 0),
        (200, 0, 1),
    ]
    assert results[0]["value"] == {"type": "JSON", "size": 5}
    assert "key" not in results[0]
    assert [r.value for r in await read_back(topic, 2)] == [b'"ONE"', b'"TWO"']


async def test_log_append_time_topic_reports_the_brokers_time(
    gateway: Client, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic(configs={"message.timestamp.type": "LogAppendTime"})
    body = concat(
        {"value": {"type": "STRING", "data": str(i)}, "timestamp": "2001-01-01T00:00:00Z"}
        for i in range(3)
    )
    _status, results = await stream(gateway, cid, topic, body)
    stored = await read_back(topic, 3)
    assert [r["timestamp"] for r in results] == [java_instant(r.timestamp) for r in stored]
    assert all(r.timestamp > 1_700_000_000_000 for r in stored)


# --- whole-request failures (before streaming) -----------------------------------------------


async def test_request_level_failures(gateway: Client, cid: str, new_topic: NewTopicFn) -> None:
    topic = await new_topic()
    path = records_path(cid, topic)
    one = '{"value":{"type":"STRING","data":"x"}}'

    resp = await gateway.post(path, data=one, headers={"Content-Type": "text/plain"})
    assert (resp.status, await resp.json()) == (
        415,
        {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"},
    )
    empty = {
        "error_code": 42206,
        "message": "Payload error. Request body is empty. Data is required.",
    }
    for body in (b"", b"  \r\n "):
        resp = await gateway.post(path, data=body, headers=JSON)
        assert (resp.status, await resp.json()) == (422, empty)

    async def nothing() -> AsyncIterator[bytes]:
        yield b" "

    resp = await gateway.post(path, data=nothing(), headers=JSON)
    assert (resp.status, await resp.json()) == (422, empty)

    resp = await gateway.post(
        path, data=one, headers={"Content-Type": "application/json; charset=UTF-16"}
    )
    assert resp.status == 400
    assert (await resp.json())["message"].startswith("Unsupported charset in Content-Type header")

    resp = await gateway.post(records_path("not-this-one", topic), data=one, headers=JSON)
    assert (resp.status, await resp.json()) == (
        404,
        {"error_code": 404, "message": "Cluster not-this-one cannot be found."},
    )
    resp = await gateway.post(records_path(cid, "__consumer_offsets"), data=one, headers=JSON)
    assert resp.status == 403
    assert (await resp.json())["error_code"] == 40301


async def test_latin1_charset_is_read_as_latin1(
    gateway: Client, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    body = '{"value":{"type":"STRING","data":"caf\u00e9"}}'.encode("latin-1")
    _status, results = await stream(
        gateway, cid, topic, body, {"Content-Type": "application/json; charset=ISO-8859-1"}
    )
    assert [r["error_code"] for r in results] == [200]
    assert [r.value for r in await read_back(topic, 1)] == ["café".encode()]


# --- per-record errors -----------------------------------------------------------------------

BAD_RECORDS: list[tuple[Any, int, str]] = [
    ({"partition_id": -1}, 40402, "Partition not found."),
    ({"partition_id": 3}, 40402, "Partition not found: topic {t} has partitions 0 to 0, not 3."),
    (
        {"partition_id": "A"},
        400,
        "Bad Request: Cannot deserialize value of type `int` from \"A\" for field 'partition_id'",
    ),
    ({"value": {"type": "BINARY", "data": 1}}, 400, "Bad Request: data=1 is not a base64 string."),
    (
        {"value": {"type": "BINARY", "data": "fooba"}},
        400,
        'Bad Request: data="fooba" is not a valid base64 string.',
    ),
    ({"value": {"type": "STRING", "data": 1}}, 400, "Bad Request: data=1 is not a string."),
    ({"value": {"type": "binary", "data": "AA=="}}, 400, None),
    (
        {"value": {"type": "STRING", "data": "x", "schema_id": 1}},
        400,
        "Bad Request: type=STRING cannot be combined with schema_id.",
    ),
    (
        {"value": {"type": "JSON", "data": 1, "subject": "s"}},
        400,
        "Bad Request: type=JSON cannot be combined with subject.",
    ),
    (
        {"value": {"type": "AVRO", "data": 1}},
        400,
        "Bad Request: type=AVRO needs schema (the raw schema text), or omit type.",
    ),
    ({"value": {"type": "AVRO", "schema_id": 1}}, 400, None),
    (
        {"value": {"data": 1, "schema_id": 1, "schema_version": 1}},
        400,
        "Bad Request: Only one of schema_id or schema_version can be used.",
    ),
    ({"value": {"data": "x"}}, 422, NO_REGISTRY),
    ({"value": {"type": "AVRO", "schema": '"string"', "data": "x"}}, 422, NO_REGISTRY),
    ({"key": {"schema_id": 5, "data": 1}}, 422, NO_REGISTRY),
    ({"records": []}, 400, None),
    ({"value": {"type": "STRING", "data": "x", "extra": 1}}, 400, None),
    (
        {"headers": [{"name": "h", "value": "%%%"}]},
        400,
        'Bad Request: header h: data="%%%" is not a valid base64 string.',
    ),
    ({"headers": [{"name": 1, "value": None}]}, 400, "Bad Request: header name=1 is not a string."),
    ({"headers": {"name": "h"}}, 400, None),
    ({"timestamp": "yesterday"}, 400, None),
    ({"timestamp": "2024-05-01T10:00:00"}, 400, None),
    ({"timestamp": 1_714_557_600_123}, 400, None),
    (
        {"timestamp": "1960-01-01T00:00:00Z"},
        400,
        "Bad Request: Invalid timestamp: -315619200000. Timestamp should always be non-negative or null.",
    ),
    ([{"value": {"type": "STRING", "data": "x"}}], 400, None),
    ("text", 400, None),
]


async def test_each_bad_record_gets_its_own_error_and_the_stream_goes_on(
    make_gateway: MakeGatewayFn, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    client = await make_gateway({"schema.registry.url": ""})
    topic = await new_topic()
    good = {"value": {"type": "STRING", "data": "good"}}
    objects: list[Any] = []
    for bad, _, _ in BAD_RECORDS:
        objects += [bad, good]
    status, results = await stream(client, cid, topic, concat(objects, " "))
    assert status == 200
    assert len(results) == 2 * len(BAD_RECORDS)
    for n, (bad, code, message) in enumerate(BAD_RECORDS):
        result, after = results[2 * n], results[2 * n + 1]
        assert result["error_code"] == code, (bad, result)
        assert set(result) == {"error_code", "message"}
        if message is not None:
            assert result["message"] == message.format(t=topic), bad
        assert "\n" not in result["message"]
        assert (after["error_code"], after["offset"]) == (200, n)
    # The good records hold offsets 0..n-1 and the last object was good: nothing else is there.
    stored = await read_back(topic, len(BAD_RECORDS))
    assert [r.value for r in stored] == [b"good"] * len(BAD_RECORDS)


async def test_malformed_json_ends_the_stream(
    gateway: Client, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    body = '{"value":{"type":"STRING","data":"a"}}\n{"value": nope}\n{"value":{"type":"STRING","data":"b"}}'
    status, results = await stream(gateway, cid, topic, body)
    assert status == 200
    assert results[0]["error_code"] == 200
    assert results[1] == {
        "error_code": 400,
        "message": "Bad Request: Error processing JSON: Expecting value",
    }
    assert len(results) == 2
    assert await next_offset(gateway, cid, topic) == 1  # "b" was never produced


async def test_an_object_over_the_size_limit_ends_the_stream(
    make_gateway: MakeGatewayFn, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    client = await make_gateway({"api.v3.produce.request.size.limit.max.bytes": "1000"})
    topic = await new_topic()
    small = {"value": {"type": "STRING", "data": "s"}}
    big = {"value": {"type": "STRING", "data": "x" * 2000}}
    status, results = await stream(client, cid, topic, concat([small, big, small]))
    assert status == 200
    assert results == [
        results[0],
        {
            "error_code": 400,
            "message": "Bad Request: Error processing message: Produce request size is larger "
            "than allowed threshold",
        },
    ]
    assert results[0]["error_code"] == 200
    assert await next_offset(client, cid, topic) == 1


async def test_unknown_topic_is_a_per_record_40401_and_is_not_created(
    make_gateway: MakeGatewayFn, cid: str, kafka_admin: AIOKafkaAdminClient
) -> None:
    client = await make_gateway({"producer.max.block.ms": "1000"})
    topic = "missing-" + uuid.uuid4().hex[:10]
    status, results = await stream(
        client, cid, topic, concat([{"value": {"type": "STRING", "data": "x"}}] * 3)
    )
    assert status == 200
    failed = {
        "error_code": 40401,
        "message": f"Topic {topic} not present in metadata after 1000 ms.",
    }
    assert results == [failed] * 3
    assert topic not in await kafka_admin.list_topics()


async def test_unreachable_kafka(make_gateway: MakeGatewayFn, cid: str) -> None:
    client = await make_gateway(
        {
            "bootstrap.servers": f"127.0.0.1:{free_port()}",
            "producer.max.block.ms": "1000",
            "kafka.timeout.ms": "1000",
        }
    )
    one = concat([{"value": {"type": "STRING", "data": "x"}}] * 2)
    # The cluster id cannot even be learned: the whole request is a 503 to retry.
    started = time.monotonic()
    resp = await client.post(records_path(cid, "t"), data=one, headers=JSON)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error_code"] == 50003
    # Kafka gone after the id was learned: each record fails in-stream, within the bound.
    from gateway.v3 import cluster

    client.app[cluster._CLUSTER_ID]["id"] = cid  # what an earlier request would have kept
    status, results = await stream(client, cid, "t", one)
    assert status == 200
    assert [r["error_code"] for r in results] == [50003, 50003]
    assert all(r["message"] for r in results)
    assert time.monotonic() - started < 10


# --- rate limit and stream age ---------------------------------------------------------------


async def test_produce_rate_limit_answers_429_per_record(
    make_gateway: MakeGatewayFn, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    client = await make_gateway(
        {
            "api.v3.produce.rate.limit.enabled": "true",
            "api.v3.produce.rate.limit.max.requests.per.sec": "1",
        }
    )
    topic = await new_topic()
    status, results = await stream(
        client, cid, topic, concat({"value": {"type": "STRING", "data": str(i)}} for i in range(50))
    )
    assert status == 200
    ok = [r for r in results if r["error_code"] == 200]
    limited = [r for r in results if r["error_code"] == 429]
    assert len(ok) + len(limited) == 50
    assert 1 <= len(ok) <= 5 and results[0]["error_code"] == 200
    assert limited[0] == {
        "error_code": 429,
        "message": "Request rate limit exceeded: The rate limit of requests per second has "
        "been exceeded.",
    }
    assert [r["offset"] for r in ok] == list(range(len(ok)))
    await asyncio.sleep(1.1)  # a second's budget again, for the sentinel
    assert await next_offset(client, cid, topic) == len(ok)


async def test_stream_past_its_max_duration_answers_408_then_closes(
    make_gateway: MakeGatewayFn, cid: str, new_topic: NewTopicFn
) -> None:
    client = await make_gateway(
        {
            "streaming.connection.max.duration.ms": "2000",
            "streaming.connection.max.duration.grace.period.ms": "1500",
        }
    )
    topic = await new_topic()
    late = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"value":{"type":"STRING","data":"early"}}'
        await late.wait()
        yield b'{"value":{"type":"STRING","data":"late"}}'
        await asyncio.sleep(30)  # keeps the body open: the gateway must close the stream
        yield b"{}"

    started = time.monotonic()
    resp = await client.post(records_path(cid, topic), data=body(), headers=JSON)
    first = orjson.loads(await asyncio.wait_for(resp.content.readline(), 30))
    assert first["error_code"] == 200
    await asyncio.sleep(max(0.0, 2.1 - (time.monotonic() - started)))  # the age itself
    late.set()
    second = orjson.loads(await asyncio.wait_for(resp.content.readline(), 30))
    assert second == {
        "error_code": 408,
        "message": "Streaming connection open for longer than allowed: Connection will be closed.",
    }
    # Closed after the grace period although the client is still sending.
    assert await asyncio.wait_for(resp.content.read(), 20) == b""
    assert time.monotonic() - started < 20


# --- records:batch ---------------------------------------------------------------------------


def batch_path(cid: str, topic: str) -> str:
    return records_path(cid, topic) + ":batch"


async def test_batch_mixes_successes_and_failures_in_request_order(
    gateway: Client, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic(partitions=2)
    entries = [
        {"id": "1", "partition_id": 0, "value": {"type": "STRING", "data": "a"}},
        {"id": "x-2", "value": {"type": "BINARY", "data": 1}},
        {
            "id": "three_3",
            "partition_id": 1,
            "key": {"type": "BINARY", "data": "Zm9v"},
            "value": {"type": "JSON", "data": {"n": 1}},
            "headers": [{"name": "h", "value": "AQI="}],
            "timestamp": "2024-05-01T10:00:00.123Z",
        },
        {"id": "4", "partition_id": 9, "value": {"type": "STRING", "data": "b"}},
        {"id": "5", "partition_id": 0, "value": {"type": "STRING", "data": "c"}},
    ]
    resp = await gateway.post(batch_path(cid, topic), json={"entries": entries})
    assert resp.status == 207
    body = await resp.json()
    assert [s["id"] for s in body["successes"]] == ["1", "three_3", "5"]
    third = body["successes"][1]
    assert third == {
        "id": "three_3",
        "cluster_id": cid,
        "topic_name": topic,
        "partition_id": 1,
        "offset": 0,
        "timestamp": "2024-05-01T10:00:00.123Z",
        "key": {"type": "BINARY", "size": 3},
        "value": {"type": "JSON", "size": 7},
    }
    assert body["failures"] == [
        {"id": "x-2", "error_code": 400, "message": "Bad Request: data=1 is not a base64 string."},
        {
            "id": "4",
            "error_code": 40402,
            "message": f"Partition not found: topic {topic} has partitions 0 to 1, not 9.",
        },
    ]
    stored = await read_back(topic, 3)
    assert sorted(r.value for r in stored) == [b"a", b"c", b'{"n":1}']
    assert (
        await next_offset(gateway, cid, topic, 0) + await next_offset(gateway, cid, topic, 1) == 3
    )
    [with_header] = [r for r in stored if r.key == b"foo"]
    assert (with_header.headers, with_header.timestamp) == ((("h", b"\x01\x02"),), 1714557600123)


async def test_batch_validation(
    gateway: Client, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    path = batch_path(cid, topic)
    good = {"value": {"type": "STRING", "data": "x"}}

    async def post(body: Any) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        resp = await gateway.post(path, data=data, headers=JSON)
        return resp.status, await resp.json()

    def invalid(message: str) -> tuple[int, Any]:
        return 422, {"error_code": 42208, "message": message}

    assert await post(b"") == invalid("Request body is empty. Data is required.")
    assert await post({}) == invalid("Empty batch.")
    assert await post({"entries": []}) == invalid("Empty batch.")
    many = [{"id": str(i), **good} for i in range(11)]
    assert await post({"entries": many}) == invalid("Too many entries in batch.")
    for bad_id in ("", "a" * 81, "no spaces", 7, None):
        entry = {**good} if bad_id is None else {"id": bad_id, **good}
        assert await post({"entries": [entry]}) == invalid(
            "Batch entry identifier is not a valid string."
        )
    twice = [{"id": "a", **good}, {"id": "a", **good}]
    assert await post({"entries": twice}) == invalid("Batch entry IDs are not distinct.")
    assert await post({"records": []}) == (
        422,
        {"error_code": 422, "message": "Unrecognized field: records"},
    )
    resp = await gateway.post(path, data=b"{}", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await gateway.post(batch_path("nope", topic), json={"entries": [{"id": "a", **good}]})
    assert resp.status == 404
    # Nothing of the refused batches reached Kafka.
    assert await next_offset(gateway, cid, topic) == 0


async def test_batch_maximum_entries_is_configurable(
    make_gateway: MakeGatewayFn, cid: str, new_topic: NewTopicFn
) -> None:
    client = await make_gateway({"api.v3.produce.batch.maximum.entries": "50"})
    topic = await new_topic()
    entries = [{"id": f"e{i}", "value": {"type": "STRING", "data": str(i)}} for i in range(50)]
    resp = await client.post(batch_path(cid, topic), json={"entries": entries})
    assert resp.status == 207
    body = await resp.json()
    assert [s["offset"] for s in body["successes"]] == list(range(50))
    assert body["failures"] == []


async def test_batch_rate_limited_entries_are_failures(
    make_gateway: MakeGatewayFn, cid: str, new_topic: NewTopicFn
) -> None:
    client = await make_gateway(
        {
            "api.v3.produce.rate.limit.enabled": "true",
            "api.v3.produce.rate.limit.max.bytes.per.sec": "60",
        }
    )
    topic = await new_topic()
    entries = [{"id": str(i), "value": {"type": "STRING", "data": "x" * 20}} for i in range(10)]
    body = await (await client.post(batch_path(cid, topic), json={"entries": entries})).json()
    assert 1 <= len(body["successes"]) <= 3
    assert {f["error_code"] for f in body["failures"]} == {429}
    assert len(body["successes"]) + len(body["failures"]) == 10


# --- schemas through the built-in registry ---------------------------------------------------


async def test_avro_values_through_the_registry(
    make_gateway: MakeGatewayFn, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    registry_topic = await new_topic(
        1, "_schemas-" + uuid.uuid4().hex[:8], {"cleanup.policy": "compact"}
    )
    client = await make_gateway(
        {"schema.registry.builtin": "true", "schema.registry.topic": registry_topic}
    )
    topic = await new_topic()
    schema = orjson.dumps(
        {
            "type": "record",
            "name": "User",
            "namespace": "ex",
            "fields": [{"name": "n", "type": "string"}],
        }
    ).decode()
    first = {"value": {"type": "AVRO", "schema": schema, "data": {"n": "ann"}}}
    _, [registered] = await stream(client, cid, topic, concat([first]))
    assert registered["error_code"] == 200, registered
    info = registered["value"]
    schema_id = info["schema_id"]
    assert info == {
        "type": "AVRO",
        "subject": f"{topic}-value",
        "schema_id": schema_id,
        "schema_version": 1,
        "size": 9,
    }
    objects = [
        {"value": {"schema_id": schema_id, "data": {"n": "bob"}}},
        {"value": {"data": {"n": "cy"}}},  # the subject's latest version
        {"value": {"schema_version": 1, "data": {"n": "di"}}},
        {"value": {"schema_id": schema_id, "data": {"n": 1}}},
        {"value": {"schema_version": 7, "data": {"n": "x"}}},
        {
            "key": {
                "type": "AVRO",
                "schema": schema,
                "subject_name_strategy": "RECORD_NAME",
                "data": {"n": "k"},
            }
        },
    ]
    _status, results = await stream(client, cid, topic, concat(objects))
    assert [r["error_code"] for r in results] == [200, 200, 200, 400, 422, 200]
    assert all(r["value"] == {**info, "size": r["value"]["size"]} for r in results[:3])
    assert results[4]["message"].startswith("Error: 4220")
    assert results[5]["key"]["subject"] == "ex.User"
    jsonschema = '{"type":"object","properties":{"n":{"type":"integer"}}}'
    objects = [
        {"key": {"type": "JSONSCHEMA", "schema": jsonschema, "data": {"n": 7}}},
        {"key": {"type": "JSONSCHEMA", "schema": jsonschema, "data": {"n": "x"}}},
    ]
    _, [json_key, refused] = await stream(client, cid, topic, concat(objects))
    assert json_key["key"]["type"] == "JSONSCHEMA"
    assert json_key["key"]["subject"] == f"{topic}-key"
    assert refused["error_code"] == 400
    stored = await read_back(topic, 6)
    key_header = b"\x00" + json_key["key"]["schema_id"].to_bytes(4, "big")
    assert stored[5].key == key_header + b'{"n":7}'
    header = b"\x00" + schema_id.to_bytes(4, "big")
    assert [r.value for r in stored[:4]] == [
        header + b"\x06ann",
        header + b"\x06bob",
        header + b"\x04cy",
        header + b"\x04di",
    ]


# --- authorisation ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written by the real CLI, as an operator would."""
    path = tmp_path_factory.mktemp("v3authz") / "users.txt"
    cmd = [sys.executable, "-m", "gateway.cli", "user", "add", "--users-file", str(path)]
    done = subprocess.run(
        [*cmd, "alice", "--password-stdin"], input="pw\n", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return path


async def test_produce_needs_the_produce_right_on_the_topic(
    make_gateway: MakeGatewayFn,
    cid: str,
    new_topic: NewTopicFn,
    users_file: Path,
    tmp_path: Path,
    read_back: ReadBackFn,
) -> None:
    allowed = await new_topic()
    denied = await new_topic()
    rules = tmp_path / "rules.json"
    rules.write_text(
        orjson.dumps(
            {"rules": [{"principal": "User:alice", "topic": allowed, "allow": ["produce"]}]}
        ).decode()
    )
    client = await make_gateway(
        {
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users_file),
            "authorization.rules.file": str(rules),
        }
    )
    auth = {**JSON, "Authorization": "Basic " + b64(b"alice:pw")}
    record = concat([{"value": {"type": "STRING", "data": "x"}}])
    status, [body] = await stream(client, cid, denied, record, auth)
    assert (status, body["error_code"]) == (403, 40301)
    batch = {"entries": [{"id": "a", "value": {"type": "STRING", "data": "x"}}]}
    resp = await client.post(batch_path(cid, denied), data=orjson.dumps(batch), headers=auth)
    assert (resp.status, (await resp.json())["error_code"]) == (403, 40301)
    status, [result] = await stream(client, cid, allowed, record, auth)
    assert (status, result["error_code"], result["offset"]) == (200, 200, 0)
    assert await read_back(denied, 1, timeout=2) == []
