"""The registry client's transport to the built-in registry, in-process: no loopback HTTP.

Answers the four calls the produce and consume paths make (schema by id, subject version,
lookup, register) exactly as the HTTP routes would, status and body included, so the client
cannot tell the difference; any other path is a 404 as on an unknown route.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import orjson

from gateway.errors import GatewayError

from .request import schema_from_json, version_id
from .routes import version_json
from .service import RegistryService

_BY_ID = re.compile(r"/schemas/ids/(\d+)")
_VERSION = re.compile(r"/subjects/([^/]+)/versions/([^/]+)")
_REGISTER = re.compile(r"/subjects/([^/]+)/versions")
_LOOKUP = re.compile(r"/subjects/([^/]+)")


class InProcessTransport:
    """Satisfies ``gateway.registry.client.Transport``."""

    def __init__(self, service: RegistryService) -> None:
        self._service = service

    async def request(self, method: str, path: str, body: Any) -> tuple[int, Any, bytes]:
        try:
            doc = await self._dispatch(method, path.split("?", 1)[0], body)
            status = 200
        except GatewayError as exc:
            doc, status = {"error_code": exc.error_code, "message": exc.message}, exc.status
        return status, doc, orjson.dumps(doc)

    async def close(self) -> None:
        return None

    async def _dispatch(self, method: str, path: str, body: Any) -> Any:
        service = self._service
        if method == "GET" and (m := _BY_ID.fullmatch(path)):
            return (await service.schema(int(m[1]))).schema.to_json()
        if method == "GET" and (m := _VERSION.fullmatch(path)):
            v, stored = await service.version(unquote(m[1]), version_id(unquote(m[2])))
            return version_json(v, stored)
        if method == "POST" and (m := _REGISTER.fullmatch(path)):
            return {"id": await service.register(unquote(m[1]), schema_from_json(body))}
        if method == "POST" and (m := _LOOKUP.fullmatch(path)):
            v, stored = await service.lookup(unquote(m[1]), schema_from_json(body))
            return version_json(v, stored)
        raise GatewayError(404, 404, "HTTP 404 Not Found")
