"""Cluster-wide dynamic broker defaults (reference 5.4): ``/v3/clusters/{cid}/broker-configs``.

These are the values set for every broker at once (Kafka's broker resource named ``""``),
not every broker config: a fresh cluster lists none. Setting one needs no existence check
(it creates the default; Kafka refuses a name it cannot set dynamically with 400/40002), and
``broker-configs:alter`` ignores ``validate_only``, both as Confluent. A GET or DELETE of a
name with no default set is 404.

Confluent's path is ``{config_type}-configs`` with ``broker`` the only type; only that
spelling is served here (another type is no resource: 404).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..security.authz import authorizer
from . import config_bodies
from .cluster import NOT_FOUND, checked_cluster
from .config_entries import ConfigEntry, by_name, fields, find
from .config_kafka import alter_one, describe
from .config_protocol import BROKER, DELETE, SET, AlterOp, AlterResource
from .failures import kafka_deadline
from .requests import check_no_body_type, read_object
from .urls import Links, collection, json_response, no_content, resource

_BASE = "/v3/clusters/{cluster_id}/broker-configs"
_DEFAULTS = ""  # the broker resource that holds the cluster-wide defaults


def add_routes(app: web.Application) -> None:
    app.router.add_get(_BASE, list_configs)
    app.router.add_post(_BASE + ":alter", alter_configs)
    app.router.add_get(_BASE + "/{name}", get_config)
    app.router.add_put(_BASE + "/{name}", update_config)
    app.router.add_delete(_BASE + "/{name}", reset_config)


async def list_configs(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "describe")
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        entries = await _defaults(await kafka_of(request).admin())
    links = Links(request, cid)
    data = [_config(links, e) for e in by_name(entries)]
    return json_response(
        collection("KafkaClusterConfigList", links.cluster("broker-configs"), data)
    )


async def get_config(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "describe")
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        entry = find(await _defaults(await kafka_of(request).admin()), request.match_info["name"])
    if entry is None:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(_config(Links(request, cid), entry))


async def update_config(request: web.Request) -> web.Response:
    authorizer(request).cluster(request, "alter")
    body = await read_object(request, config_bodies.PUT_FIELDS)
    await checked_cluster(request)
    op = AlterOp(request.match_info["name"], SET, config_bodies.put_value(body))
    async with kafka_deadline(request):
        await _alter(await kafka_of(request).admin(), [op])
    return no_content()


async def reset_config(request: web.Request) -> web.Response:
    check_no_body_type(request)
    authorizer(request).cluster(request, "alter")
    cid = await checked_cluster(request)
    name = request.match_info["name"]
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        if find(await _defaults(admin), name) is None:
            raise GatewayError(
                404, 404, f"Config {name} has no cluster-wide value in cluster {cid}."
            )
        await _alter(admin, [AlterOp(name, DELETE)])
    return no_content()


async def alter_configs(request: web.Request) -> web.Response:
    authorizer(request).cluster(request, "alter")
    body = await read_object(request, config_bodies.ALTER_FIELDS)
    ops = config_bodies.alter_ops(body)
    config_bodies.validate_only(body)  # read for its type only: ignored here, as Confluent does
    await checked_cluster(request)
    async with kafka_deadline(request):
        await _alter(await kafka_of(request).admin(), ops)
    return no_content()


async def _defaults(admin: AIOKafkaAdminClient) -> tuple[ConfigEntry, ...]:
    [described] = await describe(admin, BROKER, [_DEFAULTS])
    return described.checked()


async def _alter(admin: AIOKafkaAdminClient, ops: list[AlterOp]) -> None:
    if ops:
        await alter_one(admin, AlterResource(BROKER, _DEFAULTS, tuple(ops)))


def _config(links: Links, entry: ConfigEntry) -> dict[str, Any]:
    return resource(
        "KafkaClusterConfig",
        links.cluster("broker-configs", entry.name),
        links.crn(("broker-config", entry.name)),
        cluster_id=links.cluster_id,
        config_type="BROKER",
        **fields(entry),
    )
