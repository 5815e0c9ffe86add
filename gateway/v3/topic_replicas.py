"""v3 replicas: those of one partition, and every partition replica one broker hosts.

A replica is a (partition, broker) pair from Kafka's metadata: ``is_leader`` when the broker
leads the partition, ``is_in_sync`` when it is in the ISR. Confluent lists a broker's replicas
from its log directories; the metadata names the same assignments in one round trip, and a
broker id the cluster does not have is 404 ``Broker N cannot be found.`` either way. That list
covers the whole broker (internal topics included, as log directories do), so it is a cluster
``describe``, not a per-topic one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..paths import PARTITION, path_partition
from ..security.authz import authorizer
from .cluster import NOT_FOUND, checked_cluster
from .failures import kafka_deadline
from .requests import check_no_body_type
from .topic_metadata import PartitionInfo, cluster_metadata, describe_for_partition
from .urls import Links, collection, json_response, resource

REPLICAS = f"/v3/clusters/{{cluster_id}}/topics/{{topic}}/partitions/{PARTITION}/replicas"
BROKER = r"{broker_id:-?\d+}"

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def add_routes(app: web.Application) -> None:
    app.router.add_get(REPLICAS, list_replicas)
    app.router.add_get(f"{REPLICAS}/{BROKER}", get_replica)
    app.router.add_get(
        f"/v3/clusters/{{cluster_id}}/brokers/{BROKER}/partition-replicas", broker_replicas
    )


async def list_replicas(request: web.Request) -> web.Response:
    check_no_body_type(request)
    name, cid, p = await _partition(request)
    links = Links(request, cid)
    return json_response(
        collection(
            "KafkaReplicaList",
            links.cluster("topics", name, "partitions", p.partition, "replicas"),
            [replica_resource(links, name, p, b) for b in p.replicas],
        )
    )


async def get_replica(request: web.Request) -> web.Response:
    check_no_body_type(request)
    broker = _broker_id(request)
    name, cid, p = await _partition(request)
    if broker not in p.replicas:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(replica_resource(Links(request, cid), name, p, broker))


async def broker_replicas(request: web.Request) -> web.Response:
    """Every replica on one broker, sorted by topic then partition (as Confluent sorts)."""
    check_no_body_type(request)
    broker = _broker_id(request)
    authorizer(request).cluster(request, "describe")
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        brokers, topics = await cluster_metadata(await kafka_of(request).admin())
    if broker not in brokers:
        raise GatewayError(404, 404, f"Broker {broker} cannot be found.")
    links = Links(request, cid)
    hosted = [
        replica_resource(links, t.name, p, broker)
        for t in sorted(topics, key=lambda t: t.name)
        for p in t.partitions
        if broker in p.replicas
    ]
    return json_response(
        collection(
            "KafkaReplicaList", links.cluster("brokers", broker, "partition-replicas"), hosted
        )
    )


async def _partition(request: web.Request) -> tuple[str, str, PartitionInfo]:
    """(topic, cluster id, partition) of a replicas path; 404s as Confluent words them."""
    name = request.match_info["topic"]
    partition = path_partition(request)
    authorizer(request).topics(request, "describe", [name])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topic = await describe_for_partition(admin, name, partition)
    found = topic.partition(partition)
    if found is None:
        raise GatewayError(
            404,
            404,
            f"Partition {partition} of topic {name} could not be found on cluster {cid}.",
        )
    return name, cid, found


def _broker_id(request: web.Request) -> int:
    value = int(request.match_info["broker_id"])
    if not _INT_MIN <= value <= _INT_MAX:
        raise web.HTTPNotFound()
    return value


def replica_resource(links: Links, topic: str, p: PartitionInfo, broker: int) -> dict[str, Any]:
    return resource(
        "KafkaReplica",
        links.cluster("topics", topic, "partitions", p.partition, "replicas", broker),
        links.crn(("topic", topic), ("partition", p.partition), ("replica", broker)),
        cluster_id=links.cluster_id,
        topic_name=topic,
        partition_id=p.partition,
        broker_id=broker,
        is_leader=p.leader == broker,
        is_in_sync=broker in p.isr,
        broker=links.related("brokers", broker),
    )
