"""Confluent REST API v3 (``/v3/...``): cluster admin, consumer-group lag, produce with headers.

One module per resource family, each with its own ``add_routes``; the pieces every family
shares live in :mod:`.urls` (absolute links, CRNs, envelopes), :mod:`.cluster` (the cluster id
and the 404 for any other), :mod:`.failures` (Kafka exceptions to Confluent's v3 codes, one
deadline per request) and :mod:`.requests` (v3 body rules). v3 speaks ``application/json``
only and is served on the same listener, by every replica, as v2.
"""

from __future__ import annotations

from aiohttp import web

from . import acls, brokers, cluster, clusters, configs, groups, partitions, produce, topics


def add_routes(app: web.Application) -> None:
    cluster.install(app)
    for family in (clusters, brokers, configs, topics, partitions, groups, produce, acls):
        family.add_routes(app)
