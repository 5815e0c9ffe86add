"""v2 produce against a real broker (reference 4.8, 5.1-5.6), checked by reading Kafka directly."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness.api import MakeGatewayFn, NewTopicFn, ReadBackFn
from tests.harness.ports import free_port
from tests.support.v2 import BINARY, JSON, V2, V2_JSON

Client = TestClient[web.Request, web.Application]
AVRO = "application/vnd.kafka.avro.v2+json"
JSONSCHEMA = "application/vnd.kafka.jsonschema.v2+json"
PROTOBUF = "application/vnd.kafka.protobuf.v2+json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ok(partition: int, offset: int) -> dict[str, Any]:
    return {"partition": partition, "offset": offset, "error_code": None, "error": None}


async def produce(
    client: Client, path: str, body: Any = None, ctype: str | None = BINARY, **kw: Any
) -> tuple[int, Any, dict]:
    return await V2(client).call("POST", path, body, ctype=ctype, **kw)


# --- murmur2 as the Java client computes it, written independently of aiokafka ---------------


def java_murmur2(data: bytes) -> int:
    """``org.apache.kafka.common.utils.Utils.murmur2`` (a signed 32-bit result, as in Java)."""
    m, length = 0x5BD1E995, len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = (int.from_bytes(data[i : i + 4], "little") * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, rest = length - length % 4, length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h = ((h ^ data[tail]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    """``BuiltInPartitioner.partitionForKey``: toPositive(murmur2(key)) % numPartitions."""
    return (java_murmur2(key) & 0x7FFFFFFF) % partitions


def test_java_murmur2_matches_kafkas_own_test_vectors() -> None:
    # From Kafka's UtilsTest.testMurmur2: the reference the partition tests below rely on.
    assert java_murmur2(b"21") == -973932308
    assert java_murmur2(b"foobar") == -790332482
    assert java_murmur2(b"a-little-bit-long-string") == -985981536
    assert java_murmur2(b"a-little-bit-longer-string") == -1486304829
    assert java_murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert java_murmur2(b"abc") == 479470107


# --- what gets written ----------------------------------------------------------------------


async def test_binary_round_trips_every_byte_value(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    every = bytes(range(256))
    records = [
        {"key": b64(b"k\x00\xff"), "value": b64(every)},
        {"key": b64(every[::-1]).rstrip("="), "value": b64(every[128:]).rstrip("=")},
        {"value": ""},  # empty, not null
        {"key": b64(b"tombstone")},  # no value: a tombstone
        {"key": None, "value": b64(b"\x00")},
    ]

    status, body, headers = await produce(gateway, f"/topics/{topic}", {"records": records})

    assert status == 200, body
    assert headers["Content-Type"] == V2_JSON
    assert body == {
        "offsets": [ok(0, i) for i in range(5)],
        "key_schema_id": None,
        "value_schema_id": None,
    }
    got = await read_back(topic, 5)
    assert [(r.key, r.value) for r in got] == [
        (b"k\x00\xff", every),
        (every[::-1], every[128:]),
        (None, b""),
        (b"tombstone", None),
        (None, b"\x00"),
    ]


async def test_json_readme_example_is_stored_as_compact_json(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    body = {
        "records": [
            {"key": "alice", "value": {"tickets": 5}},
            {"key": "bob", "value": {"tickets": 10}},
        ]
    }

    status, answer, headers = await produce(gateway, f"/topics/{topic}", body, ctype=JSON)

    assert status == 200
    assert headers["Content-Type"] == V2_JSON
    assert answer == {
        "offsets": [ok(0, 0), ok(0, 1)],
        "key_schema_id": None,
        "value_schema_id": None,
    }
    got = await read_back(topic, 2)
    assert [(r.key, r.value) for r in got] == [
        (b'"alice"', b'{"tickets":5}'),
        (b'"bob"', b'{"tickets":10}'),
    ]


async def test_json_values_of_every_json_type(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    values = [53.5, "somekey", True, [1, None, "x"], {"nested": {"a": [{}]}}, 0, "caf\u00e9"]
    records = [{"value": v} for v in values] + [{"key": {"k": 1}}]

    status, _, _ = await produce(gateway, f"/topics/{topic}", {"records": records}, ctype=JSON)

    assert status == 200
    got = await read_back(topic, len(records))
    assert [r.value for r in got] == [
        b"53.5",
        b'"somekey"',
        b"true",
        b'[1,null,"x"]',
        b'{"nested":{"a":[{}]}}',
        b"0",
        '"caf\u00e9"'.encode(),
        None,
    ]
    assert got[-1].key == b'{"k":1}'


@pytest.mark.parametrize("ctype", [BINARY, JSON])
async def test_keyed_records_land_where_the_java_client_would_put_them(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn, ctype: str
) -> None:
    topic = await new_topic(partitions=5)
    keys = [f"user-{i}" for i in range(40)]
    if ctype == BINARY:
        stored = [k.encode() for k in keys]
        records = [{"key": b64(k), "value": b64(b"v")} for k in stored]
    else:
        stored = [f'"{k}"'.encode() for k in keys]  # the json format hashes the JSON text
        records = [{"key": k, "value": 1} for k in keys]

    status, body, _ = await produce(gateway, f"/topics/{topic}", {"records": records}, ctype=ctype)

    assert status == 200
    expected = [java_partition(k, 5) for k in stored]
    assert len(set(expected)) > 1  # the keys really spread, so the check means something
    assert [o["partition"] for o in body["offsets"]] == expected
    got = await read_back(topic, len(keys))
    assert sorted((r.key, r.partition) for r in got) == sorted(zip(stored, expected, strict=True))


async def test_explicit_record_partitions(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic(partitions=3)
    records = [
        {"value": b64(b"a"), "partition": 2},
        {"value": b64(b"b"), "partition": 0},
        {"value": b64(b"c"), "partition": "1"},  # Jackson-style numeric string
        {"key": b64(b"user-1"), "value": b64(b"d"), "partition": 2},  # beats the key hash
    ]

    status, body, _ = await produce(gateway, f"/topics/{topic}", {"records": records})

    assert status == 200
    assert body["offsets"] == [ok(2, 0), ok(0, 0), ok(1, 0), ok(2, 1)]
    got = await read_back(topic, 4)
    assert [(r.partition, r.offset, r.value) for r in got] == [
        (0, 0, b"b"),
        (1, 0, b"c"),
        (2, 0, b"a"),
        (2, 1, b"d"),
    ]


async def test_path_partition_and_record_override(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic(partitions=3)
    records = [
        {"value": b64(b"a")},
        {"key": b64(b"user-7"), "value": b64(b"b")},  # the path beats the key hash too
        {"value": b64(b"c"), "partition": 0},  # a record's partition beats the path
    ]

    status, body, headers = await produce(
        gateway, f"/topics/{topic}/partitions/1", {"records": records}
    )

    assert status == 200
    assert headers["Content-Type"] == V2_JSON
    assert body == {
        "offsets": [ok(1, 0), ok(1, 1), ok(0, 0)],
        "key_schema_id": None,
        "value_schema_id": None,
    }
    got = await read_back(topic, 3)
    assert [(r.partition, r.value) for r in got] == [(0, b"c"), (1, b"a"), (1, b"b")]


async def test_records_of_one_partition_keep_request_order(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic(partitions=2)
    n = 500
    records = [{"value": b64(f"{i:04d}".encode() * 20), "partition": 1} for i in range(n)]

    status, body, _ = await produce(gateway, f"/topics/{topic}", {"records": records})

    assert status == 200
    assert body["offsets"] == [ok(1, i) for i in range(n)]
    got = await read_back(topic, n)
    assert [r.value[:4] for r in got] == [f"{i:04d}".encode() for i in range(n)]


async def test_octet_stream_body_is_read_as_binary(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    body = {"records": [{"value": b64(b"\x01\x02")}]}

    status, answer, _ = await produce(
        gateway, f"/topics/{topic}", body, ctype="application/octet-stream"
    )

    assert (status, answer["offsets"]) == (200, [ok(0, 0)])
    assert [r.value for r in await read_back(topic, 1)] == [b"\x01\x02"]


# --- rejected requests: the right error, and nothing written ---------------------------------

GOOD = {"records": [{"value": b64(b"good")}]}
VALUE_SCHEMA_MISSING = "Request includes values but does not include value schema"


@pytest.mark.parametrize(
    ("ctype", "raw", "accept", "status", "error_code", "message"),
    [
        # media types
        ("application/json", GOOD, None, 415, 415, "HTTP 415 Unsupported Media Type"),
        ("text/plain", GOOD, None, 415, 415, "HTTP 415 Unsupported Media Type"),
        (V2_JSON, GOOD, None, 415, 415, "HTTP 415 Unsupported Media Type"),
        (BINARY, GOOD, "text/html", 406, 406, "HTTP 406 Not Acceptable"),
        # schema formats: a value needs a value schema (tests/integration/test_schema_formats.py)
        (AVRO, GOOD, None, 422, 42202, VALUE_SCHEMA_MISSING),
        (JSONSCHEMA, GOOD, None, 422, 42202, VALUE_SCHEMA_MISSING),
        (PROTOBUF, GOOD, None, 422, 42202, VALUE_SCHEMA_MISSING),
        # body shape
        (BINARY, b"", None, 422, 422, None),
        (BINARY, {}, None, 422, 422, None),
        (BINARY, {"records": []}, None, 422, 422, None),
        (
            BINARY,
            {"records": [{"value": "QQ=="}], "foo": 1},
            None,
            422,
            422,
            "Unrecognized field: foo",
        ),
        (
            BINARY,
            {"records": [{"value": "QQ=="}, {"value": "QQ==", "headers": []}]},
            None,
            422,
            422,
            "Unrecognized field: headers",
        ),
        (
            JSON,
            {"records": [{"value": 1, "timestamp": 5}]},
            None,
            422,
            422,
            "Unrecognized field: timestamp",
        ),
        (BINARY, {"records": [{}]}, None, 422, 422, None),
        (BINARY, b'{"records": [{"value": "QQ=="}]', None, 400, 400, None),
        (BINARY, b"not json at all", None, 400, 400, None),
        (BINARY, {"records": "QQ=="}, None, 400, 400, None),
        (BINARY, {"records": [{"value": "QQ==", "partition": "abc"}]}, None, 400, 400, None),
        # base64 (the bad record comes last: nothing before it may be written either)
        (
            BINARY,
            {"records": [{"value": "QQ=="}, {"value": "A-E="}]},
            None,
            400,
            400,
            'Bad Request: data="A-E=" is not a valid base64 string.',
        ),
        (
            BINARY,
            {"records": [{"value": "QQ=="}, {"key": "QQ==\n"}]},
            None,
            400,
            400,
            'Bad Request: data="QQ==\\n" is not a valid base64 string.',
        ),
        (
            BINARY,
            {"records": [{"value": "QQ=="}, {"value": 12}]},
            None,
            400,
            400,
            "Bad Request: data=12 is not a base64 string.",
        ),
        (
            BINARY,
            {"records": [{"value": {"a": 1}}]},
            None,
            400,
            400,
            'Bad Request: data={"a":1} is not a base64 string.',
        ),
    ],
)
async def test_rejected_requests_write_nothing(
    gateway: Client,
    new_topic: NewTopicFn,
    read_back: ReadBackFn,
    ctype: str,
    raw: Any,
    accept: str | None,
    status: int,
    error_code: int | None,
    message: str | None,
) -> None:
    topic = await new_topic()
    kw: dict[str, Any] = {"raw": raw} if isinstance(raw, bytes) else {"body": raw}

    got_status, body, headers = await produce(
        gateway, f"/topics/{topic}", ctype=ctype, accept=accept, **kw
    )

    assert got_status == status, body
    if error_code is None:
        assert body is None and "Content-Type" not in headers  # 406: no body at all
    else:
        assert body["error_code"] == error_code
        if message is not None:
            assert body["message"] == message
    await _assert_topic_still_empty(gateway, topic, read_back)


async def test_partitions_out_of_range_are_client_errors(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic(partitions=3)
    good = {"value": b64(b"x")}

    status, body, headers = await produce(
        gateway, f"/topics/{topic}/partitions/3", {"records": [good]}
    )
    assert (status, body) == (404, {"error_code": 40402, "message": "Partition not found."})
    assert headers["Content-Type"] == V2_JSON

    status, body, _ = await produce(gateway, f"/topics/{topic}/partitions/-1", {"records": [good]})
    assert (status, body["error_code"]) == (404, 40402)

    for bad in (5, -1):
        records = [good, {"value": b64(b"y"), "partition": 0}, {**good, "partition": bad}]
        status, body, _ = await produce(gateway, f"/topics/{topic}", {"records": records})
        assert (status, body) == (
            400,
            {
                "error_code": 40002,
                "message": f"Invalid partition given with record: {bad} is not in the range "
                "[0...3).",
            },
        )

    status, body, _ = await produce(gateway, f"/topics/{topic}/partitions/abc", {"records": [good]})
    assert (status, body) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    # Nothing from the rejected requests: each partition's first record is this one.
    sentinel = [{"value": b64(b"s"), "partition": p} for p in range(3)]
    status, body, _ = await produce(gateway, f"/topics/{topic}", {"records": sentinel})
    assert body["offsets"] == [ok(0, 0), ok(1, 0), ok(2, 0)]
    assert [(r.partition, r.value) for r in await read_back(topic, 3)] == [
        (0, b"s"),
        (1, b"s"),
        (2, b"s"),
    ]


# --- Kafka's verdicts per record ------------------------------------------------------------


async def test_missing_topic_is_a_per_record_50003_after_a_bounded_wait(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    topic = "missing-" + uuid.uuid4().hex[:10]
    records = [{"value": b64(b"x")} for _ in range(5)] + [{"value": "QQ==", "partition": 2}]

    started = time.monotonic()
    status, body, headers = await produce(gateway, f"/topics/{topic}", {"records": records})
    elapsed = time.monotonic() - started

    # The harness sets producer.max.block.ms=3000: one wait for the request, not one per record.
    assert 2.5 < elapsed < 6, elapsed
    assert status == 200
    assert headers["Content-Type"] == V2_JSON
    failed = {
        "partition": None,
        "offset": None,
        "error_code": 50003,
        "error": f"Topic {topic} not present in metadata after 3000 ms.",
    }
    assert body == {"offsets": [failed] * 6, "key_schema_id": None, "value_schema_id": None}
    assert topic not in await kafka_admin.list_topics()


async def test_path_partition_on_missing_topic_is_still_per_record(gateway: Client) -> None:
    topic = "missing-" + uuid.uuid4().hex[:10]
    status, body, _ = await produce(
        gateway, f"/topics/{topic}/partitions/0", {"records": [{"value": "QQ=="}]}
    )
    assert status == 200
    assert [o["error_code"] for o in body["offsets"]] == [50003]


async def test_unreachable_kafka_is_a_per_record_50003_after_a_bounded_wait(
    make_gateway: MakeGatewayFn,
) -> None:
    client = await make_gateway(
        {
            "bootstrap.servers": f"127.0.0.1:{free_port()}",
            "producer.max.block.ms": "1500",
            "kafka.timeout.ms": "1000",
        }
    )
    records = [{"value": b64(b"x")}, {"key": b64(b"k"), "value": None}]

    started = time.monotonic()
    status, body, headers = await produce(client, "/topics/anything", {"records": records})
    elapsed = time.monotonic() - started

    assert elapsed < 4, elapsed
    assert status == 200
    assert headers["Content-Type"] == V2_JSON
    assert [(o["partition"], o["offset"], o["error_code"]) for o in body["offsets"]] == [
        (None, None, 50003),
        (None, None, 50003),
    ]
    assert all(o["error"] for o in body["offsets"])


async def test_illegal_topic_name_is_a_per_record_50002(gateway: Client) -> None:
    status, body, _ = await produce(
        gateway, "/topics/no%20spaces", {"records": [{"value": "QQ=="}]}
    )
    assert status == 200
    [offset] = body["offsets"]
    assert (offset["partition"], offset["offset"], offset["error_code"]) == (None, None, 50002)


# --- helpers --------------------------------------------------------------------------------


async def _assert_topic_still_empty(client: Client, topic: str, read_back: ReadBackFn) -> None:
    """Write one record; it being offset 0, as Kafka itself says, proves nothing came before."""
    status, body, _ = await produce(client, f"/topics/{topic}", GOOD)
    assert status == 200
    assert body["offsets"] == [ok(0, 0)]
    assert [(r.offset, r.value) for r in await read_back(topic, 1)] == [(0, b"good")]


# --- batches larger than the topic allows ----------------------------------------------------


def _tagged(tag: int, n: int) -> dict[str, Any]:
    """``n`` 100-byte records of request ``tag``, each naming its request and position."""
    return {"records": [{"value": b64(b"%03d-%04d-" % (tag, i) + b"x" * 90)} for i in range(n)]}


async def _all_written_in_order(
    read_back: ReadBackFn, topic: str, answers: list[dict[str, Any]]
) -> None:
    """Every answered record is in Kafka once, where its answer says, in its request's order."""
    answered = {}
    for tag, answer in enumerate(answers):
        assert [o["error_code"] for o in answer["offsets"]] == [None] * len(answer["offsets"]), [
            o for o in answer["offsets"] if o["error_code"] is not None
        ][:2]
        offsets = [o["offset"] for o in answer["offsets"]]
        assert offsets == sorted(offsets)  # one partition: a request's records in order
        answered.update({o: b"%03d-%04d-" % (tag, i) for i, o in enumerate(offsets)})
    got = await read_back(topic, len(answered) + 1, timeout=5)
    assert len(got) == len(answered)
    assert all(r.value.startswith(answered[r.offset]) for r in got)


