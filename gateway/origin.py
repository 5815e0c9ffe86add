"""The public ``scheme://authority`` of the gateway, as links in responses must show it.

Behind a load balancer the Host a replica sees may be its own address; ``advertised.listeners``
names the public one (per scheme), so a link a client follows reaches the load balancer and so
any replica. Without one, the Host the client used is the best guess, and is right for a
client talking to a replica directly.
"""

from __future__ import annotations

from aiohttp import web

from .context import CONFIG


def public_origin(request: web.Request) -> str:
    scheme = request.scheme
    authority = next(
        (lst.authority for lst in request.app[CONFIG].advertised_listeners if lst.scheme == scheme),
        request.host,
    )
    return f"{scheme}://{authority}"
