"""``POST …/topics``: the create body as Confluent reads it, and the one CreateTopics call.

The body follows Confluent's ``CreateTopicRequest`` with Jackson's coercions (a numeric string
is an int, an unknown field 422). A name Kafka could never accept is refused before Kafka is
asked (422/42206 ``Payload error. Invalid topic name.``, as Confluent's ``Topic.validate``);
everything else (counts, replication factor against live brokers, config names and values)
is Kafka's to judge, and its verdict is 400/40002 with Kafka's own message.

Explicit ``replicas_assignments`` win over the counts (Kafka refuses both at once): the
partition count is the number of assignments, the replication factor the length of the first.
Values left out are the broker's defaults, which CreateTopics v5 reports back, so the answer
shows what Kafka created; if Kafka withholds them (the caller may create but not describe
configs, KIP-525) the requested values are shown, or 0, as Confluent does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code

from sessions import kafka_internals

from ..body import as_int, as_list, as_str, expect_object
from ..context import CONFIG
from ..errors import GatewayError, bad_request, json_detail
from .failures import v3_failure
from .requests import payload_error, read_object
from .topic_protocol import (
    ERROR_CODE,
    ERROR_MESSAGE,
    NUM_PARTITIONS,
    REPLICATION_FACTOR,
    CreateTopic,
    unsupported,
)

FIELDS = frozenset(
    {
        "topic_name",
        "partitions_count",
        "replication_factor",
        "replicas_assignments",
        "configs",
        "validate_only",
    }
)
INT16 = (-(2**15), 2**15 - 1)  # Java short: the replication factor
# Kafka's org.apache.kafka.common.internals.Topic rules.
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
MAX_NAME = 249


@dataclass(frozen=True)
class NewTopic:
    name: str
    partitions: int | None
    replication_factor: int | None
    assignments: dict[int, list[int]]
    configs: list[tuple[str, str | None]]
    validate_only: bool

    @property
    def requested(self) -> tuple[int, int]:
        """(partitions, replication factor) as asked, 0 for a broker default (Confluent's
        stand-in when Kafka does not report the real ones)."""
        if self.assignments:
            return len(self.assignments), len(next(iter(self.assignments.values())))
        return self.partitions or 0, self.replication_factor or 0


@dataclass(frozen=True)
class Created:
    partitions: int
    replication_factor: int


def legal_topic_name(name: str | None) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and len(name or "") <= MAX_NAME
        and _LEGAL.fullmatch(name or "") is not None
    )


# A topic with more partitions than this is a client mistake answered here: Kafka's KRaft
# controller refuses any admin operation writing more than 10,000 records (one per new
# partition), and a count in the millions keeps it busy past the request's deadline before
# it does, which the client would see as Kafka being unavailable.
MAX_PARTITIONS = 10_000


def check_partition_count(count: int | None) -> int | None:
    if count is not None and count > MAX_PARTITIONS:
        raise GatewayError(
            400,
            40002,
            f"Invalid partitions_count {count}: at most {MAX_PARTITIONS} partitions can be"
            " created in one request (Kafka's limit on records per admin operation).",
        )
    return count


async def read_new_topic(request: web.Request) -> NewTopic:
    body = await read_object(request, FIELDS, empty="Request body is empty. Data is required.")
    name = as_str(body.get("topic_name"), "topic_name")
    if name is None or not legal_topic_name(name):
        raise payload_error("Invalid topic name.")
    return NewTopic(
        name=name,
        partitions=check_partition_count(as_int(body.get("partitions_count"), "partitions_count")),
        replication_factor=as_int(body.get("replication_factor"), "replication_factor", INT16),
        assignments=_assignments(body.get("replicas_assignments")),
        configs=_configs(body.get("configs")),
        validate_only=_as_bool(body.get("validate_only"), "validate_only"),
    )


def _assignments(value: Any) -> dict[int, list[int]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(
            "Cannot deserialize field 'replicas_assignments': expected a JSON object, got "
            + json_detail(value)
        )
    assignments: dict[int, list[int]] = {}
    for key, brokers in value.items():
        partition = as_int(key, "replicas_assignments")
        assert partition is not None  # a JSON object key is never null
        listed = as_list(brokers, f"replicas_assignments.{key}") or []
        assignments[partition] = [_required_int(b, f"replicas_assignments.{key}") for b in listed]
    return assignments


def _required_int(value: Any, name: str) -> int:
    number = as_int(value, name)
    if number is None:
        raise bad_request(f"Cannot deserialize null into a broker id for field '{name}'")
    return number


def _configs(value: Any) -> list[tuple[str, str | None]]:
    configs: list[tuple[str, str | None]] = []
    for entry in as_list(value, "configs") or []:
        fields = expect_object(entry, ("name", "value"), "configs entry")
        name = as_str(fields.get("name"), "name")
        if not name:
            raise payload_error("Config name is required.")
        configs.append((name, as_str(fields.get("value"), "value")))
    return configs


def _as_bool(value: Any, name: str) -> bool:
    """Jackson's Boolean coercion: true/false, their text, null (here: false)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(
        f"Cannot deserialize value of type `Boolean` from {json_detail(value)} for field '{name}'"
    )


async def create_topic(
    request: web.Request, admin: AIOKafkaAdminClient, topic: NewTopic
) -> Created:
    """Create (or, with ``validate_only``, only validate) ``topic``; Kafka's refusal raised."""
    explicit = bool(topic.assignments)
    call = CreateTopic(
        topic.name,
        -1 if explicit or topic.partitions is None else topic.partitions,
        -1 if explicit or topic.replication_factor is None else topic.replication_factor,
        topic.assignments,
        topic.configs,
        request.app[CONFIG].kafka_timeout_ms,
        topic.validate_only,
    )
    try:
        response = await kafka_internals.admin_request(admin, call)
    except NotImplementedError as exc:
        raise unsupported(exc) from exc
    (row,) = response.topics
    if row[ERROR_CODE]:
        # Here an illegal name (17) is a refusal of the request (400), not an absent topic.
        raise _refusal(row[ERROR_CODE], row[ERROR_MESSAGE])
    partitions, replication = topic.requested
    return Created(
        partitions=row[NUM_PARTITIONS] if row[NUM_PARTITIONS] >= 0 else partitions,
        replication_factor=(
            row[REPLICATION_FACTOR] if row[REPLICATION_FACTOR] >= 0 else replication
        ),
    )


def _refusal(code: int, message: str | None) -> GatewayError:
    error = for_code(code)
    return v3_failure(error(message) if message else error())
