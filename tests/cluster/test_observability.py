"""Three replica processes behind HAProxy: metrics move with traffic (produced, consumed,
forwarded, adopted) and readiness flips on SIGTERM, as an operator's Prometheus and load
balancer would see them."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.support.v2 import BINARY, V2_JSON


async def metric(http: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    async with http.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"event_gateway_{name}"
        and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, accept: str = V2_JSON
) -> tuple[int, Any]:
    headers = {"Accept": accept}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = BINARY if "/topics/" in url else V2_JSON
    async with http.request(method, url, data=data, headers=headers) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None


async def test_metrics_move_with_traffic_and_readiness_flips_on_sigterm(make_cluster, new_topic):
    topic = await new_topic()
    cluster = await make_cluster(3, {"consumer.request.timeout.ms": "500"})
    urls = cluster.urls
    async with aiohttp.ClientSession() as http:
        for _ in range(3):  # round robin: each replica produces two records
            status, body = await call(
                http,
                "POST",
                f"{cluster.lb_url}/topics/{topic}",
                {"records": [{"value": "YQ=="}, {"value": "Yg=="}]},
            )
            assert status == 200, body
        produced = [await metric(http, u, "records_produced_total") for u in urls]
        assert produced == [2, 2, 2]

        group = f"obs-{uuid.uuid4().hex[:8]}"
        status, body = await call(
            http,
            "POST",
            f"{urls[0]}/consumers/{group}",
            {"name": "c", "format": "binary", "auto.offset.reset": "earliest"},
        )
        assert status == 200, body
        inst = f"/consumers/{group}/instances/c"
        status, _ = await call(
            http,
            "POST",
            f"{urls[1]}{inst}/assignments",
            {"partitions": [{"topic": topic, "partition": 0}]},
        )
        assert status == 204
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < 6 and time.monotonic() < deadline:
            status, read = await call(http, "GET", f"{urls[2]}{inst}/records", accept=BINARY)
            assert status == 200, read
            got += read
        assert len(got) == 6
        # Replica 0 owns the instance: it served every operation (records counted there once);
        # 1 and 2 forwarded theirs.
        assert await metric(http, urls[0], "records_consumed_total") == 6
        assert await metric(http, urls[2], "records_consumed_total") == 0
        assert await metric(http, urls[1], "forward_duration_seconds_count", outcome="ok") == 1
        assert await metric(http, urls[2], "forward_duration_seconds_count", outcome="ok") >= 1
        assert await metric(http, urls[0], "forward_duration_seconds_count") == 0
        assert await metric(http, urls[0], "consumer_instances_local") == 1
        assert await metric(http, urls[1], "consumer_instances_cluster") >= 1

        # SIGTERM the owner: its readiness turns 503 at once, while it still answers.
        proc = cluster.replicas[0].process
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        while True:
            async with http.get(urls[0] + "/readyz") as resp:
                if resp.status == 503:
                    body = await resp.json()
                    break
            assert time.monotonic() - started < 1.0, "readiness did not flip within 1 s"
            await asyncio.sleep(0.02)
        assert body["status"] == "draining", body
        await asyncio.to_thread(proc.wait, 30)

        # The drained instance is adopted by the next request for it, wherever it lands.
        status, _ = await call(http, "GET", f"{urls[1]}{inst}/assignments")
        assert status == 200
        assert await metric(http, urls[1], "session_events_total", event="adopted") == 1
        assert await metric(http, urls[1], "consumer_instances_local") == 1
