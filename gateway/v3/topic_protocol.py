"""Two Kafka requests in versions aiokafka does not speak: CreateTopics v5 and Metadata v8.

aiokafka stops at CreateTopics v3, whose answer says only whether the topic was created. v5
(KIP-525) also returns the partition count and replication factor the broker chose, so a
``POST …/topics`` without them answers the broker defaults, as Confluent's does, without a
second lookup racing the new topic's metadata. aiokafka stops at Metadata v5; v8 (KIP-430)
adds each topic's authorised operations, Kafka's own answer to "what may this caller do with
it", which ``include_authorized_operations=true`` shows.

Both are built from aiokafka's own protocol types and sent with
:func:`sessions.kafka_internals.admin_request`; aiokafka negotiates the version per broker and
refuses (``NotImplementedError``) a broker too old for them, which :func:`unsupported` turns
into Confluent's 400 for an unsupported version rather than a 500.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Array,
    Boolean,
    CompactArray,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    String,
    TaggedFields,
)

from ..errors import GatewayError

# --- CreateTopics v5 (flexible: compact strings and arrays, tagged fields) ---------------------


class CreateTopicsResponse_v5(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 19
    API_VERSION = 5
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("num_partitions", Int32),
                ("replication_factor", Int16),
                (
                    "configs",
                    CompactArray(
                        ("name", CompactString("utf-8")),
                        ("value", CompactString("utf-8")),
                        ("read_only", Boolean),
                        ("config_source", Int8),
                        ("is_sensitive", Boolean),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),  # tag 0: topic_config_error_code
            ),
        ),
        ("tags", TaggedFields),
    )


class CreateTopicsRequest_v5(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    FLEXIBLE_VERSION = True
    API_KEY = 19
    API_VERSION = 5
    RESPONSE_TYPE = CreateTopicsResponse_v5
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("num_partitions", Int32),
                ("replication_factor", Int16),
                (
                    "assignments",
                    CompactArray(
                        ("partition_index", Int32),
                        ("broker_ids", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                (
                    "configs",
                    CompactArray(
                        ("name", CompactString("utf-8")),
                        ("value", CompactString("utf-8")),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("timeout_ms", Int32),
        ("validate_only", Boolean),
        ("tags", TaggedFields),
    )


CreateTopicsStruct: TypeAlias = CreateTopicsRequest_v5


class CreateTopic(Request[CreateTopicsStruct]):  # type: ignore[misc]  # aiokafka is untyped
    """One topic to create; ``-1`` partitions / replication factor ask for the broker default
    (and must be -1 when ``assignments`` name the replicas)."""

    API_KEY = 19

    def __init__(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        assignments: dict[int, list[int]],
        configs: list[tuple[str, str | None]],
        timeout_ms: int,
        validate_only: bool,
    ) -> None:
        self.topic: tuple[Any, ...] = (
            name,
            partitions,
            replication_factor,
            [(p, brokers, {}) for p, brokers in assignments.items()],
            [(k, v, {}) for k, v in configs],
            {},
        )
        self.timeout_ms = timeout_ms
        self.validate_only = validate_only

    def build(self, request_struct_class: type[CreateTopicsStruct]) -> CreateTopicsStruct:
        return request_struct_class([self.topic], self.timeout_ms, self.validate_only, {})


# Positions in a CreateTopics v5 topic result (the configs array may be null, which
# aiokafka's to_object() cannot walk, so results are read by position).
NAME, ERROR_CODE, ERROR_MESSAGE, NUM_PARTITIONS, REPLICATION_FACTOR = range(5)


# --- Metadata v8 (not flexible; adds authorised operations) ------------------------------------


class MetadataResponse_v8(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            Array(
                ("node_id", Int32),
                ("host", String("utf-8")),
                ("port", Int32),
                ("rack", String("utf-8")),
            ),
        ),
        ("cluster_id", String("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            Array(
                ("error_code", Int16),
                ("topic", String("utf-8")),
                ("is_internal", Boolean),
                (
                    "partitions",
                    Array(
                        ("error_code", Int16),
                        ("partition", Int32),
                        ("leader", Int32),
                        ("leader_epoch", Int32),
                        ("replicas", Array(Int32)),
                        ("isr", Array(Int32)),
                        ("offline_replicas", Array(Int32)),
                    ),
                ),
                ("topic_authorized_operations", Int32),
            ),
        ),
        ("cluster_authorized_operations", Int32),
    )


class MetadataRequest_v8(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = MetadataResponse_v8
    SCHEMA = Schema(
        ("topics", Array(String("utf-8"))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


MetadataStruct: TypeAlias = MetadataRequest_v8


class MetadataWithOperations(Request[MetadataStruct]):  # type: ignore[misc]  # aiokafka is untyped
    """Metadata of ``topics`` (None: every topic) with their authorised operations; never
    creates a topic, whatever the broker's ``auto.create.topics.enable``."""

    API_KEY = 3

    def __init__(self, topics: list[str] | None) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[MetadataStruct]) -> MetadataStruct:
        return request_struct_class(self.topics, False, False, True)


def unsupported(exc: NotImplementedError) -> GatewayError:
    """A broker too old for these versions: Confluent's answer to UnsupportedVersion."""
    return GatewayError(400, 40002, f"The broker does not support this request: {exc}")
