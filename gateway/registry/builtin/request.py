"""What a registry request asks for: the schema in its body, the version in its path.

Lenient where Confluent is lenient (unknown body fields are ignored: newer clients send
``metadata``/``ruleSet``), strict where a wrong guess would store the wrong thing.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from . import errors
from .model import LEVELS, SCHEMA_TYPES, Reference, SchemaText

_MAX_VERSION = 2**31 - 1


async def json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise errors.unprocessable("Request body is empty")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_json(str(exc)) from exc


async def schema_body(request: web.Request) -> SchemaText:
    return schema_from_json(await json_body(request))


def schema_from_json(body: Any) -> SchemaText:
    """``{"schema": str, "schemaType"?: str, "references"?: [{name, subject, version}]}``."""
    if not isinstance(body, dict):
        raise errors.unprocessable("Request body must be a JSON object")
    text = body.get("schema")
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_schema("Empty schema")
    schema_type = body.get("schemaType") or "AVRO"
    if not isinstance(schema_type, str) or schema_type.upper() not in SCHEMA_TYPES:
        raise errors.invalid_schema(f"Invalid schema type {schema_type}")
    return SchemaText(schema_type.upper(), text, _references(body.get("references")))


def _references(raw: Any) -> tuple[Reference, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise errors.invalid_schema("references must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise errors.invalid_schema("each reference must be an object")
        name, subject, version = item.get("name"), item.get("subject"), item.get("version")
        if not isinstance(name, str) or not name or not isinstance(subject, str) or not subject:
            raise errors.invalid_schema("a reference needs a name and a subject")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise errors.invalid_schema(f"reference '{name}' needs a version >= 1")
        out.append(Reference(name, subject, version))
    return tuple(out)


def version_id(raw: str) -> int | None:
    """A path version: ``None`` for "latest" (or -1, as Confluent accepts)."""
    if raw == "latest":
        return None
    try:
        n = int(raw)
    except ValueError:
        raise errors.invalid_version(raw) from None
    if n == -1:
        return None
    if not 1 <= n <= _MAX_VERSION:
        raise errors.invalid_version(raw)
    return n


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").strip().lower() == "true"


def level_body(body: Any) -> str:
    """PUT /config: Confluent's field is ``compatibility``; ``compatibilityLevel`` (the GET
    field) is accepted too, since clients mix them up."""
    if not isinstance(body, dict):
        raise errors.invalid_level()
    level = body.get("compatibility", body.get("compatibilityLevel"))
    if not isinstance(level, str) or level.upper() not in LEVELS:
        raise errors.invalid_level()
    return level.upper()
