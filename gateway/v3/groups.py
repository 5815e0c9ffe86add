"""v3 consumer groups, their members and assignments (reference 7.1-7.3), read-only.

What Kafka's group coordinators say at the moment of the request: nothing is cached, so a
member that just joined or left shows on the next call, on every replica alike. The list is
in Kafka's order (brokers by id, each broker's groups as it lists them), without the groups
the caller may not describe. Lags live in :mod:`.group_lags`.

``type`` is CLASSIC for every group shown: they are described through the classic group
protocol's DescribeGroups, which (below v6) reports a group of any other protocol as Dead,
that is as absent (see :mod:`.group_kafka`). For the same reason a classic group is never
"mixed" (``is_mixed_consumer_group`` is a KIP-848 group with classic members).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import GatewayError
from ..kafka_pool import kafka_of
from ..security.authz import authorizer
from . import group_lags
from .cluster import NOT_FOUND
from .failures import kafka_deadline
from .group_kafka import Group, Member, describe_groups, list_groups
from .group_paths import (
    CONSUMER,
    GROUP,
    GROUPS,
    TOPIC_PARTITION,
    cluster_links,
    described,
    group_request,
    topic_partition,
)
from .requests import check_no_body_type
from .urls import Links, collection, json_response, resource

# Kafka's state text (GroupState.toString) to the v3 enum; anything newer is UNKNOWN.
_STATES = {
    "preparingrebalance": "PREPARING_REBALANCE",
    "completingrebalance": "COMPLETING_REBALANCE",
    "assigning": "ASSIGNING",
    "reconciling": "RECONCILING",
    "stable": "STABLE",
    "dead": "DEAD",
    "empty": "EMPTY",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get(GROUPS, list_consumer_groups)
    app.router.add_get(GROUP, get_consumer_group)
    app.router.add_get(GROUP + "/consumers", list_consumers)
    app.router.add_get(CONSUMER, get_consumer)
    app.router.add_get(CONSUMER + "/assignments", list_assignments)
    app.router.add_get(CONSUMER + "/assignments/" + TOPIC_PARTITION, get_assignment)
    group_lags.add_routes(app)


# --- handlers --------------------------------------------------------------------------------


async def list_consumer_groups(request: web.Request) -> web.Response:
    check_no_body_type(request)
    links = await cluster_links(request)
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        listed = await list_groups(admin)
        # Only the groups the caller may see are described: a refused one costs nothing.
        visible = set(authorizer(request).visible_groups(request, [g for g, _ in listed]))
        wanted = [(g, node) for g, node in listed if g in visible]
        groups = await describe_groups(admin, wanted)
    data = [_group(links, groups[g]) for g, _ in wanted if groups[g].exists]
    return json_response(
        collection("KafkaConsumerGroupList", links.cluster("consumer-groups"), data)
    )


async def get_consumer_group(request: web.Request) -> web.Response:
    links, group_id = await group_request(request)
    group = await described(request, group_id)
    if not group.exists:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(_group(links, group))


async def list_consumers(request: web.Request) -> web.Response:
    links, group_id = await group_request(request)
    group = _existing(await described(request, group_id))
    members = sorted(group.members, key=lambda m: m.consumer_id)
    data = [_consumer(links, group, m) for m in members]
    self_url = links.cluster("consumer-groups", group_id, "consumers")
    return json_response(collection("KafkaConsumerList", self_url, data))


async def get_consumer(request: web.Request) -> web.Response:
    links, group_id = await group_request(request)
    group = _existing(await described(request, group_id))
    member = _member(group, request.match_info["consumer"])
    if member is None:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(_consumer(links, group, member))


async def list_assignments(request: web.Request) -> web.Response:
    links, group_id = await group_request(request)
    group = _existing(await described(request, group_id))
    consumer_id = request.match_info["consumer"]
    member = _member(group, consumer_id)
    if member is None:
        raise GatewayError(404, 404, f"Consumer {consumer_id} does not exist.")
    # Partitions of topics the caller may not describe are left out, as lag rows are.
    topics = set(authorizer(request).visible_topics(request, {t for t, _ in member.assignment}))
    data = [_assignment(links, group, member, t, p) for t, p in member.assignment if t in topics]
    self_url = links.cluster("consumer-groups", group_id, "consumers", consumer_id, "assignments")
    return json_response(collection("KafkaConsumerAssignmentList", self_url, data))


async def get_assignment(request: web.Request) -> web.Response:
    links, group_id = await group_request(request)
    topic, partition = topic_partition(request)
    group = _existing(await described(request, group_id))
    member = _member(group, request.match_info["consumer"])
    if member is None or (topic, partition) not in member.assignment:
        raise GatewayError(404, 404, NOT_FOUND)
    return json_response(_assignment(links, group, member, topic, partition))


# --- shaping ---------------------------------------------------------------------------------


def _existing(group: Group) -> Group:
    if not group.exists:
        raise GatewayError(404, 404, f"Consumer Group {group.group_id} does not exist.")
    return group


def _member(group: Group, consumer_id: str) -> Member | None:
    return next((m for m in group.members if m.consumer_id == consumer_id), None)


def state_of(group: Group) -> str:
    return _STATES.get(group.state.lower(), "UNKNOWN")


def _group(links: Links, group: Group) -> dict[str, Any]:
    g = group.group_id
    return resource(
        "KafkaConsumerGroup",
        links.cluster("consumer-groups", g),
        links.crn(("consumer-group", g)),
        cluster_id=links.cluster_id,
        consumer_group_id=g,
        # Java's rule: a group whose members never named a protocol type only commits offsets.
        is_simple=group.protocol_type == "",
        partition_assignor=group.protocol,
        state=state_of(group),
        type="CLASSIC",
        is_mixed_consumer_group=False,
        coordinator=links.related("brokers", group.coordinator),
        consumers=links.related("consumer-groups", g, "consumers"),
        lag_summary=links.related("consumer-groups", g, "lag-summary"),
    )


def _consumer(links: Links, group: Group, member: Member) -> dict[str, Any]:
    g, c = group.group_id, member.consumer_id
    return resource(
        "KafkaConsumer",
        links.cluster("consumer-groups", g, "consumers", c),
        links.crn(("consumer-group", g), ("consumer", c)),
        cluster_id=links.cluster_id,
        consumer_group_id=g,
        consumer_id=c,
        instance_id=member.instance_id,
        client_id=member.client_id,
        assignments=links.related("consumer-groups", g, "consumers", c, "assignments"),
    )


def _assignment(
    links: Links, group: Group, member: Member, topic: str, partition: int
) -> dict[str, Any]:
    g, c = group.group_id, member.consumer_id
    return resource(
        "KafkaConsumerAssignment",
        links.cluster(
            "consumer-groups", g, "consumers", c, "assignments", topic, "partitions", partition
        ),
        links.crn(
            ("consumer-group", g), ("consumer", c), ("assignment", topic), ("partition", partition)
        ),
        cluster_id=links.cluster_id,
        consumer_group_id=g,
        consumer_id=c,
        topic_name=topic,
        partition_id=partition,
        partition=links.related("topics", topic, "partitions", partition),
        lag=links.related("consumer-groups", g, "lags", topic, "partitions", partition),
    )
