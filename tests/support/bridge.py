"""The third-party v2 client from PyPI (kafka-bridge-client, Confluent mode), run unchanged."""

from __future__ import annotations

import base64

from aiokafka import AIOKafkaProducer


async def produce_ten(producer: AIOKafkaProducer, topic: str) -> list[bytes]:
    values = [f"m{i}".encode() for i in range(10)]
    for i, value in enumerate(values):
        await producer.send_and_wait(topic, value, key=str(i % 2).encode())
    return values


async def run_bridge_flow(base_url: str, topic: str, group: str, want: int) -> dict:
    """Create, subscribe, poll until ``want`` records, commit, delete (on exit), as the client
    does it. Returns the values read and the offsets the commit should have stored."""
    from kafka_bridge_client import KafkaBridgeConsumer

    consumer = KafkaBridgeConsumer(
        topic,
        bootstrap_server=base_url.rstrip("/") + "/",
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_name="kbc",
        proxy="confluent",
        sleep_interval_seconds=0,
    )
    received: list[dict] = []
    async with consumer:
        for _ in range(30):
            received.extend(await consumer.poll_records(max_bytes=1_000_000, timeout=500))
            if len(received) >= want:
                break
        await consumer.commit()
    ends: dict[tuple[str, int], int] = {}
    for r in received:
        key = (r["topic"], r["partition"])
        ends[key] = max(ends.get(key, -1), r["offset"] + 1)
    return {"values": sorted(base64.b64decode(r["value"]) for r in received), "ends": ends}
