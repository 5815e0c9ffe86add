"""Group-less topic streams for browsers: ``GET /topics/{t}/events`` (Server-Sent Events).

:mod:`.positions` parses where a stream starts and encodes where it got to (the event id),
:mod:`.reader` is one stream's own Kafka consumer, :mod:`.render` turns records into event
data, and :mod:`.routes` puts them together behind the shared stream machinery of
:mod:`gateway.streaming` (framing, slots, the bounded writer).
"""

from __future__ import annotations

from aiohttp import web

from .routes import add_routes as _add_routes


def add_routes(app: web.Application) -> None:
    _add_routes(app)
