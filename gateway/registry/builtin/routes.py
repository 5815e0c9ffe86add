"""The registry's HTTP surface: Confluent Schema Registry paths on the gateway's listener.

``/subjects``, ``/schemas``, ``/config`` and ``/compatibility`` do not exist in the REST
Proxy API, so both share one listener and one URL. Responses are
``application/vnd.schemaregistry.v1+json`` unless the client asks for ``application/json``;
errors are the gateway's ``{"error_code", "message"}`` body with Schema Registry's codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from aiohttp import web

from gateway.context import RESPONSE_TYPE
from gateway.errors import GatewayError
from gateway.security.authz import authorizer

from .model import SCHEMA_TYPES, SchemaText, Version
from .request import flag, json_body, level_body, schema_body, version_id
from .service import ALL_VERSIONS, RegistryService
from .state import StoredSchema

SR_JSON = "application/vnd.schemaregistry.v1+json"
REGISTRY: web.AppKey[RegistryService] = web.AppKey("schema_registry", RegistryService)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/subjects", list_subjects)
    r.add_get("/subjects/{subject}/versions", list_versions)
    r.add_post("/subjects/{subject}/versions", register)
    r.add_get("/subjects/{subject}/versions/{version}", get_version)
    r.add_get("/subjects/{subject}/versions/{version}/schema", get_version_schema)
    r.add_get("/subjects/{subject}/versions/{version}/referencedby", get_referenced_by)
    r.add_delete("/subjects/{subject}/versions/{version}", delete_version)
    r.add_post("/subjects/{subject}", lookup)
    r.add_delete("/subjects/{subject}", delete_subject)
    r.add_get("/schemas/types", schema_types)
    r.add_get(r"/schemas/ids/{id:\d+}", get_schema)
    r.add_get(r"/schemas/ids/{id:\d+}/schema", get_schema_text)
    r.add_get(r"/schemas/ids/{id:\d+}/versions", get_schema_versions)
    r.add_get(r"/schemas/ids/{id:\d+}/subjects", get_schema_subjects)
    r.add_get("/config", get_config)
    r.add_put("/config", put_config)
    r.add_delete("/config", delete_config)
    r.add_get("/config/{subject}", get_config)
    r.add_put("/config/{subject}", put_config)
    r.add_delete("/config/{subject}", delete_config)
    r.add_post("/compatibility/subjects/{subject}/versions/{version}", check_compatibility)
    r.add_post("/compatibility/subjects/{subject}/versions", check_compatibility)


def registry_handler(fn: Handler) -> Handler:
    """Negotiate the response type first, so errors raised later are rendered in it."""

    @wraps(fn)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        json_only = "application/json" in accept and "schemaregistry" not in accept
        request[RESPONSE_TYPE] = "application/json" if json_only else SR_JSON
        authorizer(request).registry_request(request)  # before the body is read
        return await fn(request)

    return wrapper


def reply(request: web.Request, body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type=request[RESPONSE_TYPE])


def _service(request: web.Request) -> RegistryService:
    return request.app[REGISTRY]


def version_json(v: Version, stored: StoredSchema) -> dict[str, Any]:
    return {"subject": v.subject, "version": v.version, "id": v.id, **stored.schema.to_json()}


def _id(request: web.Request) -> int:
    schema_id = int(request.match_info["id"])
    if schema_id > 2**31 - 1:
        raise GatewayError(404, 40403, f"Schema {schema_id} not found")
    return schema_id


# --- /subjects ---------------------------------------------------------------------------------


@registry_handler
async def list_subjects(request: web.Request) -> web.Response:
    prefix = request.query.get("subjectPrefix", "")
    names = await _service(request).subjects(flag(request, "deleted"), prefix)
    return reply(request, authorizer(request).visible_subjects(request, names))


@registry_handler
async def list_versions(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    return reply(request, await _service(request).versions(subject, flag(request, "deleted")))


@registry_handler
async def register(request: web.Request) -> web.Response:
    schema = await schema_body(request)
    schema_id = await _service(request).register(request.match_info["subject"], schema)
    return reply(request, {"id": schema_id})


@registry_handler
async def get_version(request: web.Request) -> web.Response:
    v, stored = await _service(request).version(
        request.match_info["subject"],
        version_id(request.match_info["version"]),
        flag(request, "deleted"),
    )
    return reply(request, version_json(v, stored))


@registry_handler
async def get_version_schema(request: web.Request) -> web.Response:
    """The schema text itself as the body, as Confluent answers it."""
    _, stored = await _service(request).version(
        request.match_info["subject"],
        version_id(request.match_info["version"]),
        flag(request, "deleted"),
    )
    return web.Response(text=stored.schema.text, content_type=request[RESPONSE_TYPE])


@registry_handler
async def get_referenced_by(request: web.Request) -> web.Response:
    ids = await _service(request).referenced_by(
        request.match_info["subject"], version_id(request.match_info["version"])
    )
    return reply(request, ids)


@registry_handler
async def delete_version(request: web.Request) -> web.Response:
    deleted = await _service(request).delete_version(
        request.match_info["subject"],
        version_id(request.match_info["version"]),
        flag(request, "permanent"),
    )
    return reply(request, deleted)


@registry_handler
async def lookup(request: web.Request) -> web.Response:
    schema = await schema_body(request)
    v, stored = await _service(request).lookup(
        request.match_info["subject"], schema, flag(request, "deleted")
    )
    return reply(request, version_json(v, stored))


@registry_handler
async def delete_subject(request: web.Request) -> web.Response:
    versions = await _service(request).delete_subject(
        request.match_info["subject"], flag(request, "permanent")
    )
    return reply(request, versions)


# --- /schemas ----------------------------------------------------------------------------------


@registry_handler
async def schema_types(request: web.Request) -> web.Response:
    return reply(request, list(SCHEMA_TYPES))


@registry_handler
async def get_schema(request: web.Request) -> web.Response:
    await _may_read_id(request)
    stored = await _service(request).schema(_id(request))
    return reply(request, stored.schema.to_json())


@registry_handler
async def get_schema_text(request: web.Request) -> web.Response:
    await _may_read_id(request)
    stored = await _service(request).schema(_id(request))
    return web.Response(text=stored.schema.text, content_type=request[RESPONSE_TYPE])


@registry_handler
async def get_schema_versions(request: web.Request) -> web.Response:
    used = await _service(request).usages(_id(request), flag(request, "deleted"))
    visible = set(authorizer(request).visible_subjects(request, {v.subject for v in used}))
    return reply(
        request,
        [{"subject": v.subject, "version": v.version} for v in used if v.subject in visible],
    )


@registry_handler
async def get_schema_subjects(request: web.Request) -> web.Response:
    used = await _service(request).usages(_id(request), flag(request, "deleted"))
    return reply(
        request, authorizer(request).visible_subjects(request, sorted({v.subject for v in used}))
    )


async def _may_read_id(request: web.Request) -> None:
    if authorizer(request).rules is not None:
        used = await _service(request).usages(_id(request), include_deleted=True)
        authorizer(request).readable_usage(request, (v.subject for v in used))


# --- /config -----------------------------------------------------------------------------------


@registry_handler
async def get_config(request: web.Request) -> web.Response:
    level = await _service(request).level(
        request.match_info.get("subject"), flag(request, "defaultToGlobal")
    )
    return reply(request, {"compatibilityLevel": level})


@registry_handler
async def put_config(request: web.Request) -> web.Response:
    level = level_body(await json_body(request))
    await _service(request).set_level(request.match_info.get("subject"), level)
    return reply(request, {"compatibility": level})


@registry_handler
async def delete_config(request: web.Request) -> web.Response:
    previous = await _service(request).delete_level(request.match_info.get("subject"))
    return reply(request, {"compatibilityLevel": previous})


# --- /compatibility ----------------------------------------------------------------------------


@registry_handler
async def check_compatibility(request: web.Request) -> web.Response:
    raw = request.match_info.get("version")
    version = ALL_VERSIONS if raw is None else version_id(raw)
    verbose = flag(request, "verbose")
    schema: SchemaText = await schema_body(request)
    try:
        problems = await _service(request).check(request.match_info["subject"], version, schema)
    except GatewayError as exc:
        if not (verbose and exc.error_code == 42201):
            raise
        problems = [exc.message]
    body: dict[str, Any] = {"is_compatible": not problems}
    if verbose:
        body["messages"] = problems
    return reply(request, body)
