"""v2 metadata endpoints against a real broker: /, /topics..., /brokers (reference 4.1-4.7)."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.harness.ports import free_port
from tests.support.v2 import BINARY, V2, V2_JSON

Client = TestClient[web.Request, web.Application]


async def test_root_is_an_empty_object(gateway: Client) -> None:
    api = V2(gateway)
    status, body, headers = await api.call("GET", "/")
    assert (status, body) == (200, {})
    assert headers["Content-Type"] == V2_JSON

    status, body, headers = await api.call("POST", "/", {"any.setting": "value"})
    assert (status, body) == (200, {})
    assert headers["Content-Type"] == V2_JSON


async def test_root_negotiation(gateway: Client) -> None:
    api = V2(gateway)
    status, body, _ = await api.call("POST", "/", raw=b"hello", ctype="text/plain")
    assert (status, body) == (
        415,
        {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"},
    )

    # Unlike Jersey's empty 406, ours says why (issue 10; application/json is accepted).
    status, body, headers = await api.call("GET", "/", accept="text/plain")
    assert (status, body) == (406, {"error_code": 406, "message": "HTTP 406 Not Acceptable"})
    assert headers["Content-Type"] == "application/json"


async def test_list_topics_has_ours_and_hides_internal_ones(
    gateway: Client, new_topic: NewTopicFn, kafka_admin: AIOKafkaAdminClient
) -> None:
    await _ensure_consumer_offsets_topic(kafka_admin)
    first = await new_topic()
    second = await new_topic(partitions=2, name="_underscore-" + first[2:])

    status, body, headers = await V2(gateway).call("GET", "/topics")

    assert status == 200 and headers["Content-Type"] == V2_JSON
    assert isinstance(body, list) and all(isinstance(t, str) for t in body)
    assert first in body and second in body  # a single underscore is not internal
    assert "__consumer_offsets" not in body
    assert not [t for t in body if t.startswith("__")]


async def test_describe_topic(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic(partitions=3, configs={"retention.ms": "3600000"})

    status, body, headers = await V2(gateway).call("GET", f"/topics/{topic}")

    assert status == 200 and headers["Content-Type"] == V2_JSON
    assert set(body) == {"name", "configs", "partitions"}
    assert body["name"] == topic
    configs = body["configs"]
    assert configs["retention.ms"] == "3600000"  # the override
    assert configs["cleanup.policy"] == "delete"  # and the defaults too
    assert "segment.bytes" in configs and "min.insync.replicas" in configs
    assert all(v is None or isinstance(v, str) for v in configs.values())
    assert [p["partition"] for p in body["partitions"]] == [0, 1, 2]
    for p in body["partitions"]:
        _assert_partition_shape(p)


async def test_partitions(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic(partitions=3)
    api = V2(gateway)

    status, body, _ = await api.call("GET", f"/topics/{topic}/partitions")
    assert status == 200
    assert [p["partition"] for p in body] == [0, 1, 2]
    for p in body:
        _assert_partition_shape(p)

    status, one, headers = await api.call("GET", f"/topics/{topic}/partitions/1")
    assert status == 200 and headers["Content-Type"] == V2_JSON
    assert one == body[1]


@pytest.mark.parametrize("partition", ["3", "-1", "99"])
async def test_partition_not_in_topic_is_40402(
    gateway: Client, new_topic: NewTopicFn, partition: str
) -> None:
    topic = await new_topic(partitions=3)
    api = V2(gateway)
    expected = {"error_code": 40402, "message": "Partition not found."}
    for suffix in ("", "/offsets"):
        status, body, _ = await api.call("GET", f"/topics/{topic}/partitions/{partition}{suffix}")
        assert (status, body) == (404, expected), suffix


@pytest.mark.parametrize("partition", ["abc", "1.5", "0x1", "99999999999"])
async def test_partition_that_is_not_an_int_does_not_match_a_route(
    gateway: Client, new_topic: NewTopicFn, partition: str
) -> None:
    topic = await new_topic()
    api = V2(gateway)
    for suffix in ("", "/offsets"):
        status, body, _ = await api.call("GET", f"/topics/{topic}/partitions/{partition}{suffix}")
        assert (status, body) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})


async def test_missing_topic_is_40403_everywhere_and_is_not_created(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    topic = "missing-" + base64.b32encode(time.time_ns().to_bytes(8, "big")).decode().lower()
    api = V2(gateway)
    for path in ("", "/partitions", "/partitions/0", "/partitions/0/offsets"):
        status, body, headers = await api.call("GET", f"/topics/{topic}{path}")
        assert status == 404, path
        assert body["error_code"] == 40403, path
        assert headers["Content-Type"] == V2_JSON
    assert topic not in await kafka_admin.list_topics()


async def test_offsets_follow_what_was_written(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic(partitions=2)
    api = V2(gateway)

    status, body, headers = await api.call("GET", f"/topics/{topic}/partitions/1/offsets")
    assert (status, body) == (200, {"beginning_offset": 0, "end_offset": 0})
    assert headers["Content-Type"] == V2_JSON

    records = [{"value": "QQ==", "partition": 1}] * 3 + [{"value": "QQ==", "partition": 0}]
    status, _, _ = await api.call("POST", f"/topics/{topic}", {"records": records}, ctype=BINARY)
    assert status == 200

    status, body, _ = await api.call("GET", f"/topics/{topic}/partitions/1/offsets")
    assert (status, body) == (200, {"beginning_offset": 0, "end_offset": 3})
    status, body, _ = await api.call("GET", f"/topics/{topic}/partitions/0/offsets")
    assert (status, body) == (200, {"beginning_offset": 0, "end_offset": 1})


async def test_brokers(gateway: Client, kafka_admin: AIOKafkaAdminClient) -> None:
    cluster = await kafka_admin.describe_cluster()
    expected = sorted(b["node_id"] for b in cluster["brokers"])

    status, body, headers = await V2(gateway).call("GET", "/brokers")

    assert (status, body) == (200, {"brokers": expected})
    assert headers["Content-Type"] == V2_JSON


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", BINARY])
async def test_other_request_content_types_are_415(
    gateway: Client, new_topic: NewTopicFn, ctype: str
) -> None:
    topic = await new_topic()
    api = V2(gateway)
    for path in (
        "/",
        "/topics",
        f"/topics/{topic}",
        f"/topics/{topic}/partitions",
        f"/topics/{topic}/partitions/0",
        f"/topics/{topic}/partitions/0/offsets",
    ):
        status, body, _ = await api.call("GET", path, raw=b"", ctype=ctype)
        assert status == 415, path
        assert body == {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"}


async def test_accept_negotiation(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic()
    api = V2(gateway)
    paths = (
        "/topics",
        f"/topics/{topic}",
        f"/topics/{topic}/partitions",
        f"/topics/{topic}/partitions/0",
        f"/topics/{topic}/partitions/0/offsets",
        "/brokers",
    )
    for path in paths:
        status, body, headers = await api.call("GET", path, accept="text/html")
        assert (status, body["error_code"]) == (406, 406), path
        assert headers["Content-Type"] == "application/json"
        for accept in ("*/*", V2_JSON, "application/*", f"application/json;q=0.9, {V2_JSON}"):
            status, _, headers = await api.call("GET", path, accept=accept)
            assert status == 200, (path, accept)
            assert headers["Content-Type"] == V2_JSON


async def test_unreachable_kafka_is_a_quick_retriable_503(make_gateway: MakeGatewayFn) -> None:
    client = await make_gateway(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "kafka.timeout.ms": "2000"}
    )
    api = V2(client)
    for path in ("/topics", "/topics/t", "/topics/t/partitions/0/offsets", "/brokers"):
        started = time.monotonic()
        status, body, headers = await api.call("GET", path)
        assert time.monotonic() - started < 4, path  # bounded by kafka.timeout.ms, never a hang
        assert status == 503, path
        assert body["error_code"] == 50003
        assert "Retry-After" in headers


# --- helpers -------------------------------------------------------------------------------


def _assert_partition_shape(p: dict) -> None:
    assert set(p) == {"partition", "leader", "replicas"}
    assert isinstance(p["leader"], int) and p["leader"] >= 0
    assert p["replicas"], p
    for r in p["replicas"]:
        assert set(r) == {"broker", "leader", "in_sync"}
        assert r["leader"] is (r["broker"] == p["leader"])
        assert r["in_sync"] is True  # a healthy single-broker test cluster
    assert sum(r["leader"] for r in p["replicas"]) == 1


async def _ensure_consumer_offsets_topic(admin: AIOKafkaAdminClient) -> None:
    """Make the broker create ``__consumer_offsets`` so that hiding it is really tested."""
    deadline = time.monotonic() + 30
    while "__consumer_offsets" not in await admin.list_topics():
        try:
            await admin.find_coordinator("event-gateway-metadata-test")
        except Exception:
            pass  # the coordinator lookup fails until the topic is ready; keep asking
        assert time.monotonic() < deadline, "__consumer_offsets never appeared"
        await asyncio.sleep(0.2)
