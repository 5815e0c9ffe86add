"""``GET /v3/clusters`` and ``GET /v3/clusters/{cluster_id}``: the one cluster behind the gateway.

Clients discover the cluster id here and cache it (kafka-mcp takes ``data[0].cluster_id``);
every other v3 path names it. The controller link follows Kafka's answer of the moment (under
KRaft a broker the metadata layer picks, which may change between calls).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..security.authz import authorizer
from .cluster import NOT_FOUND, cluster_id
from .failures import kafka_deadline
from .requests import check_no_body_type
from .urls import Links, collection, json_response, resource


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/clusters", list_clusters)
    app.router.add_get("/v3/clusters/{cluster_id}", get_cluster)


async def list_clusters(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "describe")
    cid, controller = await _describe(request)
    links = Links(request, cid)
    return json_response(
        collection("KafkaClusterList", links.v3("clusters"), [_cluster(links, controller)])
    )


async def get_cluster(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "describe")
    cid, controller = await _describe(request)
    if request.match_info["cluster_id"] != cid:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(_cluster(Links(request, cid), controller))


async def _describe(request: web.Request) -> tuple[str, int | None]:
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        described = await admin.describe_cluster()
    cid = await cluster_id(request)  # kept from the first answer; no second round trip
    controller = described.get("controller_id")
    return cid, controller if controller is not None and controller >= 0 else None


def _cluster(links: Links, controller: int | None) -> dict[str, Any]:
    return resource(
        "KafkaCluster",
        links.cluster(),
        links.crn(),
        cluster_id=links.cluster_id,
        controller=None if controller is None else links.related("brokers", controller),
        acls=links.related("acls"),
        brokers=links.related("brokers"),
        broker_configs=links.related("broker-configs"),
        consumer_groups=links.related("consumer-groups"),
        topics=links.related("topics"),
        partition_reassignments=links.related("topics", "-", "partitions", "-", "reassignment"),
    )
