"""Fixtures on real infrastructure: a Kafka broker and a Redis server for the whole session.

Nothing here skips. A test that needs Kafka or Redis and cannot have it fails, loudly, with the
reason: a suite that silently skips its integration tests would report green while testing
nothing. Point at existing servers with KAFKA_BOOTSTRAP_SERVERS / REDIS_URL; otherwise the
session starts its own on free loopback ports (Kafka from the jars that
``deploy/kafka/kafka.sh jars`` caches, fetched on first use; ``redis-server`` from PATH).

Where a Docker engine answers (and EVENT_GATEWAY_TESTCONTAINERS is not "0"), testcontainers
starts Kafka (Confluent's build of Apache Kafka 4) and Redis instead, as a convenience for
machines without Java or redis-server. If a container cannot start (no image can be pulled, as
on this project's own machines and CI), the session says so and uses the jar broker and
redis-server: nothing depends on Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness import topics
from tests.harness.api import MakeGatewayFn, NewTopicFn, ReadBackFn
from tests.harness.kafka import KafkaServer
from tests.harness.redis import RedisServer

# Shown at the end of the run, so CI logs say how long the servers took to start.
_NOTES: list[str] = []


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _start_or_fail(start: Callable[[], object], what: str) -> None:
    # Outside the except block, so the report is our one message, not two chained tracebacks.
    try:
        start()
        return
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    pytest.fail(f"cannot start {what}: {error}", pytrace=False)


def _docker_reachable() -> bool:
    if _env("EVENT_GATEWAY_TESTCONTAINERS") == "0":
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def _container(make: Callable[[], object], what: str) -> Iterator[object | None]:
    """A started testcontainers container, or None (with a note) when it cannot start."""
    container = None
    try:
        container = make()
        container.start()  # type: ignore[attr-defined]
    except Exception as exc:
        _NOTES.append(f"testcontainers could not start {what} ({type(exc).__name__}); using local")
        container = None
    try:
        yield container
    finally:
        if container is not None:
            container.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a Kafka broker shared by the whole session."""
    if external := _env("KAFKA_BOOTSTRAP_SERVERS"):
        yield external
        return
    if _docker_reachable():
        from testcontainers.kafka import KafkaContainer

        with _container(
            lambda: KafkaContainer("confluentinc/cp-kafka:8.0.0").with_kraft(), "Kafka"
        ) as kafka:
            if kafka is not None:
                _NOTES.append("Kafka from testcontainers")
                yield kafka.get_bootstrap_server()  # type: ignore[attr-defined]
                return
    server = KafkaServer()
    _start_or_fail(server.start, "a Kafka broker for the tests")
    _NOTES.append(f"Kafka {server.bootstrap} (own broker) ready in {server.startup_seconds:.1f} s")
    try:
        yield server.bootstrap
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server shared by the whole session (tests use their own key prefixes)."""
    if external := _env("REDIS_URL"):
        yield external
        return
    if _docker_reachable():
        from testcontainers.redis import RedisContainer

        with _container(lambda: RedisContainer("redis:7"), "Redis") as redis:
            if redis is not None:
                host = redis.get_container_host_ip()  # type: ignore[attr-defined]
                port = redis.get_exposed_port(6379)  # type: ignore[attr-defined]
                yield f"redis://{host}:{port}/0"
                return
    server = RedisServer()
    _start_or_fail(server.start, "redis-server for the tests")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for one test, which it may pause, kill or restart at will.

    Failure tests use this rather than ``redis_url`` so an outage they cause stays theirs.
    """
    server = RedisServer()
    _start_or_fail(server.start, "redis-server for the test")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """An independent producer: tests write their input with it, not through the gateway."""
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=0)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@pytest.fixture
async def new_topic(kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[NewTopicFn]:
    """``await new_topic(partitions=1, name=None, configs=None)``: a fresh, ready topic.

    Deleted at teardown, best effort: a broker that is slow to delete must not fail the test
    that just passed, and the next session's broker starts empty anyway.
    """
    created: list[str] = []

    async def make(
        partitions: int = 1,
        name: str | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> str:
        topic = await topics.create_topic(kafka_admin, partitions, name, configs)
        created.append(topic)
        return topic

    yield make
    if created:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(kafka_admin.delete_topics(created), 10)


@pytest.fixture
async def read_back(kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient) -> ReadBackFn:
    """``await read_back(topic, n, timeout=15)``: the records a plain consumer sees.

    Up to ``n`` records from the beginning of all partitions, sorted by (partition, offset);
    fewer if fewer arrived within ``timeout`` (assert on the length).
    """

    async def read(
        topic: str,
        n: int,
        timeout: float = 15.0,  # noqa: ASYNC109 (a deadline for a whole poll loop)
    ) -> list[ConsumerRecord[bytes, bytes]]:
        return await topics.read_back(kafka_bootstrap, kafka_admin, topic, n, timeout)

    return read


@pytest.fixture
async def make_gateway(kafka_bootstrap: str, new_topic: NewTopicFn) -> AsyncIterator[MakeGatewayFn]:
    """``client = await make_gateway({"consumer.request.timeout.ms": "500"})``: an in-process
    gateway behind a started aiohttp TestClient; every one made is closed at teardown.

    Kafka timeouts are shortened from the product defaults so a test that hits one fails in
    seconds; ``props`` (Confluent-style property keys) override anything. It depends on
    ``new_topic`` only so that gateways close before the test's topics are deleted.
    """
    from gateway.app import build_app
    from gateway.config import from_properties

    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(
        props: Mapping[str, str] | None = None,
    ) -> TestClient[web.Request, web.Application]:
        cfg = from_properties(
            {
                "bootstrap.servers": kafka_bootstrap,
                "kafka.timeout.ms": "5000",
                "producer.max.block.ms": "3000",
                **(props or {}),
            }
        )
        client = TestClient(TestServer(build_app(cfg)))
        try:
            await client.start_server()
        except BaseException:
            await client.close()
            raise
        clients.append(client)
        return client

    yield make
    # Close all even if one fails, newest first (later gateways may depend on earlier ones).
    errors: list[BaseException] = []
    for client in reversed(clients):
        try:
            await client.close()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
async def gateway(
    make_gateway: MakeGatewayFn,
) -> TestClient[web.Request, web.Application]:
    """A gateway with the harness defaults and no overrides."""
    return await make_gateway()


def pytest_report_header(config: pytest.Config) -> str:
    where = _env("KAFKA_BOOTSTRAP_SERVERS") or "own broker from jars (started on first use)"
    return f"kafka: {where}; redis: {_env('REDIS_URL') or 'own redis-server'}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Harness notes, and the failure scenarios' counted figures (shown even when all pass)."""
    from tests.support.figures import table

    for note in _NOTES:
        terminalreporter.write_line(f"[harness] {note}")

    lines = table()
    if lines:
        terminalreporter.section("failure scenarios: counted figures")
        for line in lines:
            terminalreporter.write_line(line)
