"""v2 metadata: ``GET/POST /``, ``GET /topics[/{t}[/partitions[/{p}[/offsets]]]]``, ``/brokers``.

Read-only views of the cluster for v2 clients (dashboards, scripts checking a topic exists
before producing). Every Kafka round trip of a request shares one deadline of
``kafka.timeout.ms``: an unreachable cluster is a quick, retriable 503, never a hung request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, LeaderNotAvailableError, for_code
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.offset import OffsetRequest

from sessions import kafka_internals

from .body import as_str, expect_object, read_json
from .context import CONFIG, RESPONSE_TYPE
from .errors import (
    GatewayError,
    describe,
    kafka_error_code,
    kafka_unavailable,
    partition_not_found,
    topic_not_found,
)
from .kafka_pool import kafka_of
from .media import METADATA_CONSUMES, V2_LOW, V2_ONLY, check_content_type, respond_as
from .paths import PARTITION, path_partition
from .security.authz import authorizer

# Kafka's codes for "no such topic" (3) and "not a legal topic name" (17): a name that cannot
# exist is as absent as one that does not, so both are 404 40403.
_NO_SUCH_TOPIC = frozenset({3, 17})

# ListOffsets' special timestamps (the log start and the log end) and isolation level
# (read_uncommitted: the log end, as Java's listOffsets gives it by default).
_EARLIEST, _LATEST = -2, -1
_READ_UNCOMMITTED = 0


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", root)
    app.router.add_post("/", root)
    app.router.add_get("/topics", list_topics)
    app.router.add_get("/topics/{topic}", get_topic)
    app.router.add_get("/topics/{topic}/partitions", list_partitions)
    app.router.add_get(f"/topics/{{topic}}/partitions/{PARTITION}", get_partition)
    app.router.add_get(f"/topics/{{topic}}/partitions/{PARTITION}/offsets", get_offsets)
    app.router.add_get("/brokers", list_brokers)


# --- handlers ------------------------------------------------------------------------------


async def root(request: web.Request) -> web.Response:
    """Liveness no-op; POST takes Confluent's map of string settings and ignores it."""
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_LOW)
    if request.method == "POST":
        body = await read_json(request)
        if body is not None:
            if not isinstance(body, dict):
                expect_object(body, ())  # raises the Jackson-style 400
            for name, value in body.items():
                as_str(value, name)
    return _json(request, {})


async def list_topics(request: web.Request) -> web.Response:
    """Topic names without Kafka's internal ones, as Java's ``listTopics()`` defaults to."""
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    async with _kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topics = await admin.describe_topics()
    names = sorted(t["topic"] for t in topics if not _internal(t))
    return _json(request, authorizer(request).visible_topics(request, names))


async def get_topic(request: web.Request) -> web.Response:
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    name = request.match_info["topic"]
    _may_describe(request, name)
    async with _kafka_deadline(request):
        admin = await kafka_of(request).admin()
        # Both round trips at once; the describe result decides a 404 before configs matter.
        described: dict[str, Any] | BaseException
        configured: dict[str, str | None] | BaseException
        described, configured = await asyncio.gather(
            _describe_topic(admin, name), _topic_configs(admin, name), return_exceptions=True
        )
    if isinstance(described, BaseException):
        raise described
    if isinstance(configured, BaseException):
        raise configured
    return _json(
        request, {"name": name, "configs": configured, "partitions": _partitions(described)}
    )


async def list_partitions(request: web.Request) -> web.Response:
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    _may_describe(request, request.match_info["topic"])
    async with _kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topic = await _describe_topic(admin, request.match_info["topic"])
    return _json(request, _partitions(topic))


async def get_partition(request: web.Request) -> web.Response:
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    partition = path_partition(request)
    _may_describe(request, request.match_info["topic"])
    async with _kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topic = await _describe_topic(admin, request.match_info["topic"])
    return _json(request, _find_partition(topic, partition))


async def get_offsets(request: web.Request) -> web.Response:
    """Earliest and log-end offsets (read_uncommitted), as Java's ``listOffsets`` gives them."""
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    partition = path_partition(request)
    name = request.match_info["topic"]
    _may_describe(request, name)
    async with _kafka_deadline(request):
        admin = await kafka_of(request).admin()
        beginning, end = await _offsets(admin, TopicPartition(name, partition))
    return _json(request, {"beginning_offset": beginning, "end_offset": end})


async def list_brokers(request: web.Request) -> web.Response:
    # Confluent's BrokersResource has no @Consumes, so any request Content-Type is accepted.
    respond_as(request, V2_LOW)
    authorizer(request).any_topic(request)
    async with _kafka_deadline(request):
        admin = await kafka_of(request).admin()
        cluster = await admin.describe_cluster()
    return _json(request, {"brokers": sorted(b["node_id"] for b in cluster["brokers"])})


def _may_describe(request: web.Request, topic: str) -> None:
    # Before any Kafka lookup: a refusal must not depend on (and so reveal) whether it exists.
    authorizer(request).topics(request, "describe", [topic])


# --- Kafka lookups -------------------------------------------------------------------------


