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
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.metadata import MetadataRequest

from sessions import kafka_internals

from .body import as_str, expect_object, read_json
from .context import CONFIG, KAFKA
from .errors import (
    GatewayError,
    describe,
    kafka_error_code,
    kafka_unavailable,
    partition_not_found,
    topic_not_found,
)
from .kafka import kafka_kwargs
from .media import METADATA_CONSUMES, V2, V2_LOW, V2_ONLY, check_content_type, respond_as
from .paths import PARTITION, path_partition

# Kafka's codes for "no such topic" (3) and "not a legal topic name" (17): a name that cannot
# exist is as absent as one that does not, so both are 404 40403.
_NO_SUCH_TOPIC = frozenset({3, 17})

# Settings for the short-lived offset-lookup consumers, translated once at start-up.
_LOOKUP_KWARGS: web.AppKey[dict[str, Any]] = web.AppKey("metadata_lookup_kwargs")


def add_routes(app: web.Application) -> None:
    # Only ``client.*`` (security, client.id): ``consumer.*`` settings such as an isolation
    # level are meant for consumer instances and would change what end_offset means.
    app[_LOOKUP_KWARGS] = kafka_kwargs(app[CONFIG].client, AIOKafkaConsumer, source="client")
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
    return _json({})


async def list_topics(request: web.Request) -> web.Response:
    """Topic names without Kafka's internal ones, as Java's ``listTopics()`` defaults to."""
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    async with _kafka_deadline(request):
        admin = await request.app[KAFKA].admin()
        topics = await admin.describe_topics()
    return _json(sorted(t["topic"] for t in topics if not _internal(t)))


async def get_topic(request: web.Request) -> web.Response:
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    name = request.match_info["topic"]
    async with _kafka_deadline(request):
        admin = await request.app[KAFKA].admin()
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
    return _json({"name": name, "configs": configured, "partitions": _partitions(described)})


async def list_partitions(request: web.Request) -> web.Response:
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    async with _kafka_deadline(request):
        admin = await request.app[KAFKA].admin()
        topic = await _describe_topic(admin, request.match_info["topic"])
    return _json(_partitions(topic))


async def get_partition(request: web.Request) -> web.Response:
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    partition = path_partition(request)
    async with _kafka_deadline(request):
        admin = await request.app[KAFKA].admin()
        topic = await _describe_topic(admin, request.match_info["topic"])
    return _json(_find_partition(topic, partition))


async def get_offsets(request: web.Request) -> web.Response:
    """Earliest and log-end offsets (read_uncommitted), as Java's ``listOffsets`` gives them."""
    check_content_type(request, METADATA_CONSUMES)
    respond_as(request, V2_ONLY)
    partition = path_partition(request)
    name = request.match_info["topic"]
    async with _kafka_deadline(request):
        admin = await request.app[KAFKA].admin()
        _find_partition(await _describe_topic(admin, name), partition)
        beginning, end = await _offsets(request, TopicPartition(name, partition))
    return _json({"beginning_offset": beginning, "end_offset": end})


async def list_brokers(request: web.Request) -> web.Response:
    # Confluent's BrokersResource has no @Consumes, so any request Content-Type is accepted.
    respond_as(request, V2_LOW)
    async with _kafka_deadline(request):
        admin = await request.app[KAFKA].admin()
        cluster = await admin.describe_cluster()
    return _json({"brokers": sorted(b["node_id"] for b in cluster["brokers"])})


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


async def _offsets(request: web.Request, tp: TopicPartition) -> tuple[int, int]:
    # aiokafka's admin client has no ListOffsets; a consumer without a group is the public
    # way to ask. It lives for one request: this endpoint is not a hot path, and nothing
    # long-lived is left to reconnect or leak when Kafka comes and goes.
    config = request.app[CONFIG]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap_servers,
        enable_auto_commit=False,
        request_timeout_ms=config.kafka_timeout_ms,
        **request.app[_LOOKUP_KWARGS],
    )
    try:
        await consumer.start()
        beginning, end = await asyncio.gather(
            consumer.beginning_offsets([tp]), consumer.end_offsets([tp])
        )
    finally:
        # Shielded and bounded: a deadline that fires mid-start must still close the sockets.
        await asyncio.shield(_stop(consumer, config.kafka_timeout_ms))
    return beginning[tp], end[tp]


async def _stop(consumer: AIOKafkaConsumer, timeout_ms: int) -> None:
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            await consumer.stop()
    except Exception:  # TimeoutError included
        pass  # best effort: the lookup already has (or has given up on) its answer


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


def _json(value: Any) -> web.Response:
    return web.Response(body=orjson.dumps(value), content_type=V2)


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
