"""v3 partition reassignments in progress: all of the cluster's, one topic's, one partition's.

Kafka's ListPartitionReassignments names only partitions whose replicas are being moved, so
on an idle cluster the lists are empty. A single partition with no reassignment under way is
404 ``HTTP 404 Not Found``, as Confluent answers it: the reassignment resource exists only
while one runs (a client polls it until the 404 says the move is done).

Unlike Confluent, a topic that does not exist is 404/40403 here (Confluent answers an empty
list, or the plain 404), as on every other ``topics/{t}`` path, so a misspelt name is not
mistaken for "nothing moving". Confluent's own ``self`` links end in ``reassignments``, a path
it does not serve; these end in ``reassignment``, the path the resource is fetched from.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import ListPartitionReassignmentsRequest

from sessions import kafka_internals

from ..context import CONFIG
from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..paths import PARTITION, path_partition
from ..security.authz import authorizer
from .cluster import NOT_FOUND, checked_cluster
from .failures import kafka_deadline
from .requests import check_no_body_type
from .topic_metadata import describe_for_partition, describe_topic, kafka_error
from .urls import Links, collection, json_response, resource

TOPICS = "/v3/clusters/{cluster_id}/topics"


@dataclass(frozen=True)
class Reassignment:
    topic: str
    partition: int
    adding: list[int]
    removing: list[int]


def add_routes(app: web.Application) -> None:
    # The all-topics path first: its literal ``-`` must not be taken for a topic name.
    app.router.add_get(f"{TOPICS}/-/partitions/-/reassignment", list_all)
    app.router.add_get(f"{TOPICS}/{{topic}}/partitions/-/reassignment", list_topic)
    app.router.add_get(f"{TOPICS}/{{topic}}/partitions/{PARTITION}/reassignment", get_partition)


async def list_all(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "describe")
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        found = await _reassignments(request, await kafka_of(request).admin())
    return _list(request, cid, ("topics", "-", "partitions", "-", "reassignment"), found)


async def list_topic(request: web.Request) -> web.Response:
    check_no_body_type(request)
    name = request.match_info["topic"]
    authorizer(request).topics(request, "describe", [name])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        _topic, found = await asyncio.gather(
            describe_topic(admin, name), _reassignments(request, admin)
        )
    mine = [r for r in found if r.topic == name]
    return _list(request, cid, ("topics", name, "partitions", "-", "reassignment"), mine)


async def get_partition(request: web.Request) -> web.Response:
    check_no_body_type(request)
    name = request.match_info["topic"]
    partition = path_partition(request)
    authorizer(request).topics(request, "describe", [name])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        _topic, found = await asyncio.gather(
            describe_for_partition(admin, name, partition), _reassignments(request, admin)
        )
    for r in found:
        if r.topic == name and r.partition == partition:
            return json_response(reassignment_resource(Links(request, cid), r))
    raise GatewayError(404, 404, NOT_FOUND)


async def _reassignments(request: web.Request, admin: AIOKafkaAdminClient) -> list[Reassignment]:
    """Every reassignment under way, sorted by topic then partition (as Confluent sorts)."""
    timeout_ms = request.app[CONFIG].kafka_timeout_ms
    response = await kafka_internals.admin_request(
        admin, ListPartitionReassignmentsRequest(timeout_ms, None, {})
    )
    answer = response.to_object()
    if answer["error_code"]:
        raise kafka_error(answer["error_code"], answer["error_message"])
    return sorted(
        (
            Reassignment(
                t["name"],
                p["partition_index"],
                list(p["adding_replicas"] or ()),
                list(p["removing_replicas"] or ()),
            )
            for t in answer["topics"] or ()
            for p in t["partitions"] or ()
        ),
        key=lambda r: (r.topic, r.partition),
    )


def _list(
    request: web.Request, cid: str, path: tuple[str, ...], found: list[Reassignment]
) -> web.Response:
    links = Links(request, cid)
    return json_response(
        collection(
            "KafkaReassignmentList",
            links.cluster(*path),
            [reassignment_resource(links, r) for r in found],
        )
    )


def reassignment_resource(links: Links, r: Reassignment) -> dict[str, Any]:
    return resource(
        "KafkaReassignment",
        links.cluster("topics", r.topic, "partitions", r.partition, "reassignment"),
        links.crn(("topic", r.topic), ("partition", r.partition), ("reassignment", None)),
        cluster_id=links.cluster_id,
        topic_name=r.topic,
        partition_id=r.partition,
        adding_replicas=r.adding,
        removing_replicas=r.removing,
        replicas=links.related("topics", r.topic, "partitions", r.partition, "replicas"),
    )