async def _describe_topic(admin: AIOKafkaAdminClient, name: str) -> dict[str, Any]:
    # aiokafka's describe_topics() asks with auto-creation allowed: on a broker with
    # auto.create.topics.enable a GET for a missing topic would create it. Java's
    # describeTopics never does, so this request says so explicitly.
    request = MetadataRequest([name], allow_auto_topic_creation=False)
    response = await kafka_internals.admin_request(admin, request)
    for topic in response.to_object()["topics"]:
        if topic["topic"] != name:
            continue
        code = topic["error_code"]
        if code in _NO_SUCH_TOPIC:
            raise topic_not_found(f"Topic {name} not found.")
        if code:
            raise _kafka_failure(for_code(code)())
        found: dict[str, Any] = topic
        return found
    raise topic_not_found(f"Topic {name} not found.")


async def _topic_configs(admin: AIOKafkaAdminClient, name: str) -> dict[str, str | None]:
    """Every config of the topic, defaults included; sensitive values are hidden as null."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    configs: dict[str, str | None] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            code = resource["error_code"]
            if code in _NO_SUCH_TOPIC:
                raise topic_not_found(f"Topic {name} not found.")
            if code:
                raise _kafka_failure(for_code(code)(resource.get("error_message") or ""))
            for entry in resource["config_entries"]:
                sensitive = entry.get("is_sensitive", False)
                configs[entry["config_names"]] = None if sensitive else entry["config_value"]
    return configs


async def _offsets(admin: AIOKafkaAdminClient, tp: TopicPartition) -> tuple[int, int]:
    """(log start, log end) of ``tp``, asked of its leader through the shared admin client.

    aiokafka's admin client has no ListOffsets, so the request is sent raw. Not a consumer:
    one built per request cost a bootstrap and a metadata round trip per call (and sockets a
    flood of calls could pile up), and a shared one would add every topic ever asked about to
    its metadata refreshes, for good.

    A leader that is moving (or, just after the topic was created, not serving it yet) answers
    with a retriable error: the leader is looked up again and asked again, within the
    request's deadline, as a consumer's own offset lookup does.
    """
    delay = 0.05
    while True:
        leader = _find_partition(await _describe_topic(admin, tp.topic), tp.partition)["leader"]
        try:
            if leader < 0:
                raise LeaderNotAvailableError(f"partition {tp.partition} of {tp.topic}")
            beginning, end = await asyncio.gather(
                list_offset(admin, tp, leader, _EARLIEST), list_offset(admin, tp, leader, _LATEST)
            )
        except KafkaError as exc:
            if not exc.retriable:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        else:
            return beginning, end


async def list_offset(admin: AIOKafkaAdminClient, tp: TopicPartition, leader: int, at: int) -> int:
    """The offset ListOffsets answers for ``tp`` at ``at`` (-2 log start, -1 log end,
    read_uncommitted), asked of its ``leader``; v3's partition offsets use it too."""
    # One partition per request: Kafka refuses a request that names a partition twice.
    request = OffsetRequest(-1, _READ_UNCOMMITTED, [(tp.topic, [(tp.partition, at)])])
    response = await kafka_internals.admin_request(admin, request, leader)
    for topic in response.to_object()["topics"]:
        for p in topic["partitions"]:
            if topic["topic"] != tp.topic or p["partition"] != tp.partition:
                continue
            code = p["error_code"]
            if code:  # a vanished topic is found by the next describe; others are Kafka's
                raise for_code(code)()
            offset: int = p["offset"] if "offset" in p else p["offsets"][0]  # v1+ / v0
            return offset
    raise kafka_unavailable(f"no offset for partition {tp.partition} of {tp.topic} in the answer")


# --- shaping -------------------------------------------------------------------------------


def _internal(topic: dict[str, Any]) -> bool:
    # is_internal comes with Metadata v1+; the "__" prefix is the fallback for older answers
    # (and keeps e.g. __share_group_state out on brokers that do not flag it).
    return bool(topic.get("is_internal")) or topic["topic"].startswith("__")


def _partitions(topic: dict[str, Any]) -> list[dict[str, Any]]:
    return [_partition(p) for p in sorted(topic["partitions"], key=lambda p: p["partition"])]


def _partition(p: dict[str, Any]) -> dict[str, Any]:
    leader = p["leader"] if p["leader"] is not None and p["leader"] >= 0 else -1
    isr = set(p["isr"] or ())
    return {
        "partition": p["partition"],
        "leader": leader,
        "replicas": [
            {"broker": b, "leader": b == leader, "in_sync": b in isr} for b in p["replicas"]
        ],
    }


def _find_partition(topic: dict[str, Any], partition: int) -> dict[str, Any]:
    for p in topic["partitions"]:
        if p["partition"] == partition:
            return _partition(p)
    raise partition_not_found()


def _json(request: web.Request, value: Any) -> web.Response:
    return web.Response(body=orjson.dumps(value), content_type=request[RESPONSE_TYPE])


# --- failure mapping -----------------------------------------------------------------------


@asynccontextmanager
async def _kafka_deadline(request: web.Request) -> AsyncIterator[None]:
    """One deadline for all Kafka work of a request; client library failures become codes."""
    timeout_ms = request.app[CONFIG].kafka_timeout_ms
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            yield
    except TimeoutError:
        raise kafka_unavailable(f"no answer from Kafka within {timeout_ms} ms") from None
    except KafkaError as exc:
        raise _kafka_failure(exc) from exc


def _kafka_failure(exc: KafkaError) -> GatewayError:
    code = kafka_error_code(exc)
    if code == 50003:
        return kafka_unavailable(describe(exc))
    return GatewayError(code // 100, code, describe(exc))
