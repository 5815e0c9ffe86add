"""One access-log line per request, and the middleware that also feeds the request metrics.

It replaces aiohttp's access log (``server.py`` turns that off), which would log the raw path
(topic, group and instance names a client chose, unbounded) and nothing about who asked or
whether the request was forwarded. Here a line carries the route *template*, the status, the
duration, the principal's name and whether another replica forwarded it; never a header,
a query string or a body, so no credential can reach the log.

The middleware is the outermost one: it times the whole request, and sees the status the
error middleware produced (and the principal authentication set, on the way out).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from ..forwarding import FORWARDED
from ..security.principal import principal_of
from .metrics import METRICS_KEY, error_code_of, method_label, route_label

log = logging.getLogger("event_gateway.access")

# Status recorded for a request whose client went away before the answer (nginx's code).
CLIENT_GONE = 499


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    finally:
        duration = time.monotonic() - started
        metrics = request.app.get(METRICS_KEY)
        if metrics is not None:
            metrics.observe_request(request, status, duration)
            if status >= 500 and response is not None:
                code = error_code_of(response)
                if code is not None:
                    metrics.observe_error_code(code)
        access(request, status, duration)


def access(request: web.Request, status: int, duration_s: float) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    principal = principal_of(request).name
    forwarded = bool(request.get(FORWARDED, False))
    route, method = route_label(request), method_label(request)
    ms = round(duration_s * 1000, 1)
    log.info(
        "%s %s %d %.1f ms principal=%s forwarded=%s",
        method,
        route,
        status,
        ms,
        principal,
        "yes" if forwarded else "no",
        extra={
            "fields": {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": ms,
                "principal": principal,
                "forwarded": forwarded,
            }
        },
    )
