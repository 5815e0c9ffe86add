"""``GET /openapi.json``: the OpenAPI 3.1 document of the API this replica serves.

One document (``openapi.json`` next to this module, shipped as package data) describes the
whole listener: the Confluent v2 API, Confluent's API v3 (tagged ``v3``), ``/readyz``, this
endpoint, and the built-in Schema Registry, whose operations are tagged ``schema-registry``. One document, because it is one
server at one base URL with one error shape, and a client generator or a fuzzer pointed at the
gateway should find everything it can call in one place. The registry's routes exist only
with ``schema.registry.builtin=true``, so a replica without it serves the document without
them: what ``/openapi.json`` lists is exactly what this replica routes (a test checks both
configurations against ``build_app``).

The document is static, so it is read and serialized once, when the app is built.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from aiohttp import web

DOCUMENT = "openapi.json"
REGISTRY_TAG = "schema-registry"
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def document(*, builtin_registry: bool) -> dict[str, Any]:
    """The document, without the registry's operations when this replica does not serve them."""
    doc: dict[str, Any] = json.loads(resources.files(__name__).joinpath(DOCUMENT).read_bytes())
    if builtin_registry:
        return doc
    paths: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        kept = {
            key: value
            for key, value in item.items()
            if key not in _METHODS or REGISTRY_TAG not in value.get("tags", ())
        }
        if _METHODS & kept.keys():
            paths[path] = kept
    doc["paths"] = paths
    doc["tags"] = [tag for tag in doc.get("tags", ()) if tag["name"] != REGISTRY_TAG]
    return doc


def add_routes(app: web.Application, *, builtin_registry: bool) -> None:
    body = json.dumps(document(builtin_registry=builtin_registry)).encode()

    async def openapi(_: web.Request) -> web.Response:
        # Not negotiated: one representation, and tools that fetch it send any Accept.
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
