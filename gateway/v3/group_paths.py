"""What every ``/v3/clusters/{cid}/consumer-groups/{g}/...`` handler does first.

The group right is checked before anything is asked of Kafka, so a refusal is the same
whether the group exists or not; then the cluster id (Confluent's consumer-group wording for
an unknown one), then the group as its coordinator describes it.
"""

from __future__ import annotations

from aiohttp import web

from ..kafka_pool import kafka_of
from ..paths import PARTITION, check_path_utf8, path_partition
from ..security.authz import authorizer
from .cluster import checked_cluster
from .failures import kafka_deadline
from .group_kafka import Group, describe_group
from .requests import check_no_body_type
from .urls import Links

GROUPS = "/v3/clusters/{cluster_id}/consumer-groups"
GROUP = GROUPS + "/{group}"
CONSUMER = GROUP + "/consumers/{consumer}"
# A topic and partition under a group path (assignments, lags); the partition is a Java int.
TOPIC_PARTITION = "{topic}/partitions/" + PARTITION


async def cluster_links(request: web.Request) -> Links:
    """The checks before the cluster id is known (no body type, then the cluster)."""
    cid = await checked_cluster(
        request, f"Cluster {request.match_info['cluster_id']} could not be found."
    )
    return Links(request, cid)


async def group_request(request: web.Request) -> tuple[Links, str]:
    """(links, group id) once the caller may describe the group and the cluster is this one."""
    check_no_body_type(request)
    check_path_utf8(request)
    group_id = request.match_info["group"]
    authorizer(request).group(request, group_id, "describe")
    return await cluster_links(request), group_id


async def described(request: web.Request, group_id: str) -> Group:
    """The group as its coordinator describes it now (``exists`` False when Kafka has none)."""
    async with kafka_deadline(request):
        admin = await kafka_of(request).admin()
        return await describe_group(admin, group_id)


def topic_partition(request: web.Request) -> tuple[str, int]:
    """``{topic}`` and ``{partition}`` of the path, once the caller may describe the topic."""
    topic, partition = request.match_info["topic"], path_partition(request)
    authorizer(request).topics(request, "describe", [topic])
    return topic, partition
