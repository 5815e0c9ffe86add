"""The live topic page at ``/ui/stream`` (PLACEHOLDER, being built)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    pass