async def test_batches_fit_the_topics_max_message_bytes(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    """The gateway's batches are 64 KiB, but never larger than a topic takes: with
    ``max.message.bytes`` 40,000 a 300-record request (~33 KB) and eight concurrent
    100-record requests (sharing the partition's open batch) are written whole."""
    from gateway.context import PRODUCER

    roomy = await new_topic(partitions=1)
    tight = await new_topic(partitions=1, configs={"max.message.bytes": "40000"})
    client = await make_gateway()
    for topic in (roomy, tight):
        status, first, _ = await produce(client, f"/topics/{topic}", _tagged(0, 300))
        assert status == 200, first
        answers = await asyncio.gather(
            *(produce(client, f"/topics/{topic}", _tagged(tag, 100)) for tag in range(1, 9))
        )
        assert [status for status, _, _ in answers] == [200] * 8
        await _all_written_in_order(read_back, topic, [first, *(a for _, a, _ in answers)])
    gate = client.app[PRODUCER]
    producer = await gate.producer()
    assert gate.limits.batch_bytes(producer, roomy) == 65536  # the default batch.size
    assert 16384 < gate.limits.batch_bytes(producer, tight) < 40000


async def test_a_batch_refused_as_too_large_is_sent_again_in_smaller_batches(
    make_gateway: MakeGatewayFn,
    new_topic: NewTopicFn,
    read_back: ReadBackFn,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    """The topic's limit is lowered after the gateway learned it: the next 300-record batch
    (~33 KB) is refused by Kafka whole, sent again in 16 KiB batches, and written in order."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from gateway.context import PRODUCER

    topic = await new_topic(partitions=1)
    client = await make_gateway()
    status, first, _ = await produce(client, f"/topics/{topic}", _tagged(0, 10))
    assert status == 200, first
    await kafka_admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": "20000"})]
    )
    await asyncio.sleep(1)  # the broker applies a topic config change asynchronously
    status, big, _ = await produce(client, f"/topics/{topic}", _tagged(1, 300))
    assert status == 200, big
    await _all_written_in_order(read_back, topic, [first, big])
    gate = client.app[PRODUCER]
    assert gate.limits.batch_bytes(await gate.producer(), topic) == 16384
