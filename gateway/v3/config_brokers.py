"""One broker's configs (reference 5.3): ``/v3/clusters/{cid}/brokers/{b}/configs[...]``.

Every config the broker has (static, dynamic, defaults), each with its synonyms. A write
names a config that must exist (404 otherwise, before Kafka is asked to change anything) and
changes that broker only (a per-broker dynamic override); ``DELETE`` removes the override.
``configs:alter`` accepts ``validate_only`` but, as Confluent's broker alter, ignores it:
the changes are applied. ``brokers/-/configs`` lists every broker's configs, broker by broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..security.authz import authorizer
from . import config_bodies
from .brokers import known_brokers, path_broker_id
from .cluster import NOT_FOUND, checked_cluster
from .config_entries import ConfigEntry, by_name, fields, find
from .config_kafka import alter_one, describe
from .config_protocol import BROKER, DELETE, SET, AlterOp, AlterResource
from .failures import kafka_deadline
from .requests import check_no_body_type, read_object
from .urls import Links, collection, json_response, no_content, resource

_BASE = "/v3/clusters/{cluster_id}/brokers/{broker_id}/configs"


def add_routes(app: web.Application) -> None:
    app.router.add_get(_BASE, list_configs)
    app.router.add_post(_BASE + ":alter", alter_configs)
    app.router.add_get(_BASE + "/{name}", get_config)
    app.router.add_put(_BASE + "/{name}", update_config)
    app.router.add_delete(_BASE + "/{name}", reset_config)


async def list_configs(request: web.Request) -> web.Response:
    """One broker's configs, or (``brokers/-/configs``) every broker's, sorted by broker."""
    check_no_body_type(request)
    every = request.match_info["broker_id"] == "-"
    wanted = None if every else path_broker_id(request)
    authorizer(request).cluster(request, "describe")
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        ids = await _broker_ids(admin, wanted)
        described = await asyncio.gather(*(_configs(admin, b) for b in ids))
    links = Links(request, cid)
    self_url = links.cluster("brokers", "-" if every else wanted, "configs")
    data = [
        _config(links, broker_id, entry)
        for broker_id, entries in zip(ids, described, strict=True)
        for entry in by_name(entries)
    ]
    return json_response(collection("KafkaBrokerConfigList", self_url, data))


async def get_config(request: web.Request) -> web.Response:
    check_no_body_type(request)
    broker_id = path_broker_id(request)
    authorizer(request).cluster(request, "describe")
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        await _broker_ids(admin, broker_id)
        entry = find(await _configs(admin, broker_id), request.match_info["name"])
    if entry is None:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(_config(Links(request, cid), broker_id, entry))


async def update_config(request: web.Request) -> web.Response:
    broker_id = path_broker_id(request)
    authorizer(request).cluster(request, "alter")
    body = await read_object(request, config_bodies.PUT_FIELDS)
    name = request.match_info["name"]
    await _change(request, broker_id, [AlterOp(name, SET, config_bodies.put_value(body))])
    return no_content()


async def reset_config(request: web.Request) -> web.Response:
    check_no_body_type(request)
    broker_id = path_broker_id(request)
    authorizer(request).cluster(request, "alter")
    await _change(request, broker_id, [AlterOp(request.match_info["name"], DELETE)])
    return no_content()


async def alter_configs(request: web.Request) -> web.Response:
    broker_id = path_broker_id(request)
    authorizer(request).cluster(request, "alter")
    body = await read_object(request, config_bodies.ALTER_FIELDS)
    ops = config_bodies.alter_ops(body)
    config_bodies.validate_only(body)  # read for its type only: ignored here, as Confluent does
    await _change(request, broker_id, ops)
    return no_content()


async def _change(request: web.Request, broker_id: int, ops: list[AlterOp]) -> None:
    """Check the broker and every named config exist, then change them in one request."""
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        await _broker_ids(admin, broker_id)
        known = {e.name for e in await _configs(admin, broker_id)}
        for op in ops:
            if op.name not in known:
                raise GatewayError(
                    404,
                    404,
                    f"Config {op.name} cannot be found for BROKER {broker_id} in cluster {cid}.",
                )
        if ops:
            await alter_one(
                admin, AlterResource(BROKER, str(broker_id), tuple(ops)), node_id=broker_id
            )


async def _broker_ids(admin: AIOKafkaAdminClient, wanted: int | None) -> list[int]:
    """``[wanted]`` if such a broker exists (else 404); every broker, by id, for None."""
    ids = sorted(b["node_id"] for b in await known_brokers(admin))
    if wanted is None:
        return ids
    if wanted not in ids:
        raise GatewayError(404, 404, NOT_FOUND)
    return [wanted]


async def _configs(admin: AIOKafkaAdminClient, broker_id: int) -> tuple[ConfigEntry, ...]:
    [described] = await describe(admin, BROKER, [str(broker_id)], node_id=broker_id)
    return described.checked()


def _config(links: Links, broker_id: int, entry: ConfigEntry) -> dict[str, Any]:
    return resource(
        "KafkaBrokerConfig",
        links.cluster("brokers", broker_id, "configs", entry.name),
        links.crn(("broker", broker_id), ("config", entry.name)),
        cluster_id=links.cluster_id,
        broker_id=broker_id,
        **fields(entry),
    )
