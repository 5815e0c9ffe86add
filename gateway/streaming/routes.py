"""``POST /_gateway/streams/{token}/end``: a draining replica ends the streams it relays.

A record stream read through a replica other than the instance's owner is relayed by that
replica. When it drains, cutting the relay would lose whatever the owner had written into the
hop (the owner counts a record as delivered once written), so it asks the owner to end the
stream instead, with a signed hop request naming the stream by the token it gave the hop
(:data:`~gateway.forwarding.STREAM_HEADER`). The owner ends it at the next turn of its loop, as
on its own drain; the relay passes everything on up to that end, and the client reconnects to
a replica that stays. Only replicas of the cluster may ask: anything not a verified hop is
answered 404, as a path that does not exist.
"""

from __future__ import annotations

from aiohttp import web

from ..forwarding import FORWARDED, STREAM_END_PATH
from .slots import STREAMS


def add_routes(app: web.Application) -> None:
    app.router.add_post(STREAM_END_PATH, end_stream)


async def end_stream(request: web.Request) -> web.Response:
    if not request.get(FORWARDED):
        raise web.HTTPNotFound()  # answered as any path that does not exist
    # An unknown token is no error: the stream may have ended on its own meanwhile.
    request.app[STREAMS].end(request.match_info["token"])
    return web.Response(status=204)
