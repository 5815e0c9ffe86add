"""Kafka's IncrementalAlterConfigs (API key 44), which aiokafka does not define.

aiokafka's ``alter_configs`` sends the legacy AlterConfigs (key 33), which *replaces* a
resource's whole set of dynamic configs: a PUT of one topic config through it would silently
reset every other override of the topic. IncrementalAlterConfigs (KIP-339) changes only the
named configs (SET one, DELETE one back to its default), which is what Confluent's v3 sends
and what a PUT of one config means. Version 0 is the plain (non-flexible) encoding every
Kafka since 2.3 accepts; aiokafka negotiates it per connection like its own requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

# ConfigResource types on the wire (Kafka's ConfigResource.Type ids).
TOPIC = 2
BROKER = 4

# AlterConfigOp.OpType ids: only SET and DELETE are offered by v3 (APPEND/SUBTRACT are not).
SET = 0
DELETE = 1


@dataclass(frozen=True)
class AlterOp:
    """One incremental change: SET ``name`` to ``value``, or DELETE it (back to its default)."""

    name: str
    operation: int
    value: str | None = None


@dataclass(frozen=True)
class AlterResource:
    """The changes to one resource (a topic, a broker, or ``""``: the cluster-wide default)."""

    resource_type: int
    name: str
    ops: tuple[AlterOp, ...]


class IncrementalAlterConfigsResponse_v0(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
            ),
        ),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                (
                    "configs",
                    Array(
                        ("name", String("utf-8")),
                        ("config_operation", Int8),
                        ("value", String("utf-8")),  # nullable: None is sent as length -1
                    ),
                ),
            ),
        ),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigsRequest(Request[IncrementalAlterConfigsRequest_v0]):  # type: ignore[misc]
    """The request as aiokafka's client sends it (the version chosen per connection)."""

    API_KEY = 44

    def __init__(self, resources: list[AlterResource], validate_only: bool = False) -> None:
        self._resources = resources
        self._validate_only = validate_only

    def build(
        self, request_struct_class: type[IncrementalAlterConfigsRequest_v0]
    ) -> IncrementalAlterConfigsRequest_v0:
        resources: list[Any] = [
            (r.resource_type, r.name, [(op.name, op.operation, op.value) for op in r.ops])
            for r in self._resources
        ]
        return request_struct_class(resources, self._validate_only)
