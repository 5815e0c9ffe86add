"""v3 produce (reference 8): streaming ``records`` and ``records:batch``, with headers and timestamps.

Both endpoints take Confluent's record objects (:mod:`.records_request`), convert schema
sides through the registry (:mod:`.records_schemas`), apply the optional produce rate limiter
(:mod:`.produce_limits`) and send through the shared producer in per-partition batches
(:mod:`.records_sender`). The streaming endpoint is :mod:`.produce_stream`, the batch one
:mod:`.produce_batch`.

Unlike Confluent, the path's cluster id is checked (404 for another one): a wrong id is the
client's mistake, and echoing it back in every result would hide it.
"""

from __future__ import annotations

from aiohttp import web

from ..context import CONFIG
from . import produce_limits, records_schemas
from .produce_batch import produce_batch
from .produce_stream import produce_records

RECORDS = "/v3/clusters/{cluster_id}/topics/{topic_name}/records"


def add_routes(app: web.Application) -> None:
    produce_limits.install(app, app[CONFIG])
    records_schemas.install(app)
    app.router.add_post(RECORDS, produce_records)
    app.router.add_post(RECORDS + ":batch", produce_batch)
