"""Request bodies as v3 reads them (Confluent's v3 resources, reference 3.1 and 3.3).

v3 accepts only ``application/json`` (415 otherwise; a body-less request without a type
passes). A missing body where one is required is 422/42206, an unknown field 422/422,
malformed JSON or a wrong JSON type 400/400, the same Jackson rules v2 uses.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiohttp import web

from ..body import expect_object, read_json
from ..errors import GatewayError
from ..media import check_content_type

V3_CONSUMES = frozenset({"application/json"})


def payload_error(detail: str) -> GatewayError:
    return GatewayError(422, 42206, f"Payload error. {detail}")


async def read_object(
    request: web.Request,
    allowed: Collection[str],
    *,
    empty: str = "Null input provided. Data is required.",
) -> dict[str, Any]:
    """The body as a JSON object with only ``allowed`` fields; ``empty`` names a missing one."""
    check_content_type(request, V3_CONSUMES)
    body = await read_json(request)
    if body is None:
        raise payload_error(empty)
    return expect_object(body, allowed)


def check_no_body_type(request: web.Request) -> None:
    """For body-less methods: still 415 for a Content-Type v3 never reads."""
    check_content_type(request, V3_CONSUMES)
