"""The harness itself works: every other integration test stands on these fixtures."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness.api import NewTopicFn, ReadBackFn
from tests.harness.redis import RedisServer


async def test_new_topic_has_all_partitions_with_leaders(
    new_topic: NewTopicFn, kafka_admin: AIOKafkaAdminClient
) -> None:
    topic = await new_topic(partitions=3, configs={"retention.ms": "3600000"})

    (meta,) = await kafka_admin.describe_topics([topic])
    assert meta["error_code"] == 0
    assert sorted(p["partition"] for p in meta["partitions"]) == [0, 1, 2]
    assert all(p["leader"] >= 0 for p in meta["partitions"])


async def test_read_back_returns_what_a_direct_producer_wrote(
    kafka_bootstrap: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic(partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(4):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=b"k", partition=i % 2)
    finally:
        await producer.stop()

    records = await read_back(topic, 4)

    assert [(r.partition, r.offset, r.key, r.value) for r in records] == [
        (0, 0, b"k", b"v0"),
        (0, 1, b"k", b"v2"),
        (1, 0, b"k", b"v1"),
        (1, 1, b"k", b"v3"),
    ]
    # Asking for more than exists returns what exists once the timeout passes.
    assert len(await read_back(topic, 5, timeout=1)) == 4


async def test_redis_answers_ping(redis_url: str, redis_server: RedisServer) -> None:
    for url in (redis_url, redis_server.url):
        client = aioredis.Redis.from_url(url)
        try:
            assert await client.ping() is True
        finally:
            await client.aclose()
