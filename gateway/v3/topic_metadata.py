"""Topic and partition metadata as v3 reads it: never creating a topic, Kafka's codes mapped.

aiokafka's ``describe_topics()`` asks with auto-creation allowed, so on a broker with
``auto.create.topics.enable`` a GET for a missing topic would create it. Java's
``describeTopics`` (which Confluent calls) never does; every lookup here says so explicitly.
A name Kafka calls illegal is as absent as a missing one (404/40403, as v2 answers it): the
topic cannot exist, so there is nothing to describe.

Offsets are asked of each partition's leader through the shared admin client (ListOffsets is
not in aiokafka's admin API); a leader that is moving answers with a retriable error and is
looked up and asked again within the request's deadline, as a consumer's offset lookup does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, LeaderNotAvailableError, for_code
from aiokafka.protocol.metadata import MetadataRequest

from sessions import kafka_internals

from ..errors import GatewayError
from ..metadata import list_offset
from .failures import TOPIC_DELETION_DISABLED, v3_failure
from .topic_protocol import MetadataWithOperations, unsupported

UNKNOWN_TOPIC = "This server does not host this topic-partition."
# Kafka's codes for "no such topic" (3) and "not a legal topic name" (17).
_NO_SUCH_TOPIC = frozenset({3, 17})
# ListOffsets' special timestamps (log start, log end), read_uncommitted as Java's listOffsets
# gives them by default (see gateway.metadata.list_offset).
_EARLIEST, _LATEST = -2, -1


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int | None  # None: no leader at the moment
    replicas: list[int]  # in Kafka's order (the first is the preferred leader)
    isr: frozenset[int]


@dataclass(frozen=True)
class TopicInfo:
    name: str
    internal: bool
    partitions: list[PartitionInfo]  # sorted by partition id
    operations: int | None  # Kafka's authorised-operations bit field, when asked for

    @property
    def replication_factor(self) -> int:
        # Confluent's rule: the replica count of partition 0 (all partitions share it unless
        # they were assigned by hand).
        return len(self.partitions[0].replicas) if self.partitions else 0

    def partition(self, partition: int) -> PartitionInfo | None:
        return next((p for p in self.partitions if p.partition == partition), None)


def kafka_error(code: int, message: str | None = None) -> GatewayError:
    """A Kafka error code answered as v3 answers the matching exception."""
    if code in _NO_SUCH_TOPIC:
        return GatewayError(404, 40403, UNKNOWN_TOPIC)
    if code == TOPIC_DELETION_DISABLED:
        return GatewayError(400, 40002, message or "Topic deletion is disabled.")
    return v3_failure(for_code(code)(message) if message else for_code(code)())


async def describe_topic(
    admin: AIOKafkaAdminClient, name: str, operations: bool = False
) -> TopicInfo:
    """One topic (404/40403 when it does not exist); ``operations`` asks Kafka's authorised
    operations for it too."""
    response = await _metadata(admin, [name], operations)
    for topic in response["topics"]:
        if topic["topic"] == name:
            if topic["error_code"]:
                raise kafka_error(topic["error_code"])
            return _topic(topic)
    raise GatewayError(404, 40403, UNKNOWN_TOPIC)


async def describe_for_partition(
    admin: AIOKafkaAdminClient, name: str, partition: int
) -> TopicInfo:
    """The topic a partition path names; an unknown topic's 404 names the partition, as
    Confluent's partition lookups word it."""
    try:
        return await describe_topic(admin, name)
    except GatewayError as exc:
        if exc.error_code != 40403:
            raise
        text = f"This server does not host topic-partition {partition} for topic {name}"
        raise GatewayError(404, 40403, text) from exc


async def describe_all(admin: AIOKafkaAdminClient, operations: bool = False) -> list[TopicInfo]:
    """Every topic Kafka lists, internal ones included (callers filter), in Kafka's order."""
    response = await _metadata(admin, None, operations)
    return [_topic(t) for t in response["topics"] if not t["error_code"]]


async def cluster_metadata(admin: AIOKafkaAdminClient) -> tuple[list[int], list[TopicInfo]]:
    """(broker ids, every topic) from one Metadata answer, so both describe the same moment."""
    response = await _metadata(admin, None, False)
    brokers = [b["node_id"] for b in response["brokers"]]
    return brokers, [_topic(t) for t in response["topics"] if not t["error_code"]]


async def _metadata(
    admin: AIOKafkaAdminClient, topics: list[str] | None, operations: bool
) -> dict[str, Any]:
    request = (
        MetadataWithOperations(topics)
        if operations
        else MetadataRequest(topics, allow_auto_topic_creation=False)
    )
    try:
        response = await kafka_internals.admin_request(admin, request)
    except NotImplementedError as exc:
        raise unsupported(exc) from exc
    found: dict[str, Any] = response.to_object()
    return found


def _topic(topic: dict[str, Any]) -> TopicInfo:
    operations = topic.get("topic_authorized_operations")
    return TopicInfo(
        name=topic["topic"],
        internal=bool(topic.get("is_internal")),
        partitions=sorted(
            (
                PartitionInfo(
                    partition=p["partition"],
                    leader=p["leader"] if p["leader"] is not None and p["leader"] >= 0 else None,
                    replicas=list(p["replicas"] or ()),
                    isr=frozenset(p["isr"] or ()),
                )
                for p in topic["partitions"]
            ),
            key=lambda p: p.partition,
        ),
        operations=operations,
    )


async def offsets(admin: AIOKafkaAdminClient, topic: TopicInfo, partition: int) -> tuple[int, int]:
    """(log start, log end) of a partition ``topic`` has; the leader is asked directly."""
    delay = 0.05
    info = topic.partition(partition)
    while True:
        try:
            if info is None:  # vanished between two lookups (the topic was deleted)
                raise GatewayError(404, 40402, "Partition not found.")
            if info.leader is None:
                raise LeaderNotAvailableError(f"partition {partition} of {topic.name}")
            tp = TopicPartition(topic.name, partition)
            earliest, latest = await asyncio.gather(
                list_offset(admin, tp, info.leader, _EARLIEST),
                list_offset(admin, tp, info.leader, _LATEST),
            )
        except KafkaError as exc:
            if not exc.retriable:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            info = (await describe_topic(admin, topic.name)).partition(partition)
        else:
            return earliest, latest
