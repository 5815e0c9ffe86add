"""/healthz and /readyz against real Kafka and Redis: readiness follows the dependencies and
the drain within a second, from cached probes, and says what is wrong."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import build_app
from gateway.config import from_properties
from gateway.context import SESSIONS
from tests.harness.kafka import KafkaServer
from tests.harness.ports import free_port
from tests.harness.redis import RedisServer


async def _readyz(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    async with client.get("/readyz") as resp:
        return resp.status, await resp.json()


async def _wait_status(client: TestClient[Any, Any], status: int, limit_s: float) -> float:
    """Seconds until /readyz answers ``status`` (fails the test after ``limit_s``)."""
    started = time.monotonic()
    while True:
        got, body = await _readyz(client)
        if got == status:
            return time.monotonic() - started
        assert time.monotonic() - started < limit_s, (got, body)
        await asyncio.sleep(0.02)


async def _client(props: dict[str, str]) -> TestClient[Any, Any]:
    cfg = from_properties({"kafka.timeout.ms": "3000", "producer.max.block.ms": "2000", **props})
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(cfg)))
    await client.start_server()
    return client


async def test_healthz_is_alive_and_readyz_reports_each_check(gateway):
    async with gateway.get("/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "alive"}
    await _wait_status(gateway, 200, 10)
    status, body = await _readyz(gateway)
    assert status == 200
    assert body["status"] == "ready" and body["problems"] == []
    assert body["checks"]["kafka"]["ok"] is True
    assert body["checks"]["draining"]["ok"] is True
    assert "redis" not in body["checks"]  # memory:// has nothing to reach


async def test_readiness_flips_at_once_when_a_drain_starts(gateway):
    await _wait_status(gateway, 200, 10)
    drain = asyncio.create_task(gateway.app[SESSIONS].stop())
    flipped = await _wait_status(gateway, 503, 1.0)
    await drain
    status, body = await _readyz(gateway)
    assert status == 503 and body["status"] == "draining", body
    assert any(p.startswith("draining") for p in body["problems"])
    assert flipped < 1.0
    async with gateway.get("/healthz") as resp:
        assert resp.status == 200  # alive while draining: the process must not be killed


async def test_unreachable_kafka_is_not_ready_but_alive():
    client = await _client({"bootstrap.servers": f"127.0.0.1:{free_port()}"})
    try:
        await _wait_status(client, 503, 5)
        _, body = await _readyz(client)
        assert body["status"] == "unavailable"
        assert body["checks"]["kafka"]["ok"] is False
        assert any(p.startswith("kafka:") for p in body["problems"]), body
        async with client.get("/healthz") as resp:
            assert resp.status == 200
    finally:
        await client.close()


@pytest.fixture
def private_kafka() -> Iterator[KafkaServer]:
    server = KafkaServer()
    server.start()
    try:
        yield server
    finally:
        server.resume()  # a failed test must not leave a stopped process behind
        server.stop()


async def test_readiness_flips_within_a_second_of_a_paused_broker_and_recovers(private_kafka):
    client = await _client({"bootstrap.servers": private_kafka.bootstrap})
    try:
        await _wait_status(client, 200, 20)
        await asyncio.sleep(0.6)  # a few probe rounds answered: steady state
        private_kafka.pause()
        try:
            flipped = await _wait_status(client, 503, 3)
            _, body = await _readyz(client)
        finally:
            private_kafka.resume()
        assert flipped < 1.0, flipped
        assert body["checks"]["kafka"]["ok"] is False, body
        assert body["checks"]["draining"]["ok"] is True
        await _wait_status(client, 200, 30)  # heals by itself
    finally:
        await client.close()


async def test_paused_redis_is_not_ready(kafka_bootstrap, redis_server: RedisServer):
    client = await _client(
        {
            "bootstrap.servers": kafka_bootstrap,
            "session.store.url": redis_server.url,
            "cluster.secret": "s3cret-for-health",
        }
    )
    try:
        await _wait_status(client, 200, 10)
        _, body = await _readyz(client)
        assert body["checks"]["redis"]["ok"] is True
        redis_server.pause()
        try:
            flipped = await _wait_status(client, 503, 3)
            _, body = await _readyz(client)
        finally:
            redis_server.resume()
        assert flipped < 1.0, flipped
        assert body["checks"]["redis"]["ok"] is False and body["checks"]["kafka"]["ok"], body
        assert "s3cret" not in str(body)
        await _wait_status(client, 200, 10)
    finally:
        await client.close()
