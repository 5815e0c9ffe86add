"""Kafka helpers for tests: make a topic that is really ready, read a topic back directly."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


def unique_topic_name(prefix: str = "t-") -> str:
    """Unique per call, so tests sharing the session broker never see each other's records."""
    return prefix + uuid.uuid4().hex[:10]


async def create_topic(
    admin: AIOKafkaAdminClient,
    partitions: int = 1,
    name: str | None = None,
    configs: Mapping[str, str] | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 (a deadline for a whole poll loop)
) -> str:
    """Create a topic and return only when every partition has a leader.

    CreateTopics succeeds before the metadata shows the topic; a test that produced at once
    would race the broker and fail now and then, so readiness is awaited here, once.
    """
    name = name or unique_topic_name()
    resp = await admin.create_topics(
        [NewTopic(name, partitions, 1, topic_configs=dict(configs or {}))],
        timeout_ms=int(timeout * 1000),
    )
    for err in resp.to_object()["topic_errors"]:
        if err["error_code"] != 0:
            raise RuntimeError(
                f"create topic {err['topic']!r} failed: error {err['error_code']} "
                f"{err.get('error_message')}"
            )
    await wait_topic_ready(admin, name, partitions, timeout)
    return name


async def wait_topic_ready(
    admin: AIOKafkaAdminClient,
    name: str,
    partitions: int,
    timeout: float = 30.0,  # noqa: ASYNC109 (a deadline for a whole poll loop)
) -> dict[str, Any]:
    """Poll metadata until ``name`` has ``partitions`` partitions, each with a leader."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        (last,) = await admin.describe_topics([name])
        parts = last["partitions"]
        if (
            last["error_code"] == 0
            and len(parts) == partitions
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in parts)
        ):
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name!r} not ready after {timeout} s: {last}")
        await asyncio.sleep(0.1)


async def partitions_of(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    (meta,) = await admin.describe_topics([topic])
    if meta["error_code"] != 0:
        raise RuntimeError(f"topic {topic!r}: metadata error {meta['error_code']}")
    return sorted(p["partition"] for p in meta["partitions"])


async def read_back(
    bootstrap: str,
    admin: AIOKafkaAdminClient,
    topic: str,
    n: int,
    timeout: float = 15.0,  # noqa: ASYNC109 (a deadline for a whole poll loop)
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read up to ``n`` records from the start of every partition of ``topic``.

    What the gateway wrote, seen by a plain client that shares none of its code: no group, so
    nothing is committed and no test's group is disturbed. Returns early once ``n`` records
    arrived, else whatever arrived by ``timeout`` (so a test can also assert that nothing, or
    nothing more, was written), sorted by (partition, offset).
    """
    tps = [TopicPartition(topic, p) for p in await partitions_of(admin, topic)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(records) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            batches = await consumer.getmany(
                timeout_ms=int(min(left, 0.5) * 1000), max_records=n - len(records)
            )
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))
