"""A client mistake is never a 500: every endpoint, fed malformed input, answers a 4xx in
Confluent's error shape and writes nothing."""

from __future__ import annotations

import itertools

import orjson
import pytest

from tests.support.v2 import V2

BAD_BODIES: list[bytes] = [
    b"{",
    b"[]",
    b"null",
    b"42",
    b'"text"',
    b"{}",
    b'{"records": "x"}',
    b'{"records": [1]}',
    b'{"records": [{"value": {"a": 1}, "partition": "x"}]}',
    b'{"records": [{"partition": 1.5, "value": "eA=="}]}',
    b'{"offsets": "x"}',
    b'{"offsets": [1]}',
    b'{"offsets": [{"topic": 1, "partition": 0, "offset": 0}]}',
    b'{"offsets": [{"topic": "t", "partition": -1, "offset": 0}]}',
    b'{"offsets": [{"topic": "t", "partition": 0, "offset": "x"}]}',
    b'{"partitions": "x"}',
    b'{"partitions": [{"topic": "t"}]}',
    b'{"partitions": [null]}',
    b'{"topics": "x"}',
    b'{"topics": [1]}',
    b'{"topic_pattern": "(["}',
    b'{"timestamps": [{"topic": "t", "partition": 0, "timestamp": []}]}',
    b'{"name": {"a": 1}}',
    b'{"format": 1}',
    b'{"key_schema": {"a": 1}, "records": [{"value": 1}]}',
    b'{"value_schema_id": [], "records": [{"value": 1}]}',
    "\u00e9".encode("latin-1"),
]

CTYPES = [
    "application/vnd.kafka.v2+json",
    "application/vnd.kafka.binary.v2+json",
    "application/vnd.kafka.json.v2+json",
    "application/vnd.kafka.avro.v2+json",
    "application/vnd.kafka.protobuf.v2+json",
]


@pytest.mark.parametrize("ctype", CTYPES)
async def test_no_500_on_malformed_input(make_gateway, new_topic, read_back, ctype):
    client = await make_gateway({"schema.registry.builtin": "true"})
    api = V2(client)
    topic = await new_topic(partitions=1)
    group = "mistakes"
    status, _ = await api.create(group, name="m", format="binary")
    assert status == 200
    inst = f"/consumers/{group}/instances/m"
    targets = [
        ("POST", f"/topics/{topic}"),
        ("POST", f"/topics/{topic}/partitions/0"),
        ("POST", f"/consumers/{group}"),
        ("POST", inst + "/offsets"),
        ("GET", inst + "/offsets"),
        ("POST", inst + "/subscription"),
        ("POST", inst + "/assignments"),
        ("POST", inst + "/positions"),
        ("POST", inst + "/positions/beginning"),
        ("POST", inst + "/positions/end"),
    ]
    for (method, path), body in itertools.product(targets, BAD_BODIES):
        status, got, _ = await api.call(method, path, raw=body, ctype=ctype)
        assert status < 500, (method, path, body, status, got)
        if status >= 400 and got is not None:
            assert set(got) == {"error_code", "message"}, got
            assert isinstance(got["error_code"], int) and isinstance(got["message"], str)
    # Rejected produce requests wrote nothing.
    assert await read_back(topic, 1, timeout=2) == []


async def test_no_500_on_odd_paths_and_params(gateway):
    api = V2(gateway)
    for method, path, params in [
        ("GET", "/topics/x/partitions/abc", None),
        ("GET", "/topics/x/partitions/99999999999", None),
        ("GET", "/consumers/g/instances/i/records", {"timeout": "x"}),
        ("GET", "/consumers/g/instances/i/records", {"max_bytes": "1e9"}),
        ("PUT", "/topics/x", None),
        ("GET", "/nope", None),
        ("GET", "/consumers/" + "g" * 5000 + "/instances/i/subscription", None),
    ]:
        status, got, _ = await api.call(method, path, params=params)
        assert 400 <= status < 500, (method, path, status, got)
    status, got, _ = await api.call("POST", "/consumers/g", raw=orjson.dumps({"name": "n" * 300}))
    assert status < 500
