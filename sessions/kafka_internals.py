"""Every use of aiokafka's private attributes, behind one door.

The gateway needs a few things aiokafka keeps private: the subscription kind of a consumer,
committed offsets *with* their metadata, the producer's own partitioner and size limits, a
metadata request that must not auto-create topics. Each is read here and nowhere else, with
plain attribute access (never ``getattr(..., default)``, which would hide a rename behind a
silent default), and ``tests/unit/test_kafka_internals.py`` touches every one on real client
objects, so an aiokafka upgrade that moves one fails that test by name instead of changing
behaviour quietly.

It lives in ``sessions`` (the lower layer) so the consumer instances and the HTTP layer's
produce and metadata paths share it without ``sessions`` importing ``gateway``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.subscription_state import SubscriptionType
from aiokafka.structs import OffsetAndMetadata

Partitioner = Callable[[bytes, list[int], list[int]], int]

__all__ = [
    "Partitioner",
    "SubscriptionType",
    "admin_request",
    "auto_assigned",
    "batch_size",
    "check_record_size",
    "committed_with_metadata",
    "max_request_size",
    "partitioner",
    "request_timeout_ms",
    "subscription_type",
]

# --- consumer ---------------------------------------------------------------------------------


def subscription_type(consumer: AIOKafkaConsumer) -> SubscriptionType:
    """NONE, AUTO_TOPICS, AUTO_PATTERN or USER_ASSIGNED: aiokafka exposes no public getter."""
    kind: SubscriptionType = consumer._subscription._subscription_type
    return kind


def auto_assigned(consumer: AIOKafkaConsumer) -> bool:
    """Whether partitions come from the group (subscribe) rather than ``assign()``."""
    return bool(consumer._subscription.partitions_auto_assigned())


async def committed_with_metadata(
    consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets with metadata (the public ``committed()`` drops it)."""
    found: dict[
        TopicPartition, OffsetAndMetadata
    ] = await consumer._coordinator.fetch_committed_offsets(partitions)
    return found


# --- producer ---------------------------------------------------------------------------------


def partitioner(producer: AIOKafkaProducer) -> Partitioner:
    """The producer's configured partitioner (murmur2 by default, as Java's)."""
    chosen: Partitioner = producer._partitioner
    return chosen


def max_request_size(producer: AIOKafkaProducer) -> int:
    return int(producer._max_request_size)


def batch_size(producer: AIOKafkaProducer) -> int:
    """``batch.size``: aiokafka keeps it on its accumulator only."""
    return int(producer._message_accumulator._batch_size)


def request_timeout_ms(producer: AIOKafkaProducer) -> int:
    return int(producer._request_timeout_ms)


def check_record_size(producer: AIOKafkaProducer, key: bytes | None, value: bytes | None) -> None:
    """Raise the ``KafkaError`` ``send()`` raises for a record over ``max_request_size``."""
    producer._serialize(key, value, [])


# --- admin ------------------------------------------------------------------------------------


async def admin_request(admin: AIOKafkaAdminClient, request: Any) -> Any:
    """Send a raw protocol request (e.g. a metadata request that must not create topics)."""
    return await admin._send_request(request)
