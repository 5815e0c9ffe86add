"""v2 consumer request bodies, parsed with Confluent's (Jackson's) rules, minus its 500s.

Pure functions from a decoded JSON body to typed values: every client mistake is raised here
as a 4xx before any instance is looked up, so a bad request never costs a hop to the owner.
Every value is checked against what the layers below can take, not just against its JSON type:
a partition past Java's ``int``, an offset past ``long`` or a wait of 1e300 would otherwise be
accepted here and fail (or wedge an instance's fetcher) deep inside the Kafka client.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import re2
from aiokafka import TopicPartition

from sessions.instance import InstanceSpec, compile_pattern

from ..body import INT32, INT64, as_int, as_list, as_str, expect_object, in_range
from ..config import KEYS
from ..errors import json_detail, unprocessable
from ..paths import check_name
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
        "include.metadata",
    }
)
AUTO_OFFSET_RESET = ("latest", "earliest", "none")

# A create body's wait above consumer.request.timeout.max.ms is refused; the records query's
# ``timeout`` can only lower an instance's wait, so the maximum bounds every read.
DEFAULT_MAX_WAIT_MS: int = KEYS["consumer.request.timeout.max.ms"].default

# Kafka's own rule for topic names (org.apache.kafka.common.internals.Topic): a name outside it
# can never exist, so a body naming one is a client mistake to answer now, not a Kafka error
# to surface later from inside a consumer.
MAX_TOPIC = 249
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]+")

# A subscription pattern is compiled (and matched against every topic of the cluster at each
# metadata refresh) on the event loop: RE2 keeps both linear, and this keeps them small.
MAX_TOPIC_PATTERN = 4096

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_create(
    group: str,
    body: Any,
    proxy_id: str = "",
    *,
    schemas: bool = True,
    max_wait_ms: int = DEFAULT_MAX_WAIT_MS,
) -> InstanceSpec:
    """Validate a create request the way Confluent does, minus its 500s.

    ``schemas``: whether a schema registry is configured; without one a schema-format
    instance could never read a record, so it is refused up front (422 / 42206).
    ``max_wait_ms``: ``consumer.request.timeout.max.ms``, the longest wait an instance may ask.
    """
    check_name("group", group)
    if body is None:
        body = {}
    body = expect_object(body, CREATE_FIELDS)
    legacy_id = as_str(body.get("id"), "id")
    name = legacy_id or as_str(body.get("name"), "name")
    if name is None or name == "":
        name = f"rest-consumer-{proxy_id + '-' if proxy_id else ''}{uuid.uuid4()}"
    else:
        check_name("instance", name)
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
    if wait is not None and not 0 <= wait <= max_wait_ms:
        raise unprocessable(
            f"Invalid consumer configuration: consumer.request.timeout.ms must be in "
            f"[0, {max_wait_ms}] (the maximum is consumer.request.timeout.max.ms), got {wait}",
            42204,
        )
    metadata_raw = as_str(body.get("include.metadata"), "include.metadata")
    include_metadata = False
    if metadata_raw is not None:
        if metadata_raw.strip().lower() not in ("true", "false"):
            raise unprocessable(
                f"Invalid consumer configuration: Invalid value {metadata_raw} for "
                "include.metadata: Expected value to be either true or false",
                42204,
            )
        include_metadata = metadata_raw.strip().lower() == "true"
    return InstanceSpec(
        group=group,
        name=name,
        format=fmt,
        include_metadata=include_metadata,
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
        off = _required_int(item, "offset", INT64)
        # The offset of the last processed record: Kafka stores off + 1, which must be a long
        # too (-1 commits 0: "start over", as Confluent users reset a group).
        if not -1 <= off <= INT64[1] - 1:
            raise unprocessable(
                f"Invalid offset {off} for {tp.topic}-{tp.partition}: it must be in "
                f"[-1, {INT64[1] - 1}]"
            )
        offsets[tp] = (off, as_str(item.get("metadata"), "metadata") or "")
    return offsets


def parse_subscription(body: Any) -> tuple[list[str] | None, str | None]:
    """(topics, None) or (None, pattern); topics win when both are given, as Confluent."""
    body = expect_object(required_body(body), {"topics", "topic_pattern"})
    topics = as_list(body.get("topics"), "topics")
    pattern = as_str(body.get("topic_pattern"), "topic_pattern")
    if topics is not None:
        for t in topics:
            if not isinstance(t, str):
                raise unprocessable(f"Invalid topic name {json_detail(t)}")
            check_topic(t)
        return topics, None
    if pattern is not None:
        compile_topic_pattern(pattern)
    return None, pattern


def compile_topic_pattern(text: str) -> Any:
    """``text`` compiled with RE2 (as the instance will match it), or 422 saying why not.

    Confluent compiles a ``java.util.regex`` pattern; RE2 takes the same syntax except the
    constructs that need backtracking (backreferences, lookaround, possessive quantifiers),
    which are exactly the ones that let one pattern freeze a replica. Python's ``re`` never
    sees a client's pattern.
    """
    if len(text) > MAX_TOPIC_PATTERN:
        raise unprocessable(
            f"Invalid topic_pattern: it is {len(text)} characters long, "
            f"the limit is {MAX_TOPIC_PATTERN}"
        )
    try:
        return compile_pattern(text)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise unprocessable(
            f"Invalid topic_pattern {text!r}: {reason}. Patterns use RE2 syntax (Java's, "
            "without backreferences, lookaround or possessive quantifiers), so that "
            "matching takes linear time"
        ) from None


def check_topic(topic: str) -> str:
    """``topic`` if Kafka allows the name, else 422: a topic so named can never exist."""
    if not topic:
        raise unprocessable('Invalid topic name "": it may not be empty')
    if len(topic) > MAX_TOPIC:
        raise unprocessable(
            f"Invalid topic name {topic[:MAX_TOPIC]!r}...: it is {len(topic)} characters long, "
            f"Kafka's limit is {MAX_TOPIC}"
        )
    if topic in (".", "..") or not _LEGAL_TOPIC.fullmatch(topic):
        raise unprocessable(
            f"Invalid topic name {topic!r}: Kafka topic names use only ASCII letters, "
            "digits, '.', '_' and '-' (and are not '.' or '..')"
        )
    return topic


def parse_seek(body: Any) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(offsets, timestamps in epoch ms) to seek to."""
    body = expect_object(required_body(body), {"offsets", "timestamps"})
    offsets: dict[TopicPartition, int] = {}
    for item in _list(body, "offsets"):
        item = expect_object(item, {"topic", "partition", "offset", "metadata"}, "offset")
        off = in_range(_required_int(item, "offset", INT64), "offset", 0, INT64[1])
        offsets[_tp(item)] = off
    timestamps: dict[TopicPartition, int] = {}
    for item in _list(body, "timestamps"):
        item = expect_object(item, {"topic", "partition", "timestamp", "metadata"}, "timestamp")
        timestamps[_tp(item)] = parse_timestamp(item.get("timestamp"))
    return offsets, timestamps


