"""Request-body reading with Confluent's (Jackson's) rules, shared by every v2 handler.

Jackson decides what v2 clients can get away with: unknown fields are a 422, malformed JSON
or a wrong type is a 400, scalars are coerced (``false`` for a string field, ``"100"`` for an
int field), and an empty body reads as ``null``. Matching those rules keeps curl scripts written
against Confluent working, and keeps every client mistake a 4xx.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson
from aiohttp import web

from .errors import GatewayError, bad_request, json_detail, unrecognized_field

MAX_BODY = 64 * 1024 * 1024


async def read_json(request: web.Request) -> Any:
    """The decoded body, or ``None`` when the body is empty."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise GatewayError(413, 413, "Request body is too large") from exc
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Malformed JSON: {exc}") from None


def expect_object(
    value: Any, allowed: Collection[str], what: str = "request body"
) -> dict[str, Any]:
    """``value`` as a JSON object with only ``allowed`` keys (422 names the first stranger)."""
    if not isinstance(value, dict):
        raise bad_request(
            f"Cannot deserialize {what}: expected a JSON object, got {json_detail(value)}"
        )
    for key in value:
        if key not in allowed:
            raise unrecognized_field(key)
    return value


def as_int(value: Any, name: str) -> int | None:
    """Jackson's int coercion: ints, integral floats and numeric strings; null stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request(f"Cannot deserialize value of type `int` from Boolean for field '{name}'")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise bad_request(
        f"Cannot deserialize value of type `int` from {json_detail(value)} for field '{name}'"
    )


def as_str(value: Any, name: str) -> str | None:
    """Jackson's String coercion: scalars become their text (``false`` -> ``"false"``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json_detail(value)
    raise bad_request(
        f"Cannot deserialize value of type `String` from {json_detail(value)} for field '{name}'"
    )


def as_list(value: Any, name: str) -> list[Any] | None:
    if value is None or isinstance(value, list):
        return value
    raise bad_request(
        f"Cannot deserialize field '{name}': expected a JSON array, got {json_detail(value)}"
    )
