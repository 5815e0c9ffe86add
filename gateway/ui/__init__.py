"""The live topic page at ``/ui/stream`` (``ui.enabled=true``): a browser example of
``GET /topics/{t}/events``.

One self-contained HTML file (``stream.html`` next to this module, shipped as package data):
no external script, style sheet or CDN, so it works on a network without the internet and
trusts nothing but the gateway. The page is static and public, like ``/openapi.json``: it
holds no data, and the stream it opens is authenticated and authorised like any read.

It is served with a Content-Security-Policy that allows exactly its own inline script and
style (by hash) and connections to this origin: the page shows keys and values anyone may
have produced, and although it only ever writes them as text, a policy that runs no other
script makes a mistake there harmless.

With ``ui.enabled=false`` (the default) the route does not exist: 404 as any unknown path.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from aiohttp import web

from ..context import CONFIG

PATH = "/ui/stream"
PAGE = "stream.html"


def _hashes(page: str, tag: str) -> str:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in found
    )


def headers_for(page: str) -> dict[str, str]:
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_hashes(page, 'script')}",
            f"style-src {_hashes(page, 'style')}",
            "connect-src 'self'",  # the EventSource, and fetch to diagnose a refused stream
            "img-src data:",  # the empty favicon (no request for /favicon.ico)
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",  # revalidated: a gateway upgrade reaches open browsers
    }


def add_routes(app: web.Application) -> None:
    if not app[CONFIG].ui_enabled:
        return
    page = resources.files(__name__).joinpath(PAGE).read_text(encoding="utf-8")
    body, headers = page.encode(), headers_for(page)

    async def stream_page(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

    app.router.add_get(PATH, stream_page)
