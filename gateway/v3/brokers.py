"""``GET /v3/clusters/{cid}/brokers`` and ``.../brokers/{broker_id}``: the cluster's brokers.

The list is Kafka's answer of the moment (metadata), in the order Kafka gives, as Confluent
shows it. A broker id is a Java ``int`` in Confluent's path: anything else (``abc``, ``-``,
a number past 2**31) matches no resource and is the plain ``HTTP 404 Not Found``, as is an
id no broker has. The broker configs under ``.../brokers/{b}/configs`` live in
:mod:`.config_brokers`; they use :func:`known_brokers` and :func:`path_broker_id` from here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..security.authz import authorizer
from .cluster import NOT_FOUND, checked_cluster
from .failures import kafka_deadline
from .requests import check_no_body_type
from .urls import Links, collection, json_response, resource

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v3/clusters/{cluster_id}/brokers", list_brokers)
    app.router.add_get("/v3/clusters/{cluster_id}/brokers/{broker_id}", get_broker)


async def list_brokers(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "describe")
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        brokers = await known_brokers(await kafka_of(request).admin())
    links = Links(request, cid)
    return json_response(
        collection(
            "KafkaBrokerList", links.cluster("brokers"), [_broker(links, b) for b in brokers]
        )
    )


async def get_broker(request: web.Request) -> web.Response:
    check_no_body_type(request)
    broker_id = path_broker_id(request)
    authorizer(request).cluster(request, "describe")
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        brokers = await known_brokers(await kafka_of(request).admin())
    found = next((b for b in brokers if b["node_id"] == broker_id), None)
    if found is None:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(_broker(Links(request, cid), found))


def path_broker_id(request: web.Request) -> int:
    """The path's ``{broker_id}`` as Java's ``int`` parses it, else 404 (no such resource)."""
    text = request.match_info["broker_id"]
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit()):
        raise GatewayError(404, 404, NOT_FOUND)
    value = int(text)
    if not _INT_MIN <= value <= _INT_MAX:
        raise GatewayError(404, 404, NOT_FOUND)
    return value


async def known_brokers(admin: AIOKafkaAdminClient) -> list[dict[str, Any]]:
    """The brokers in Kafka's metadata (``node_id``, ``host``, ``port``, ``rack``)."""
    described = await admin.describe_cluster()
    brokers: list[dict[str, Any]] = described["brokers"]
    return brokers


def _broker(links: Links, broker: dict[str, Any]) -> dict[str, Any]:
    broker_id = broker["node_id"]
    host, port, rack = broker.get("host"), broker.get("port"), broker.get("rack")
    return resource(
        "KafkaBroker",
        links.cluster("brokers", broker_id),
        links.crn(("broker", broker_id)),
        cluster_id=links.cluster_id,
        broker_id=broker_id,
        # Confluent's Broker: an empty host, a port of -1 and an unset rack are null.
        host=host or None,
        port=None if port is None or port < 0 else port,
        rack=rack or None,
        configs=links.related("brokers", broker_id, "configs"),
        partition_replicas=links.related("brokers", broker_id, "partition-replicas"),
    )
