"""v2 consumer request bodies, parsed with Confluent's (Jackson's) rules, minus its 500s.

Pure functions from a decoded JSON body to typed values: every client mistake is raised here
as a 4xx before any instance is looked up, so a bad request never costs a hop to the owner.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition

from sessions.instance import InstanceSpec

from ..body import as_int, as_list, as_str, expect_object
from ..errors import json_detail, unprocessable
from ..registry.client import NOT_CONFIGURED

FORMATS = ("binary", "json", "avro", "jsonschema", "protobuf")
SCHEMA_FORMATS = frozenset({"avro", "jsonschema", "protobuf"})
CREATE_FIELDS = frozenset(
    {
        "name",
        "id",
        "format",
        "auto.offset.reset",
        "auto.commit.enable",
        "fetch.min.bytes",
        "responseMinBytes",
        "consumer.request.timeout.ms",
        "requestWaitMs",
    }
)
AUTO_OFFSET_RESET = ("latest", "earliest", "none")


def parse_create(
    group: str, body: Any, proxy_id: str = "", *, schemas: bool = True
) -> InstanceSpec:
    """Validate a create request the way Confluent does, minus its 500s.

    ``schemas``: whether a schema registry is configured; without one a schema-format
    instance could never read a record, so it is refused up front (422 / 42206).
    """
    if body is None:
        body = {}
    body = expect_object(body, CREATE_FIELDS)
    legacy_id = as_str(body.get("id"), "id")
    name = legacy_id or as_str(body.get("name"), "name")
    if name is None or name == "":
        name = f"rest-consumer-{proxy_id + '-' if proxy_id else ''}{uuid.uuid4()}"
    if "/" in name:
        raise unprocessable(f"Invalid consumer name {name!r}: it must not contain '/'")
    fmt = (as_str(body.get("format"), "format") or "binary").lower()
    if fmt not in FORMATS:
        raise unprocessable("Invalid format type.")
    if fmt in SCHEMA_FORMATS and not schemas:
        raise unprocessable(NOT_CONFIGURED, 42206)
    reset = as_str(body.get("auto.offset.reset"), "auto.offset.reset")
    if reset is not None and reset not in AUTO_OFFSET_RESET:
        raise unprocessable(
            f"Invalid consumer configuration: Invalid value {reset} for configuration "
            "auto.offset.reset: String must be one of: latest, earliest, none",
            42204,
        )
    commit_raw = as_str(body.get("auto.commit.enable"), "auto.commit.enable")
    auto_commit = None
    if commit_raw is not None:
        if commit_raw.strip().lower() not in ("true", "false"):
            raise unprocessable(
                f"Invalid consumer configuration: Invalid value {commit_raw} for configuration "
                "enable.auto.commit: Expected value to be either true or false",
                42204,
            )
        auto_commit = commit_raw.strip().lower() == "true"
    min_bytes = as_int(_either(body, "fetch.min.bytes", "responseMinBytes"), "fetch.min.bytes")
    if min_bytes is not None and not -1 <= min_bytes <= 10_000_000:
        raise unprocessable(
            "Invalid consumer configuration. It does not abide by the constraints: Invalid value "
            f"{min_bytes} for configuration fetch.min.bytes: Value must be in [-1, 10000000]",
            40001,
        )
    wait = as_int(
        _either(body, "consumer.request.timeout.ms", "requestWaitMs"),
        "consumer.request.timeout.ms",
    )
    if wait is not None and wait < 0:
        raise unprocessable(
            f"Invalid consumer configuration: consumer.request.timeout.ms must be >= 0, got {wait}",
            42204,
        )
    return InstanceSpec(
        group=group,
        name=name,
        format=fmt,
        auto_offset_reset=reset,
        auto_commit_enable=auto_commit,
        fetch_min_bytes=min_bytes,
        request_timeout_ms=wait,
        consumer_id=legacy_id,
    )


def _either(body: dict[str, Any], key: str, alias: str) -> Any:
    return body[key] if body.get(key) is not None else body.get(alias)


def parse_commit(body: Any) -> dict[TopicPartition, tuple[int, str]] | None:
    """Explicit offsets to commit, or None: commit everything delivered (also for ``{}``)."""
    if body is None:
        return None
    body = expect_object(body, {"offsets"})
    if body.get("offsets") is None:  # `{}` commits everything, like an empty body
        return None
    offsets = {}
    for item in _list(body, "offsets"):
        item = expect_object(item, {"topic", "partition", "offset", "metadata"}, "offset")
        tp = _tp(item)
        off = _required_int(item, "offset")
        if off < -1:
            raise unprocessable(f"Invalid offset {off} for {tp.topic}-{tp.partition}")
        offsets[tp] = (off, as_str(item.get("metadata"), "metadata") or "")
    return offsets


def parse_subscription(body: Any) -> tuple[list[str] | None, str | None]:
    """(topics, None) or (None, pattern); topics win when both are given, as Confluent."""
    body = expect_object(required_body(body), {"topics", "topic_pattern"})
    topics = as_list(body.get("topics"), "topics")
    pattern = as_str(body.get("topic_pattern"), "topic_pattern")
    if topics is not None:
        for t in topics:
            if not isinstance(t, str) or not t:
                raise unprocessable(f"Invalid topic name {json_detail(t)}")
        return topics, None
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise unprocessable(f"Invalid topic_pattern {pattern!r}: {exc}") from None
    return None, pattern


def parse_seek(body: Any) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(offsets, timestamps in epoch ms) to seek to."""
    body = expect_object(required_body(body), {"offsets", "timestamps"})
    offsets: dict[TopicPartition, int] = {}
    for item in _list(body, "offsets"):
        item = expect_object(item, {"topic", "partition", "offset", "metadata"}, "offset")
        off = _required_int(item, "offset")
        if off < 0:
            raise unprocessable(f"Invalid offset {off}: offsets must be >= 0")
        offsets[_tp(item)] = off
    timestamps: dict[TopicPartition, int] = {}
    for item in _list(body, "timestamps"):
        item = expect_object(item, {"topic", "partition", "timestamp", "metadata"}, "timestamp")
        timestamps[_tp(item)] = parse_timestamp(item.get("timestamp"))
    return offsets, timestamps