def parse_timestamp(value: Any) -> int:
    """ISO-8601 instant -> epoch ms. A JSON number is epoch seconds, as Jackson reads it.

    The result is a Kafka record timestamp: from the epoch (Kafka reads negative ones as
    "latest"/"earliest" markers) to the largest ``long``.
    """
    if isinstance(value, bool) or value is None:
        raise unprocessable(f"Invalid timestamp {json_detail(value)}")
    ms: int | None = None
    if isinstance(value, int | float):
        seconds = float(value)
        # Checked as a float first: a huge number would overflow to infinity (a 500).
        if math.isfinite(seconds) and abs(seconds) < 2**63 / 1000:
            ms = int(value * 1000)
    elif isinstance(value, str) and len(value) <= 64:
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
                ms = (dt - _EPOCH) // _MS  # exact: no float rounding of far-off instants
    if ms is None:
        raise unprocessable(
            f"Invalid timestamp {json_detail(value)}: expected an ISO-8601 instant such as "
            "2024-01-31T12:00:00Z"
        )
    if not 0 <= ms <= INT64[1]:
        raise unprocessable(
            f"Invalid timestamp {json_detail(value)}: it must be between "
            f"1970-01-01T00:00:00Z and {INT64[1]} ms after it"
        )
    return ms


# --- records ------------------------------------------------------------------------------------


def required_body(body: Any) -> Any:
    if body is None:
        raise unprocessable("Request body is required")
    return body


def _list(body: dict[str, Any], key: str) -> list[Any]:
    return as_list(body.get(key), key) or []


def _required_int(item: dict[str, Any], key: str, java: tuple[int, int] = INT32) -> int:
    value = as_int(item.get(key), key, java)
    if value is None:
        raise unprocessable(f"{key} may not be null")
    return value


def _tp(item: dict[str, Any]) -> TopicPartition:
    topic = as_str(item.get("topic"), "topic")
    if not topic:
        raise unprocessable("topic may not be empty")
    check_topic(topic)
    partition = in_range(_required_int(item, "partition"), "partition", 0, INT32[1])
    return TopicPartition(topic, partition)


def parse_partitions(body: dict[str, Any]) -> list[TopicPartition]:
    raw = body.get("partitions")
    if raw is None:
        raise unprocessable("partitions may not be null")
    out = []
    for item in as_list(raw, "partitions") or []:
        out.append(_tp(expect_object(item, {"topic", "partition"}, "partition")))
    return out
