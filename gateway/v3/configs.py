"""Topic configs (reference 5.2, 5.5, 6.5): ``/v3/clusters/{cid}/topics/{t}/configs[...]``.

Every config of a topic (its overrides, the broker defaults it inherits, Kafka's built-in
defaults), each with its synonyms. Writes name configs that must exist (404 before anything
changes) and use Kafka's IncrementalAlterConfigs, so a PUT of one config leaves the topic's
other overrides alone; ``validate_only`` on ``configs:alter`` is a dry run (still 204).

``topics/-/configs`` (every topic's configs, topic by topic) and ``topics/-/configs:alter``
(several topics at once: 204, or 207 naming the topics Kafka refused) share the routes of a
single topic, the handler reading ``-`` as "all", so neither form can shadow the other. The
multi-topic alter checks every topic and name first (404 for the whole call), then applies
all changes in one request.

This module also registers the broker configs (:mod:`.config_brokers`) and the
cluster-wide broker defaults (:mod:`.config_cluster`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from ..context import CONFIG
from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..paths import check_path_utf8
from ..security.authz import authorizer
from ..topics import check_client_topics
from . import config_bodies, config_brokers, config_cluster
from .cluster import NOT_FOUND, checked_cluster
from .config_entries import ConfigEntry, by_name, fields, find
from .config_kafka import Described, alter, describe
from .config_protocol import DELETE, SET, TOPIC, AlterOp, AlterResource
from .failures import kafka_deadline
from .requests import check_no_body_type, read_object
from .urls import Links, collection, json_response, no_content, resource

_BASE = "/v3/clusters/{cluster_id}/topics/{topic}/configs"
ALL = "-"


def add_routes(app: web.Application) -> None:
    app.router.add_get(_BASE, list_configs)
    app.router.add_post(_BASE + ":alter", alter_configs)
    app.router.add_get(_BASE + "/{name}", get_config)
    app.router.add_put(_BASE + "/{name}", update_config)
    app.router.add_delete(_BASE + "/{name}", reset_config)
    config_brokers.add_routes(app)
    config_cluster.add_routes(app)


# --- handlers ------------------------------------------------------------------------------


async def list_configs(request: web.Request) -> web.Response:
    check_no_body_type(request)
    topic = _path_topic(request)
    if topic == ALL:
        return await _list_all(request)
    authorizer(request).topics(request, "describe", [topic])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        [described] = await describe(await kafka_of(request).admin(), TOPIC, [topic])
        entries = described.checked()
    links = Links(request, cid)
    data = [_config(links, topic, e) for e in by_name(entries)]
    return json_response(
        collection("KafkaTopicConfigList", links.cluster("topics", topic, "configs"), data)
    )


async def get_config(request: web.Request) -> web.Response:
    check_no_body_type(request)
    topic = _path_topic(request)
    authorizer(request).topics(request, "describe", [topic])
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        [described] = await describe(await kafka_of(request).admin(), TOPIC, [topic])
        entry = find(described.checked(), request.match_info["name"])
    if entry is None:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(_config(Links(request, cid), topic, entry))


async def update_config(request: web.Request) -> web.Response:
    topic = _path_topic(request)
    check_client_topics(request.app[CONFIG], [topic])
    authorizer(request).topics(request, "alter", [topic])
    body = await read_object(request, config_bodies.PUT_FIELDS)
    op = AlterOp(request.match_info["name"], SET, config_bodies.put_value(body))
    _raise_refusal(await _change(request, [(topic, [op])], validate_only=False))
    return no_content()


async def reset_config(request: web.Request) -> web.Response:
    check_no_body_type(request)
    topic = _path_topic(request)
    check_client_topics(request.app[CONFIG], [topic])
    authorizer(request).topics(request, "alter", [topic])
    op = AlterOp(request.match_info["name"], DELETE)
    _raise_refusal(await _change(request, [(topic, [op])], validate_only=False))
    return no_content()


async def alter_configs(request: web.Request) -> web.Response:
    topic = _path_topic(request)
    if topic != ALL:  # the multi-topic form names its topics in the body
        check_client_topics(request.app[CONFIG], [topic])
        authorizer(request).topics(request, "alter", [topic])
    body = await read_object(request, config_bodies.ALTER_FIELDS)
    dry_run = config_bodies.validate_only(body)
    if topic == ALL:
        changes = config_bodies.topic_alters(body)
        check_client_topics(request.app[CONFIG], [t for t, _ in changes])
        authorizer(request).topics(request, "alter", [t for t, _ in changes])
    else:
        changes = [(topic, config_bodies.alter_ops(body))]
    refused = await _change(request, changes, dry_run)
    if topic != ALL:
        _raise_refusal(refused)
    if not refused:
        return no_content()
    failures = [
        {"topic_name": t, "error_code": f.error_code, "message": f.message} for t, f in refused
    ]
    return json_response({"failures": failures}, status=207)


# --- the pieces ----------------------------------------------------------------------------


async def _list_all(request: web.Request) -> web.Response:
    """Every visible topic's configs, topic by topic (by name), each sorted by name.

    Internal topics are left out, as Java's ``listTopics()`` does; a topic deleted between
    the listing and the describe is simply not shown.
    """
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        topics = await _user_topics(admin)
        visible = sorted(authorizer(request).visible_topics(request, topics))
        described = await describe(admin, TOPIC, visible)
    links = Links(request, cid)
    data = [
        _config(links, d.name, e)
        for d in described
        if not _vanished(d)
        for e in by_name(d.checked())
    ]
    return json_response(
        collection("KafkaTopicConfigList", links.cluster("topics", ALL, "configs"), data)
    )


async def _change(
    request: web.Request, changes: list[tuple[str, list[AlterOp]]], validate_only: bool
) -> list[tuple[str, GatewayError]]:
    """Check every topic and named config exist (404 for the whole call otherwise), then
    apply all changes in one request; the topics Kafka refused, with its reasons."""
    cid = await checked_cluster(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        described = await describe(admin, TOPIC, [t for t, _ in changes])
        for (topic, ops), found in zip(changes, described, strict=True):
            known = {e.name for e in found.checked()}
            for op in ops:
                if op.name not in known:
                    raise GatewayError(
                        404,
                        404,
                        f"Config {op.name} cannot be found for TOPIC {topic} in cluster {cid}.",
                    )
        resources = [AlterResource(TOPIC, t, tuple(ops)) for t, ops in changes if ops]
        answers = await alter(admin, resources, validate_only)
    return [(t, f) for t, f in answers.items() if f is not None]


def _raise_refusal(refused: list[tuple[str, GatewayError]]) -> None:
    """One topic's change: Kafka's refusal is the answer (400/40002 for a bad value)."""
    if refused:
        raise refused[0][1]


async def _user_topics(admin: AIOKafkaAdminClient) -> list[str]:
    # Metadata for all topics never auto-creates one.
    return [t["topic"] for t in await admin.describe_topics() if not t.get("is_internal")]


def _vanished(described: Described) -> bool:
    return described.failure is not None and described.failure.error_code == 40403


def _path_topic(request: web.Request) -> str:
    check_path_utf8(request)
    return request.match_info["topic"]


def _config(links: Links, topic: str, entry: ConfigEntry) -> dict[str, Any]:
    return resource(
        "KafkaTopicConfig",
        links.cluster("topics", topic, "configs", entry.name),
        links.crn(("topic", topic), ("config", entry.name)),
        cluster_id=links.cluster_id,
        topic_name=topic,
        **fields(entry),
    )