def parse_timestamp(value: Any) -> int:
    """ISO-8601 instant -> epoch ms. A JSON number is epoch seconds, as Jackson reads it."""
    if isinstance(value, bool) or value is None:
        raise unprocessable(f"Invalid timestamp {json_detail(value)}")
    if isinstance(value, int | float):
        return int(value * 1000)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if dt.tzinfo is not None:
                return int(dt.timestamp() * 1000)
    raise unprocessable(
        f"Invalid timestamp {json_detail(value)}: expected an ISO-8601 instant such as "
        "2024-01-31T12:00:00Z"
    )


# --- records ------------------------------------------------------------------------------------


def required_body(body: Any) -> Any:
    if body is None:
        raise unprocessable("Request body is required")
    return body


def _list(body: dict[str, Any], key: str) -> list[Any]:
    return as_list(body.get(key), key) or []


def _required_int(item: dict[str, Any], key: str) -> int:
    value = as_int(item.get(key), key)
    if value is None:
        raise unprocessable(f"{key} may not be null")
    return value


def _tp(item: dict[str, Any]) -> TopicPartition:
    topic = as_str(item.get("topic"), "topic")
    if not topic:
        raise unprocessable("topic may not be empty")
    partition = _required_int(item, "partition")
    if partition < 0:
        raise unprocessable(f"Invalid partition {partition}")
    return TopicPartition(topic, partition)


def parse_partitions(body: dict[str, Any]) -> list[TopicPartition]:
    raw = body.get("partitions")
    if raw is None:
        raise unprocessable("partitions may not be null")
    out = []
    for item in as_list(raw, "partitions") or []:
        out.append(_tp(expect_object(item, {"topic", "partition"}, "partition")))
    return out
