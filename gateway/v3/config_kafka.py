"""Describing and changing configs in Kafka, for every config family v3 serves.

Describe always asks for synonyms (v3 shows them, as Confluent's ``includeSynonyms(true)``).
A broker's own configs can only be described or changed by that broker (any other answers
"Unexpected broker id"), so those requests go to it; topics and the cluster-wide broker
defaults (the broker resource named ``""``) may go to any broker, which forwards a change to
the controller. Callers hold the request's :func:`~.failures.kafka_deadline`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeConfigsRequest

from sessions import kafka_internals

from ..errors import GatewayError
from .config_entries import ConfigEntry, from_kafka
from .config_protocol import AlterResource, IncrementalAlterConfigsRequest
from .failures import v3_failure

# Kafka's codes for "no such topic" (3) and "not a legal topic name" (17): a name that cannot
# exist is as absent as one that does not, so both are 404 40403.
_NO_SUCH_TOPIC = frozenset({3, 17})
_NO_SUCH_TOPIC_TEXT = "This server does not host this topic-partition."


@dataclass(frozen=True)
class Described:
    """One resource's answer: its entries (unsorted), or the failure Kafka reported for it."""

    name: str
    entries: tuple[ConfigEntry, ...]
    failure: GatewayError | None

    def checked(self) -> tuple[ConfigEntry, ...]:
        if self.failure is not None:
            raise self.failure
        return self.entries


async def describe(
    admin: AIOKafkaAdminClient,
    resource_type: int,
    names: Sequence[str],
    node_id: int | None = None,
) -> list[Described]:
    """Every config of each named resource, in the order asked (one request)."""
    if not names:
        return []
    request = DescribeConfigsRequest(
        [(resource_type, name, None) for name in names], include_synonyms=True
    )
    response = await kafka_internals.admin_request(admin, request, node_id)
    found: dict[str, Described] = {}
    for resource in response.to_object()["resources"]:
        name = resource["resource_name"]
        code = resource["error_code"]
        failure = _failure(code, resource["error_message"]) if code else None
        entries = () if failure else tuple(from_kafka(e) for e in resource["config_entries"])
        found[name] = Described(name, entries, failure)
    missing = GatewayError(500, 50002, "Kafka's answer did not describe the resource")
    return [found.get(name, Described(name, (), missing)) for name in names]


async def alter(
    admin: AIOKafkaAdminClient,
    resources: Sequence[AlterResource],
    validate_only: bool = False,
    node_id: int | None = None,
) -> dict[str, GatewayError | None]:
    """Apply (or, with ``validate_only``, only check) each resource's changes, in one
    request; by resource name, None where Kafka accepted them, else its refusal."""
    if not resources:
        return {}
    request = IncrementalAlterConfigsRequest(list(resources), validate_only)
    response = await kafka_internals.admin_request(admin, request, node_id)
    answers: dict[str, GatewayError | None] = {}
    for result in response.to_object()["responses"]:
        code = result["error_code"]
        answers[result["resource_name"]] = _failure(code, result["error_message"]) if code else None
    missing = GatewayError(500, 50002, "Kafka's answer did not mention the resource")
    return {r.name: answers.get(r.name, missing) for r in resources}


async def alter_one(
    admin: AIOKafkaAdminClient,
    resource: AlterResource,
    validate_only: bool = False,
    node_id: int | None = None,
) -> None:
    """:func:`alter` for one resource, raising Kafka's refusal."""
    failure = (await alter(admin, [resource], validate_only, node_id))[resource.name]
    if failure is not None:
        raise failure


def _failure(code: int, message: str | None) -> GatewayError:
    """Kafka's per-resource error as v3 answers it (reference 3.2), with Kafka's text."""
    if code in _NO_SUCH_TOPIC:
        return GatewayError(404, 40403, message or _NO_SUCH_TOPIC_TEXT)
    error_class = for_code(code)
    return v3_failure(error_class(message) if message else error_class())
