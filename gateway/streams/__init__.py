"""Group-less topic streams for browsers: ``GET /topics/{t}/events`` (PLACEHOLDER, being built)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    pass
