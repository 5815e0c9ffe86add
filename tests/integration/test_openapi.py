"""The OpenAPI document (gateway/openapi/openapi.json) against the routes ``build_app`` registers.

A document that lists an operation the gateway does not route, or misses one it does, misleads
every client generated from it and hides an endpoint from the schemathesis run
(test_schemathesis.py), so both directions are checked, for a replica with and without the
built-in registry. The document itself must be valid OpenAPI 3.1 and served as kept in the repo.
The v3 operations (Confluent's API v3, tag ``v3``) speak ``application/json`` only and promise
``Retry-After`` on their 503, as the fuzzer then checks on the wire.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from gateway.app import build_app
from gateway.config import from_properties
from gateway.openapi import REGISTRY_TAG, document
from tests.harness.api import MakeGatewayFn

DOCUMENT = Path(__file__).resolve().parents[2] / "gateway" / "openapi" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ERROR_REF = "#/components/schemas/Error"
AUTH = ("401", "403")


def _app(builtin_registry: bool) -> web.Application:
    # Building the app starts nothing (components start with the server), so no Kafka here.
    return build_app(
        from_properties(
            {
                "bootstrap.servers": "127.0.0.1:9",
                "schema.registry.builtin": "true" if builtin_registry else "false",
            }
        )
    )


def _registered(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route but HEAD, which is checked against the one
    sentence the document says about it: every GET outside ``/consumers`` answers HEAD (the
    twin aiohttp's ``add_get`` adds), and nothing else does."""
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    heads = {path for method, path in routes if method == "HEAD"}
    gets = {path for method, path in routes if method == "GET"}
    assert heads == {path for path in gets if not path.startswith("/consumers")}
    return {(method, path) for method, path in routes if method != "HEAD"}


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for method, path, _ in _operations(doc)}


@pytest.mark.parametrize("builtin_registry", [False, True], ids=["v2", "v2+registry"])
def test_every_route_is_documented_and_every_operation_is_routed(builtin_registry: bool) -> None:
    registered = _registered(_app(builtin_registry))
    documented = _documented(document(builtin_registry=builtin_registry))

    assert sorted(registered - documented) == [], "routes missing from openapi.json"
    assert sorted(documented - registered) == [], "documented operations that are not routed"
    # Not vacuous: the v2 API, the instance endpoints and the extras are all there.
    assert ("GET", "/consumers/{group}/instances/{instance}/records") in registered
    assert ("GET", "/openapi.json") in registered and ("GET", "/readyz") in registered
    assert (("GET", "/subjects") in registered) is builtin_registry


def test_registry_operations_are_exactly_the_tagged_ones() -> None:
    """The tag is what removes them from a replica without the registry: none may lack it,
    and nothing else may carry it."""
    full = document(builtin_registry=True)
    registry_routes = _registered(_app(True)) - _registered(_app(False))
    tagged = {(m, p) for m, p, op in _operations(full) if REGISTRY_TAG in op.get("tags", ())}
    assert tagged == registry_routes
    assert REGISTRY_TAG not in {t["name"] for t in document(builtin_registry=False)["tags"]}


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = json.loads(DOCUMENT.read_text())
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # the OpenAPI 3.1 meta-schema, $refs resolved
    validate(document(builtin_registry=False))


def test_operations_are_complete() -> None:
    """What the schemathesis run relies on: ids for links, path parameters that match the
    template, a success and the Confluent error shape for every failure documented."""
    doc = document(builtin_registry=True)
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    responses = doc["components"]["responses"]
    params = doc["components"]["parameters"]
    for method, path, op in _operations(doc):
        label = f"{method} {path}"
        declared = {
            params[p["$ref"].rsplit("/", 1)[1]]["name"] if "$ref" in p else p["name"]
            for p in op.get("parameters", ())
            if (params[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p)["in"] == "path"
        }
        assert declared == set(re.findall(r"{(\w+)}", path)), label
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), label
        assert "default" not in statuses, f"{label}: 'default' would hide undocumented statuses"
        for status, response in op["responses"].items():
            if "$ref" in response:
                response = responses[response["$ref"].rsplit("/", 1)[1]]
            if status.startswith(("4", "5")) and path != "/readyz":
                for media in response["content"].values():
                    schema = json.dumps(media["schema"])
                    # Confluent answers a record's auth failure with the produce response.
                    per_record = op["operationId"].startswith("produce") and status in AUTH
                    assert ERROR_REF in schema or per_record, f"{label} {status}: not an error"


def test_v3_operations_are_tagged_json_only_and_retriable() -> None:
    doc = document(builtin_registry=False)
    responses = doc["components"]["responses"]
    v3 = [(m, p, op) for m, p, op in _operations(doc) if p.startswith("/v3")]
    assert len(v3) >= 40, "the v3 API is documented"
    tagged = {(m, p) for m, p, op in _operations(doc) if "v3" in op.get("tags", ())}
    assert tagged == {(m, p) for m, p, _ in v3}
    for method, path, op in v3:
        label = f"{method} {path}"
        assert op["tags"] == ["v3"], label
        if "requestBody" in op:
            assert set(op["requestBody"]["content"]) == {"application/json"}, label
        for status, response in op["responses"].items():
            if "$ref" in response:
                response = responses[response["$ref"].rsplit("/", 1)[1]]
            assert set(response.get("content", {"application/json": 0})) == {"application/json"}, (
                f"{label} {status}"
            )
        unavailable = op["responses"]["503"]
        unavailable = responses[unavailable["$ref"].rsplit("/", 1)[1]]
        assert unavailable["headers"]["Retry-After"]["required"] is True, label


def test_partition_parameters_are_int32_at_least_zero() -> None:
    doc = document(builtin_registry=False)
    schema = doc["components"]["schemas"]["PartitionId"]
    assert schema == {**schema, "type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    assert doc["components"]["parameters"]["partition"]["schema"] == {
        "$ref": "#/components/schemas/PartitionId"
    }


@pytest.mark.parametrize("builtin_registry", [False, True], ids=["v2", "v2+registry"])
async def test_served_document_is_the_one_in_the_repo(
    make_gateway: MakeGatewayFn, builtin_registry: bool
) -> None:
    props = {}
    if builtin_registry:
        # Its own registry topic: the session broker is shared with other tests.
        registry_topic = f"_schemas-openapi-{uuid.uuid4().hex[:8]}"
        props = {"schema.registry.builtin": "true", "schema.registry.topic": registry_topic}
    client = await make_gateway(props)

    response = await client.get("/openapi.json", headers={"Accept": "*/*"})

    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == document(builtin_registry=builtin_registry)
    if not builtin_registry:
        full = json.loads(DOCUMENT.read_text())
        assert len(full["paths"]) > len((await response.json())["paths"])
