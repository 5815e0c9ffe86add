"""The one cluster a v3 path may name, and the check every ``/v3/clusters/{cid}`` path makes.

The id is Kafka's own (KIP-78, from DescribeCluster / Metadata v2+). It is asked once and kept:
a Kafka cluster's id never changes while it lives, and a replica pointed at a new cluster is
restarted with a new ``bootstrap.servers`` anyway. Until the first answer every request asks,
so a gateway started while Kafka was down learns the id when Kafka returns.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..errors import GatewayError
from ..kafka_pool import kafka_of
from .failures import kafka_deadline

_CLUSTER_ID: web.AppKey[dict[str, str]] = web.AppKey("v3_cluster_id", dict)
_LOCK: web.AppKey[asyncio.Lock] = web.AppKey("v3_cluster_id_lock", asyncio.Lock)

NOT_FOUND = "HTTP 404 Not Found"


def install(app: web.Application) -> None:
    app[_CLUSTER_ID] = {}
    app[_LOCK] = asyncio.Lock()


async def cluster_id(request: web.Request) -> str:
    """Kafka's cluster id (503 when Kafka cannot be asked within ``kafka.timeout.ms``)."""
    known = request.app[_CLUSTER_ID]
    if "id" in known:
        return known["id"]
    async with request.app[_LOCK]:
        if "id" not in known:
            async with kafka_deadline(request):
                admin = await kafka_of(request).admin()
                described = await admin.describe_cluster()
            known["id"] = str(described["cluster_id"])
    return known["id"]


async def checked_cluster(request: web.Request, message: str | None = None) -> str:
    """The path's ``{cluster_id}`` if it is this cluster's, else 404.

    ``message`` is Confluent's text for the path family (``Cluster X cannot be found.``);
    ``GET /v3/clusters/{cid}`` itself answers the plain ``HTTP 404 Not Found``.
    """
    wanted = request.match_info["cluster_id"]
    actual = await cluster_id(request)
    if wanted != actual:
        text = message if message is not None else f"Cluster {wanted} cannot be found."
        raise GatewayError(404, 404, text)
    return actual
