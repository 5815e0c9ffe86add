"""CORS (PLACEHOLDER, being built)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)
