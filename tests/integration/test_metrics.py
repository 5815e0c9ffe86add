"""GET /metrics against real Kafka and Redis: the numbers move with traffic, labels stay
low-cardinality, and each in-process app has its own registry."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.context import SESSIONS
from tests.harness.ports import free_port
from tests.support.v2 import BINARY, V2

P = "event_gateway_"


async def scrape(
    client: TestClient[Any, Any],
) -> tuple[str, dict[tuple[str, frozenset[Any]], float]]:
    async with client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples.get((P + name, frozenset(labels.items())), 0.0)


async def test_traffic_requests_and_instances_are_counted(gateway, new_topic):
    topic = await new_topic()
    v2 = V2(gateway)
    records = [{"value": "YWJj"}, {"key": "a2V5", "value": "ZGVm"}, {"value": "Z2hp"}]
    status, body, _ = await v2.call("POST", f"/topics/{topic}", {"records": records}, ctype=BINARY)
    assert status == 200 and all(o["error_code"] is None for o in body["offsets"]), body

    group = f"g-{uuid.uuid4().hex[:8]}"
    status, _, _ = await v2.call(
        "POST",
        f"/consumers/{group}",
        {"name": "m", "format": "binary", "auto.offset.reset": "earliest"},
    )
    assert status == 200
    inst = f"/consumers/{group}/instances/m"
    status, _, _ = await v2.call(
        "POST", f"{inst}/assignments", {"partitions": [{"topic": topic, "partition": 0}]}
    )
    assert status == 204
    got: list[Any] = []
    deadline = time.monotonic() + 15
    while len(got) < 3 and time.monotonic() < deadline:
        status, read, _ = await v2.call(
            "GET", f"{inst}/records", ctype=None, accept=BINARY, params={"timeout": "500"}
        )
        assert status == 200
        got += read
    assert len(got) == 3

    text, samples = await scrape(gateway)
    assert value(samples, "records_produced_total") == 3
    # Keys and values as written: "abc", "key" + "def", "ghi".
    assert value(samples, "produced_bytes_total") == 12
    assert value(samples, "records_consumed_total") == 3
    assert value(samples, "consumed_bytes_total") > 0
    assert value(samples, "consumer_instances_local") == 1
    assert "event_gateway_consumer_instances_cluster" not in text  # memory://: no census
    produce = {"route": "/topics/{topic}", "method": "POST", "status": "200"}
    assert value(samples, "http_requests_total", **produce) == 1
    assert (
        value(
            samples,
            "http_request_duration_seconds_count",
            route="/topics/{topic}",
            method="POST",
        )
        == 1
    )
    reads = {"route": "/consumers/{group}/instances/{instance}/records", "method": "GET"}
    assert value(samples, "http_requests_total", **reads, status="200") >= 1
    # Low cardinality: no topic, group or instance name ever becomes a label value.
    assert topic not in text and group not in text


async def test_unmatched_paths_and_odd_methods_share_labels(gateway):
    for i in range(3):
        async with gateway.get(f"/no/such/path/{i}") as resp:
            assert resp.status == 404
    async with gateway.request("PROPFIND", "/topics") as resp:
        assert resp.status == 405
    text, samples = await scrape(gateway)
    assert value(samples, "http_requests_total", route="unmatched", method="GET", status="404") == 3
    # A 405 matched no route either; the method a client invented is not a label value.
    assert (
        value(samples, "http_requests_total", route="unmatched", method="other", status="405") == 1
    )
    assert "PROPFIND" not in text
    assert "/no/such/path" not in text


async def test_kafka_errors_are_counted_by_code(make_gateway):
    client = await make_gateway(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "kafka.timeout.ms": "1000"}
    )
    async with client.get("/topics") as resp:
        assert resp.status == 503
        assert (await resp.json())["error_code"] == 50003
    status, body, _ = await V2(client).call(
        "POST", "/topics/t", {"records": [{"value": "eA=="}]}, ctype=BINARY
    )
    assert status == 200 and body["offsets"][0]["error_code"] == 50003
    _, samples = await scrape(client)
    assert value(samples, "backend_errors_total", code="50003") == 1
    assert value(samples, "produce_record_errors_total", code="50003") == 1
    assert value(samples, "records_produced_total") == 0


async def test_event_loop_lag_is_measured(gateway):
    await asyncio.sleep(0.6)  # a couple of samples first
    time.sleep(0.4)  # noqa: ASYNC251 (blocks the app's loop on purpose, as a careless handler would)
    await asyncio.sleep(0.6)
    _, samples = await scrape(gateway)
    assert value(samples, "event_loop_lag_seconds_count") >= 2
    # The block may start mid-sleep: at least 0.4 s minus one sampling interval is seen.
    assert value(samples, "event_loop_lag_seconds_sum") >= 0.14
    assert value(samples, "event_loop_lag_seconds_bucket", le="0.1") < value(
        samples, "event_loop_lag_seconds_count"
    )


async def test_cluster_census_and_drain_events(make_gateway, redis_url):
    props = {"session.store.url": redis_url, "cluster.secret": "metrics-test"}
    client = await make_gateway(props)
    other = await make_gateway(props)  # its own registry: it counts none of client's traffic
    group = f"g-{uuid.uuid4().hex[:8]}"
    status, _, _ = await V2(client).call("POST", f"/consumers/{group}", {"name": "c"})
    assert status == 200
    _, samples = await scrape(client)
    assert value(samples, "consumer_instances_local") == 1
    assert value(samples, "consumer_instances_cluster") >= 1  # the shared Redis may hold more
    _, other_samples = await scrape(other)
    assert value(other_samples, "consumer_instances_local") == 0
    assert value(other_samples, "consumer_instances_cluster") >= 1  # cluster-wide: same count

    await client.app[SESSIONS].stop()
    _, samples = await scrape(client)
    assert value(samples, "session_events_total", event="drain") == 1
    assert value(samples, "session_events_total", event="released") == 1
    assert value(samples, "session_events_total", event="adopted") == 0
    assert value(samples, "consumer_instances_local") == 0

    # The released instance is adopted by the next request, on the other replica.
    status, body, _ = await V2(other).call(
        "GET", f"/consumers/{group}/instances/c/subscription", ctype=None
    )
    assert status == 200, body
    _, other_samples = await scrape(other)
    assert value(other_samples, "session_events_total", event="adopted") == 1
    assert value(other_samples, "consumer_instances_local") == 1
    assert orjson.dumps(body)  # a real answer, not an error body
