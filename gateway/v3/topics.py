"""v3 topics: list, get, create, grow (PATCH) and delete, under ``/v3/clusters/{cid}/topics``.

Every answer is a ``KafkaTopic`` built from Kafka's metadata of the moment; creating answers
from CreateTopics' own result (see :mod:`.topic_create`), so the body shows what was created
even before the new topic's metadata has reached every broker.

The list hides Kafka's internal topics (``is_internal``, and the ``__`` names the v2 list hides
too, so both APIs list the same topics) and whatever the caller may not describe; a topic
named in the path is checked against the rules before Kafka is asked, so a refusal never
tells whether it exists.

Growing a topic waits (within the request's deadline) until the metadata shows the new
partitions, so the answer, and the next GET, show the count just set rather than the old one.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import web
from aiokafka.protocol.admin import CreatePartitionsRequest, DeleteTopicsRequest

from sessions import kafka_internals

from ..body import as_int
from ..context import CONFIG
from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..security.authz import authorizer
from ..topics import check_client_topics
from .cluster import checked_cluster
from .failures import kafka_deadline
from .requests import check_no_body_type, payload_error, read_object
from .topic_create import MAX_PARTITIONS, create_topic, read_new_topic
from .topic_metadata import TopicInfo, describe_all, describe_topic, kafka_error
from .topic_operations import authorized_operations, wants_operations
from .urls import Links, collection, json_response, no_content, resource

TOPICS = "/v3/clusters/{cluster_id}/topics"
# CreatePartitions without replica assignments (Kafka places the new ones): a null array.
_NO_ASSIGNMENT = cast(list[int], None)
TOPIC = TOPICS + "/{topic}"


def add_routes(app: web.Application) -> None:
    app.router.add_get(TOPICS, list_topics)
    app.router.add_post(TOPICS, create)
    app.router.add_get(TOPIC, get_topic)
    app.router.add_patch(TOPIC, grow)
    app.router.add_delete(TOPIC, delete)


async def list_topics(request: web.Request) -> web.Response:
    check_no_body_type(request)
    cid = await checked_cluster(request)
    operations = wants_operations(request, "includeAuthorizedOperations")
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topics = await describe_all(admin, operations)
    shown = {t.name: t for t in topics if not _internal(t)}
    visible = authorizer(request).visible_topics(request, sorted(shown))
    links = Links(request, cid)
    return json_response(
        collection(
            "KafkaTopicList",
            links.cluster("topics"),
            [_described(request, links, shown[name], operations) for name in visible],
        )
    )


async def get_topic(request: web.Request) -> web.Response:
    check_no_body_type(request)
    name = request.match_info["topic"]
    authorizer(request).topics(request, "describe", [name])
    cid = await checked_cluster(request)
    operations = wants_operations(request, "include_authorized_operations")
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topic = await describe_topic(admin, name, operations)
    return json_response(_described(request, Links(request, cid), topic, operations))


async def create(request: web.Request) -> web.Response:
    """201 + ``Location`` (200 for ``validate_only``, nothing created, ``Location`` still
    sent as Confluent does)."""
    new = await read_new_topic(request)
    check_client_topics(request.app[CONFIG], [new.name])
    authorizer(request).topics(request, "create", [new.name])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        created = await create_topic(request, admin, new)
    links = Links(request, cid)
    body = topic_resource(
        links, new.name, False, created.replication_factor, created.partitions, []
    )
    status = 200 if new.validate_only else 201
    return json_response(body, status, {"Location": body["metadata"]["self"]})


# The most partitions a topic may be given through v3. Kafka's KRaft controller refuses an
# operation adding more than 10,000 partitions, but only after working on it for a long while:
# measured on Kafka 4.1, one request for 73,730 left the controller unable to create topics
# for over 30 s. A gateway must not let one HTTP request do that to a shared cluster.
MAX_PARTITIONS_TOTAL = MAX_PARTITIONS


async def grow(request: web.Request) -> web.Response:
    """``{"partitions_count": N}``: more partitions (never fewer; Kafka's 400 otherwise)."""
    name = request.match_info["topic"]
    body = await read_object(
        request,
        ("partitions_count",),
        empty="Request body is empty. Partitions_count is required.",
    )
    count = as_int(body.get("partitions_count"), "partitions_count")
    if count is None:
        raise payload_error("Partitions_count is required.")
    if count > MAX_PARTITIONS_TOTAL:
        raise GatewayError(
            400,
            40002,
            f"Invalid partitions_count {count}: a topic may have at most {MAX_PARTITIONS_TOTAL}"
            " partitions through this API.",
        )
    check_client_topics(request.app[CONFIG], [name])
    authorizer(request).topics(request, "alter", [name])
    cid = await checked_cluster(request)
    timeout_ms = request.app[CONFIG].kafka_timeout_ms
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        response = await kafka_internals.admin_request(
            admin, CreatePartitionsRequest([(name, (count, _NO_ASSIGNMENT))], timeout_ms, False)
        )
        for _topic, code, message in response.topic_errors:
            if code:
                raise kafka_error(code, message)
        topic = await _with_partitions(admin, name, count)
    return json_response(_described(request, Links(request, cid), topic, False))


async def delete(request: web.Request) -> web.Response:
    check_no_body_type(request)
    name = request.match_info["topic"]
    check_client_topics(request.app[CONFIG], [name])
    authorizer(request).topics(request, "delete", [name])
    await checked_cluster(request)
    timeout_ms = request.app[CONFIG].kafka_timeout_ms
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        response = await kafka_internals.admin_request(
            admin, DeleteTopicsRequest([name], timeout_ms)
        )
        for _topic, code in response.topic_error_codes:
            if code:
                raise kafka_error(code)
    return no_content()


async def _with_partitions(admin: Any, name: str, count: int) -> TopicInfo:
    """The topic once its metadata shows ``count`` partitions (bounded by the caller's
    deadline): brokers learn of new partitions a moment after the controller made them."""
    delay = 0.02
    while True:
        topic = await describe_topic(admin, name)
        if len(topic.partitions) >= count:
            return topic
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


def _internal(topic: TopicInfo) -> bool:
    return topic.internal or topic.name.startswith("__")


def _described(
    request: web.Request, links: Links, topic: TopicInfo, operations: bool
) -> dict[str, Any]:
    return topic_resource(
        links,
        topic.name,
        topic.internal,
        topic.replication_factor,
        len(topic.partitions),
        authorized_operations(request, topic.name, topic.operations) if operations else [],
    )


def topic_resource(
    links: Links,
    name: str,
    internal: bool,
    replication_factor: int,
    partitions_count: int,
    operations: list[str],
) -> dict[str, Any]:
    return resource(
        "KafkaTopic",
        links.cluster("topics", name),
        links.crn(("topic", name)),
        cluster_id=links.cluster_id,
        topic_name=name,
        is_internal=internal,
        replication_factor=replication_factor,
        partitions_count=partitions_count,
        partitions=links.related("topics", name, "partitions"),
        configs=links.related("topics", name, "configs"),
        partition_reassignments=links.related("topics", name, "partitions", "-", "reassignment"),
        authorized_operations=operations,
    )
