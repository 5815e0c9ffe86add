"""Path pieces shared by the v2 resources that take a ``{partition}``.

Confluent's path parameter is a Java ``int``: anything else (``abc``, ``1.5``, a number past
2**31) does not match the route, so the client gets a plain ``HTTP 404 Not Found`` rather than
a validation error. The route pattern does most of that; :func:`path_partition` the range.
"""

from __future__ import annotations

from aiohttp import web

PARTITION = r"{partition:-?\d+}"

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def path_partition(request: web.Request) -> int:
    value = int(request.match_info["partition"])
    if not _INT_MIN <= value <= _INT_MAX:
        raise web.HTTPNotFound()
    return value
