"""Independent Kafka checks for tests: what the broker itself says, not the gateway."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient


async def committed_offsets(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets, read with a separate admin client."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): om.offset for tp, om in found.items() if om.offset >= 0}
