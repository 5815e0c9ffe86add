"""CORS: which web pages, served from other origins, may call the gateway from a browser.

Confluent's keys: ``access.control.allow.origin`` is empty (CORS off: no CORS header is ever
sent, and an ``OPTIONS`` request is answered as any other), ``*`` (any origin, without
credentials) or a comma-separated list of exact origins (``https://app.example.com``).

The browser enforces CORS; the gateway only says what it allows:

* A request whose ``Origin`` is allowed gets ``Access-Control-Allow-Origin`` on *every*
  answer: errors too (a page cannot read a 401 or a 429 otherwise) and streams, whose headers
  are sent from inside the handler, before the middleware sees the response. That is why the
  headers are set in ``on_response_prepare`` (:func:`install_cors`), the one hook every response
  passes through just before its headers go out, and by the middleware as well, for the
  responses it returns itself.
* A list echoes the one origin that asked, with ``Vary: Origin`` on every response (a shared
  cache must not hand one origin's answer to another) and ``Access-Control-Allow-Credentials:
  true``: an ``EventSource`` cannot set an ``Authorization`` header, so a browser page reaches
  a gateway with Basic authentication or client certificates only with credentials. ``*``
  never allows credentials (browsers refuse the combination anyway): listing origins is the
  operator's statement that those pages are trusted with the user's credentials.
* ``Retry-After`` and ``WWW-Authenticate`` are exposed to scripts: a page needs them to back
  off after a 429 or 503 and to explain a 401.
* A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) carries no credentials by
  design, so it is answered here, outside authentication: 204 with the allowed methods and
  headers for an allowed origin, 403 in Confluent's error shape for any other.
* A disallowed origin's ordinary request is served as if it had no ``Origin`` (no CORS
  header): its page cannot read the answer, and the gateway's write operations need a content
  type that forces a preflight first, so nothing is written on such a page's behalf.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from ..config import Config, ConfigError
from ..context import CONFIG
from ..errors import error_body

ORIGIN_KEY = "access.control.allow.origin"
# How long a browser may reuse a preflight's answer. Short, so a configuration change reaches
# open pages soon; long enough that a page's calls are not each preceded by a preflight.
PREFLIGHT_MAX_AGE_S = 600
EXPOSED_HEADERS = "Retry-After, WWW-Authenticate"


@dataclass(frozen=True)
class CorsPolicy:
    any_origin: bool
    origins: frozenset[str]
    methods: str
    headers: str

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """The CORS headers of an answer to a request from ``origin`` (empty: none)."""
        if origin is None or not self.allows(origin):
            return {}
        if self.any_origin:
            return {
                hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
                hdrs.ACCESS_CONTROL_EXPOSE_HEADERS: EXPOSED_HEADERS,
            }
        return {
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
            hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS: "true",
            hdrs.ACCESS_CONTROL_EXPOSE_HEADERS: EXPOSED_HEADERS,
        }

    def preflight_headers(self, origin: str) -> dict[str, str]:
        headers: dict[str, str] = {
            hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*" if self.any_origin else origin,
            hdrs.ACCESS_CONTROL_ALLOW_METHODS: self.methods,
            hdrs.ACCESS_CONTROL_ALLOW_HEADERS: self.headers,
            hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_S),
        }
        if not self.any_origin:
            headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        return headers

    def apply(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Add this request's CORS headers to ``response`` (again: no harm)."""
        if not self.any_origin:
            _vary_on_origin(response)
        response.headers.update(self.response_headers(request.headers.get(hdrs.ORIGIN)))


def policy(config: Config) -> CorsPolicy | None:
    """The CORS policy of ``config``; None when CORS is off. Raises ConfigError for an entry
    that is not an origin (a path, a missing scheme: it could never match, silently)."""
    return _policy(
        config.access_control_allow_origin,
        config.access_control_allow_methods,
        config.access_control_allow_headers,
    )


@functools.lru_cache(maxsize=8)
def _policy(origins: str, methods: str, headers: str) -> CorsPolicy | None:
    entries = [entry.strip() for entry in origins.split(",") if entry.strip()]
    if not entries:
        return None
    any_origin = "*" in entries
    return CorsPolicy(
        any_origin=any_origin,
        origins=frozenset() if any_origin else frozenset(map(_origin, entries)),
        methods=_list(methods),
        headers=_list(headers),
    )


def _origin(entry: str) -> str:
    """``entry`` as browsers serialize an origin: lower-case scheme and host, no default port,
    no trailing slash (so ``https://App.example.com:443/`` matches what a browser sends)."""
    parts = urlsplit(entry.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
        raise ConfigError(
            f"{ORIGIN_KEY}: {entry!r} is not an origin (scheme://host[:port], or * for any)"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{ORIGIN_KEY}: {entry!r} is not an origin (scheme://host[:port])")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{ORIGIN_KEY}: {entry!r} has an invalid port") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _list(value: str) -> str:
    return ", ".join(item.strip() for item in value.split(",") if item.strip())


def _vary_on_origin(response: web.StreamResponse) -> None:
    vary = response.headers.get(hdrs.VARY, "")
    names = {name.strip().lower() for name in vary.split(",")}
    if "origin" not in names and "*" not in names:
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"


def install_cors(app: web.Application, config: Config) -> None:
    """Validate the policy (a bad origin stops start-up) and put the CORS headers on every
    response as it is prepared, streams included."""
    cors = policy(config)
    if cors is None:
        return

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        cors.apply(request, response)

    app.on_response_prepare.append(on_prepare)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cors = policy(request.app[CONFIG])
    if cors is None:
        return await handler(request)
    origin = request.headers.get(hdrs.ORIGIN)
    if (
        request.method == hdrs.METH_OPTIONS
        and origin is not None
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    ):
        return _preflight(cors, origin)
    response = await handler(request)
    if not response.prepared:  # a stream's headers went out through install_cors()'s hook
        cors.apply(request, response)
    return response


def _preflight(cors: CorsPolicy, origin: str) -> web.Response:
    if not cors.allows(origin):
        response = web.Response(
            status=403,
            body=error_body(403, f"Origin not allowed ({ORIGIN_KEY})"),
            content_type="application/json",
        )
    else:
        response = web.Response(status=204, headers=cors.preflight_headers(origin))
    if not cors.any_origin:
        _vary_on_origin(response)
    return response
