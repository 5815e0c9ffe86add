"""``GET .../consumer-groups/{g}/lags[/{t}/partitions/{p}]`` and ``.../lag-summary``.

Computed per request from Kafka (the rules are in :mod:`.lags`): the group as described, its
committed offsets, and the last stable offset of each of those partitions from its leader.

Rows are limited to the topics the caller may describe, rather than the request refused when
the group reads one it may not: a group often reads topics of several teams, and describe on
the group should show the lag one is entitled to see, without naming the other topics (the
row's topic) or their positions. Offsets of hidden topics are dropped before anything else,
so the answer is the one the group would give if it had never read them, 404s included.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..kafka_pool import kafka_of
from ..security.authz import authorizer
from .failures import kafka_deadline
from .group_kafka import committed_offsets, describe_group, log_end_offsets
from .group_paths import GROUP, TOPIC_PARTITION, group_request, topic_partition
from .lags import (
    Lag,
    find_lag,
    lag_rows,
    require_group,
    require_lags,
    require_offsets,
    summarize,
)
from .urls import Links, collection, json_response, resource


def add_routes(app: web.Application) -> None:
    app.router.add_get(GROUP + "/lags", list_lags)
    app.router.add_get(GROUP + "/lags/" + TOPIC_PARTITION, get_lag)
    app.router.add_get(GROUP + "/lag-summary", get_lag_summary)


async def list_lags(request: web.Request) -> web.Response:
    links, group_id = await group_request(request)
    rows = await _rows(request, group_id)
    require_lags(rows)
    data = [_lag(links, group_id, r) for r in rows]
    return json_response(
        collection("KafkaConsumerLagList", links.cluster("consumer-groups", group_id, "lags"), data)
    )


async def get_lag(request: web.Request) -> web.Response:
    links, group_id = await group_request(request)
    topic, partition = topic_partition(request)
    rows = await _rows(request, group_id)
    return json_response(_lag(links, group_id, find_lag(rows, topic, partition)))


async def get_lag_summary(request: web.Request) -> web.Response:
    links, group_id = await group_request(request)
    rows = await _rows(request, group_id)
    require_lags(rows)
    summary = summarize(rows)
    top = summary.max
    consumer = ["consumers", top.consumer_id] if top.consumer_id else ["consumers"]
    return json_response(
        resource(
            "KafkaConsumerGroupLagSummary",
            links.cluster("consumer-groups", group_id, "lag-summary"),
            links.crn(("consumer-group", group_id), ("lag-summary", None)),
            cluster_id=links.cluster_id,
            consumer_group_id=group_id,
            max_lag_consumer_id=top.consumer_id,
            max_lag_instance_id=top.instance_id,
            max_lag_client_id=top.client_id,
            max_lag_topic_name=top.topic,
            max_lag_partition_id=top.partition,
            max_lag=top.lag,
            total_lag=summary.total_lag,
            max_lag_consumer=links.related("consumer-groups", group_id, *consumer),
            max_lag_partition=links.related("topics", top.topic, "partitions", top.partition),
        )
    )


async def _rows(request: web.Request, group_id: str) -> list[Lag]:
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        group = require_group(await describe_group(admin, group_id))
        committed = await committed_offsets(admin, group)
        visible = set(authorizer(request).visible_topics(request, {t for t, _ in committed}))
        committed = {tp: o for tp, o in committed.items() if tp[0] in visible}
        require_offsets(committed)
        ends = await log_end_offsets(admin, committed)
    return lag_rows(committed, ends, group.members)


def _lag(links: Links, group_id: str, row: Lag) -> dict[str, Any]:
    t, p = row.topic, row.partition
    return resource(
        "KafkaConsumerLag",
        links.cluster("consumer-groups", group_id, "lags", t, "partitions", p),
        links.crn(("consumer-group", group_id), ("lag", t), ("partition", p)),
        cluster_id=links.cluster_id,
        consumer_group_id=group_id,
        topic_name=t,
        partition_id=p,
        consumer_id=row.consumer_id,
        instance_id=row.instance_id,
        client_id=row.client_id,
        current_offset=row.current_offset,
        log_end_offset=row.log_end_offset,
        lag=row.lag,
    )
