"""A retriable refusal of an ``EventSource``, in a form it retries.

A browser's ``EventSource`` gives up for good on any answer that is not a 200 event stream, so
the 503 a draining replica (or an instance on the move, or Kafka out of reach) answers would
end a dashboard at every rolling restart. To a client that asks for ``text/event-stream`` only,
a 503 is therefore answered as a stream that says so and ends at once: ``retry:`` set from
``Retry-After``, then one ``error`` event carrying the usual ``{"error_code", "message"}``. The
browser reconnects after that delay (with ``Last-Event-ID``), through the load balancer, and
resumes. Every other client, and every non-retriable refusal (400, 403, 404, and 429, which
must not be hammered), keeps its plain JSON error and status.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import GatewayError, error_body
from . import framing


def wants_retry_stream(request: web.Request, exc: GatewayError) -> bool:
    return (
        exc.status == 503
        and request.method == "GET"
        and framing.SSE in request.headers.get("Accept", "")
    )


def retry_stream(exc: GatewayError) -> web.Response:
    delay_ms = 1000 * (exc.retry_after or 1)
    body = framing.sse_retry(delay_ms) + framing.sse_event(
        error_body(exc.error_code, exc.message), event="error"
    )
    return web.Response(
        body=body,
        headers={
            "Content-Type": f"{framing.SSE}; charset=utf-8",
            "Cache-Control": "no-cache",
            "Retry-After": str(exc.retry_after or 1),
        },
    )
