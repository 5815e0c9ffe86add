"""v3 partitions of a topic, and one partition's earliest and latest offsets.

Paths under ``/v3/clusters/{cid}/topics/{t}/partitions``; the replica and reassignment paths
below them are registered from here too (:mod:`.topic_replicas`, :mod:`.topic_reassignments`).
A partition id is a Java ``int`` in Confluent's path: anything else does not match the route
(404 ``HTTP 404 Not Found``), as an id the topic does not have.

Confluent's texts: an unknown partition is a plain 404 on the partition itself and
404/40402 ``Partition not found.`` on its offsets; an unknown topic is 404/40403, naming the
partition asked for when there is one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..paths import PARTITION, path_partition
from ..security.authz import authorizer
from . import topic_reassignments, topic_replicas
from .cluster import NOT_FOUND, checked_cluster
from .failures import kafka_deadline
from .requests import check_no_body_type
from .topic_metadata import PartitionInfo, describe_for_partition, describe_topic, offsets
from .urls import Links, collection, json_response, resource

PARTITIONS = "/v3/clusters/{cluster_id}/topics/{topic}/partitions"
ONE = f"{PARTITIONS}/{PARTITION}"
EARLIEST_AND_LATEST = "earliest_and_latest"


def add_routes(app: web.Application) -> None:
    # Reassignments first: their literal ``-`` segments must win over ``{topic}``.
    topic_reassignments.add_routes(app)
    app.router.add_get(PARTITIONS, list_partitions)
    app.router.add_get(ONE, get_partition)
    app.router.add_get(f"{ONE}/offset", get_offsets)
    topic_replicas.add_routes(app)


async def list_partitions(request: web.Request) -> web.Response:
    check_no_body_type(request)
    name = request.match_info["topic"]
    authorizer(request).topics(request, "describe", [name])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        topic = await describe_topic(await kafka_of(request).admin(), name)
    links = Links(request, cid)
    return json_response(
        collection(
            "KafkaPartitionList",
            links.cluster("topics", name, "partitions"),
            [partition_resource(links, name, p) for p in topic.partitions],
        )
    )


async def get_partition(request: web.Request) -> web.Response:
    check_no_body_type(request)
    name = request.match_info["topic"]
    partition = path_partition(request)
    authorizer(request).topics(request, "describe", [name])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topic = await describe_for_partition(admin, name, partition)
    found = topic.partition(partition)
    if found is None:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(partition_resource(Links(request, cid), name, found))


async def get_offsets(request: web.Request) -> web.Response:
    """The log start and log end (read_uncommitted) of one partition."""
    check_no_body_type(request)
    name = request.match_info["topic"]
    partition = path_partition(request)
    offset_type = request.query.get("offset_type", EARLIEST_AND_LATEST)
    if offset_type != EARLIEST_AND_LATEST:
        raise GatewayError(400, 400, f"Bad Request: offset_type:{offset_type} is invalid")
    authorizer(request).topics(request, "describe", [name])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topic = await describe_for_partition(admin, name, partition)
        if topic.partition(partition) is None:
            raise GatewayError(404, 40402, "Partition not found.")
        earliest, latest = await offsets(admin, topic, partition)
    links = Links(request, cid)
    return json_response(
        resource(
            "KafkaPartitionWithOffsets",
            links.cluster("topics", name, "partitions", partition, "offset"),
            links.crn(
                ("topic", name), ("partition", partition), ("offset_type", EARLIEST_AND_LATEST)
            ),
            cluster_id=cid,
            topic_name=name,
            partition_id=partition,
            earliest_offset=earliest,
            latest_offset=latest,
        )
    )


def partition_resource(links: Links, topic: str, p: PartitionInfo) -> dict[str, Any]:
    return resource(
        "KafkaPartition",
        links.cluster("topics", topic, "partitions", p.partition),
        links.crn(("topic", topic), ("partition", p.partition)),
        cluster_id=links.cluster_id,
        topic_name=topic,
        partition_id=p.partition,
        leader=(
            None
            if p.leader is None
            else links.related("topics", topic, "partitions", p.partition, "replicas", p.leader)
        ),
        replicas=links.related("topics", topic, "partitions", p.partition, "replicas"),
        reassignment=links.related("topics", topic, "partitions", p.partition, "reassignment"),
    )
