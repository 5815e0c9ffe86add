"""The built-in Schema Registry on real Kafka (and Redis for the multi-replica cases).

Every test gets its own ``schema.registry.topic``, so registries never see each other's
state on the shared broker. Expectations are Confluent Schema Registry's wire behaviour: paths,
bodies, error codes, and the ``_schemas`` record format (checked by writing and reading the
topic directly with aiokafka, as Confluent's registry would).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.harness.api import MakeGatewayFn, NewTopicFn, ReadBackFn
from tests.harness.topics import unique_topic_name

Client = TestClient[web.Request, web.Application]
SR_JSON = "application/vnd.schemaregistry.v1+json"


class SR:
    """A minimal registry client: status and decoded JSON body, nothing hidden."""

    def __init__(self, http: Client) -> None:
        self.http = http

    async def call(
        self, method: str, path: str, body: Any = None, **params: str
    ) -> tuple[int, Any]:
        headers = {"Content-Type": SR_JSON} if body is not None else {}
        data = orjson.dumps(body) if body is not None else None
        async with self.http.request(
            method, path, data=data, headers=headers, params=params or None
        ) as resp:
            text = await resp.text()
            return resp.status, (orjson.loads(text) if text else None)

    async def register(self, subject: str, schema: Any, **extra: Any) -> tuple[int, Any]:
        text = schema if isinstance(schema, str) else json.dumps(schema)
        return await self.call("POST", f"/subjects/{subject}/versions", {"schema": text, **extra})

    async def ok_register(self, subject: str, schema: Any, **extra: Any) -> int:
        status, body = await self.register(subject, schema, **extra)
        assert status == 200, body
        return body["id"]

    async def set_level(self, level: str, subject: str | None = None) -> None:
        path = f"/config/{subject}" if subject else "/config"
        status, body = await self.call("PUT", path, {"compatibility": level})
        assert (status, body) == (200, {"compatibility": level})


def rec(name: str, *fields: tuple[str, Any] | dict[str, Any]) -> dict[str, Any]:
    out = []
    for fld in fields:
        out.append(fld if isinstance(fld, dict) else {"name": fld[0], "type": fld[1]})
    return {"type": "record", "name": name, "fields": out}


def error(status: int, body: Any) -> tuple[int, int]:
    assert isinstance(body, dict) and set(body) == {"error_code", "message"}, body
    return status, body["error_code"]


@pytest.fixture
async def registry_topic(new_topic: NewTopicFn) -> str:
    """A fresh compacted topic, deleted at teardown like any test topic."""
    return await new_topic(1, unique_topic_name("_schemas-"), {"cleanup.policy": "compact"})


@pytest.fixture
async def sr(make_gateway: MakeGatewayFn, registry_topic: str) -> SR:
    client = await make_gateway(
        {"schema.registry.builtin": "true", "schema.registry.topic": registry_topic}
    )
    return SR(client)


# --- the core API ------------------------------------------------------------------------------


async def test_register_read_back_and_id_reuse(sr: SR) -> None:
    v1 = rec("User", ("name", "string"))
    id1 = await sr.ok_register("users-value", v1)
    assert await sr.ok_register("users-value", v1) == id1  # identical: same id, no new version
    # Same schema, other formatting, other subject: the same global id, version 1 there.
    pretty = json.dumps(v1, indent=4)
    assert await sr.ok_register("audit-value", pretty) == id1
    v2 = rec("User", ("name", "string"), {"name": "age", "type": "int", "default": 0})
    id2 = await sr.ok_register("users-value", v2)
    assert id2 != id1

    assert await sr.call("GET", "/subjects") == (200, ["audit-value", "users-value"])
    assert await sr.call("GET", "/subjects", subjectPrefix="users") == (200, ["users-value"])
    assert await sr.call("GET", "/subjects/users-value/versions") == (200, [1, 2])
    assert await sr.call("GET", "/subjects/audit-value/versions") == (200, [1])

    status, body = await sr.call("GET", "/subjects/users-value/versions/1")
    assert status == 200
    assert body["subject"] == "users-value" and body["version"] == 1 and body["id"] == id1
    assert "schemaType" not in body and "references" not in body  # AVRO, as Confluent
    assert json.loads(body["schema"]) == v1
    for latest in ("latest", "-1"):
        status, body = await sr.call("GET", f"/subjects/users-value/versions/{latest}")
        assert (status, body["version"], body["id"]) == (200, 2, id2)

    async with sr.http.get("/subjects/users-value/versions/2/schema") as resp:
        assert resp.status == 200
        assert resp.content_type == SR_JSON
        assert json.loads(await resp.text()) == v2

    status, body = await sr.call("GET", f"/schemas/ids/{id1}")
    assert status == 200 and set(body) == {"schema"} and json.loads(body["schema"]) == v1
    assert await sr.call("GET", f"/schemas/ids/{id1}/versions") == (
        200,
        [{"subject": "audit-value", "version": 1}, {"subject": "users-value", "version": 1}],
    )
    assert await sr.call("GET", f"/schemas/ids/{id1}/subjects") == (
        200,
        ["audit-value", "users-value"],
    )
    assert await sr.call("GET", "/schemas/types") == (200, ["JSON", "PROTOBUF", "AVRO"])


async def test_media_types_and_rest_proxy_paths_unaffected(sr: SR) -> None:
    await sr.ok_register("m-value", {"type": "string"})
    async with sr.http.get("/subjects") as resp:
        assert resp.content_type == SR_JSON
    async with sr.http.get("/subjects", headers={"Accept": "application/json"}) as resp:
        assert resp.content_type == "application/json"
    async with sr.http.get("/subjects/nope/versions") as resp:  # errors too
        assert resp.status == 404 and resp.content_type == SR_JSON
    async with sr.http.get("/topics") as resp:  # the REST proxy still answers on its paths
        assert resp.status == 200
    async with sr.http.get("/brokers") as resp:
        assert resp.status == 200


async def test_lookup_under_subject(sr: SR) -> None:
    schema = rec("Order", ("id", "long"))
    sid = await sr.ok_register("orders-value", schema)
    status, body = await sr.call(
        "POST", "/subjects/orders-value", {"schema": json.dumps(schema, indent=2)}
    )
    assert status == 200
    assert (body["subject"], body["version"], body["id"]) == ("orders-value", 1, sid)
    assert json.loads(body["schema"]) == schema

    other = rec("Order", ("id", "string"))
    assert error(
        *await sr.call("POST", "/subjects/orders-value", {"schema": json.dumps(other)})
    ) == (
        404,
        40403,
    )
    assert error(*await sr.call("POST", "/subjects/nope", {"schema": json.dumps(schema)})) == (
        404,
        40401,
    )


async def test_error_codes(sr: SR) -> None:
    schema = json.dumps(rec("E", ("a", "int")))
    await sr.ok_register("e-value", schema)

    assert error(*await sr.call("GET", "/subjects/nope/versions")) == (404, 40401)
    assert error(*await sr.call("GET", "/subjects/nope/versions/1")) == (404, 40401)
    assert error(*await sr.call("GET", "/subjects/nope/versions/latest")) == (404, 40401)
    assert error(*await sr.call("DELETE", "/subjects/nope")) == (404, 40401)
    assert error(*await sr.call("DELETE", "/subjects/nope/versions/1")) == (404, 40401)
    assert error(*await sr.call("GET", "/subjects/e-value/versions/7")) == (404, 40402)
    _, body = await sr.call("GET", "/subjects/e-value/versions/7")
    assert body["message"] == "Version 7 not found."
    for bad in ("abc", "0", "-2", "2147483648"):
        assert error(*await sr.call("GET", f"/subjects/e-value/versions/{bad}")) == (422, 42202)
    assert error(*await sr.call("GET", "/schemas/ids/999")) == (404, 40403)
    _, body = await sr.call("GET", "/schemas/ids/999")
    assert body["message"] == "Schema 999 not found"

    invalid = [
        {"schema": "{not json"},
        {"schema": json.dumps({"type": "record", "name": "R", "fields": [{"name": "a"}]})},
        {"schema": json.dumps({"type": "nosuchtype"})},
        {"schema": ""},
        {},
        {"schema": schema, "schemaType": "XML"},
        {"schema": json.dumps({"type": 12}), "schemaType": "JSON"},
        {"schema": "[1, 2]", "schemaType": "JSON"},
        {"schema": "   ", "schemaType": "PROTOBUF"},
        {"schema": json.dumps(rec("R", ("a", "int"))), "references": [{"name": "x"}]},
    ]
    for body in invalid:
        got = await sr.call("POST", "/subjects/e-value/versions", body)
        assert error(*got) == (422, 42201), (body, got)

    async with sr.http.post(
        "/subjects/e-value/versions", data=b"{oops", headers={"Content-Type": SR_JSON}
    ) as resp:
        assert resp.status == 400 and (await resp.json())["error_code"] == 400

    assert error(*await sr.call("PUT", "/config", {"compatibility": "SIDEWAYS"})) == (422, 42203)
    assert error(*await sr.call("PUT", "/config/e-value", {})) == (422, 42203)
    assert error(*await sr.call("GET", "/config/e-value")) == (404, 40408)


async def test_soft_and_permanent_deletes(sr: SR) -> None:
    await sr.set_level("NONE", "d-value")
    id1 = await sr.ok_register("d-value", {"type": "string"})
    id2 = await sr.ok_register("d-value", {"type": "int"})

    assert await sr.call("DELETE", "/subjects/d-value/versions/1") == (200, 1)
    assert await sr.call("GET", "/subjects/d-value/versions") == (200, [2])
    assert await sr.call("GET", "/subjects/d-value/versions", deleted="true") == (200, [1, 2])
    assert error(*await sr.call("GET", "/subjects/d-value/versions/1")) == (404, 40402)
    status, body = await sr.call("GET", "/subjects/d-value/versions/1", deleted="true")
    assert status == 200 and body["id"] == id1
    # The id stays readable: data written with it must remain decodable.
    assert (await sr.call("GET", f"/schemas/ids/{id1}"))[0] == 200
    assert error(*await sr.call("DELETE", "/subjects/d-value/versions/1")) == (404, 40406)
    assert error(*await sr.call("DELETE", "/subjects/d-value/versions/2", permanent="true")) == (
        404,
        40407,
    )
    assert error(*await sr.call("DELETE", "/subjects/d-value", permanent="true")) == (404, 40405)

    assert await sr.call("DELETE", "/subjects/d-value") == (200, [2])
    assert await sr.call("GET", "/subjects") == (200, [])
    assert await sr.call("GET", "/subjects", deleted="true") == (200, ["d-value"])
    assert error(*await sr.call("GET", "/subjects/d-value/versions")) == (404, 40401)
    assert error(*await sr.call("DELETE", "/subjects/d-value")) == (404, 40404)

    # Registering a deleted schema again makes a new version with the same id.
    assert await sr.ok_register("d-value", {"type": "int"}) == id2
    assert await sr.call("GET", "/subjects/d-value/versions") == (200, [3])
    assert await sr.call("DELETE", "/subjects/d-value/versions/latest") == (200, 3)

    assert await sr.call("DELETE", "/subjects/d-value", permanent="true") == (200, [1, 2, 3])
    assert error(*await sr.call("GET", "/subjects/d-value/versions", deleted="true")) == (
        404,
        40401,
    )
    assert await sr.call("GET", "/subjects", deleted="true") == (200, [])
    assert error(*await sr.call("GET", f"/schemas/ids/{id1}")) == (404, 40403)
    assert error(*await sr.call("GET", "/config/d-value")) == (404, 40408)  # removed with it
    # Versions start again from 1; ids never go back.
    new_id = await sr.ok_register("d-value", {"type": "long"})
    assert new_id > id2
    assert await sr.call("GET", "/subjects/d-value/versions") == (200, [1])


async def test_config_endpoints(sr: SR) -> None:
    assert await sr.call("GET", "/config") == (200, {"compatibilityLevel": "BACKWARD"})
    await sr.set_level("FULL")
    assert await sr.call("GET", "/config") == (200, {"compatibilityLevel": "FULL"})
    assert await sr.call("PUT", "/config/c-value", {"compatibility": "forward_transitive"}) == (
        200,
        {"compatibility": "FORWARD_TRANSITIVE"},
    )
    assert await sr.call("GET", "/config/c-value") == (
        200,
        {"compatibilityLevel": "FORWARD_TRANSITIVE"},
    )
    assert await sr.call("DELETE", "/config/c-value") == (
        200,
        {"compatibilityLevel": "FORWARD_TRANSITIVE"},
    )
    assert error(*await sr.call("GET", "/config/c-value")) == (404, 40408)
    assert await sr.call("GET", "/config/c-value", defaultToGlobal="true") == (
        200,
        {"compatibilityLevel": "FULL"},
    )
    assert error(*await sr.call("DELETE", "/config/c-value")) == (404, 40401)
    assert await sr.call("DELETE", "/config") == (200, {"compatibilityLevel": "FULL"})
    assert await sr.call("GET", "/config") == (200, {"compatibilityLevel": "BACKWARD"})


# --- compatibility -------------------------------------------------------------------------------

BASE = rec("P", ("a", "int"), ("b", "string"))
ADD_WITH_DEFAULT = rec(
    "P", ("a", "int"), ("b", "string"), {"name": "c", "type": "int", "default": 0}
)
ADD_NO_DEFAULT = rec("P", ("a", "int"), ("b", "string"), ("c", "int"))
DROP_B = rec("P", ("a", "int"))
PROMOTE_A = rec("P", ("a", "long"), ("b", "string"))


@pytest.mark.parametrize(
    ("level", "accepted", "rejected"),
    [
        ("BACKWARD", [ADD_WITH_DEFAULT, DROP_B, PROMOTE_A], [ADD_NO_DEFAULT]),
        ("FORWARD", [ADD_WITH_DEFAULT, ADD_NO_DEFAULT], [DROP_B, PROMOTE_A]),
        ("FULL", [ADD_WITH_DEFAULT], [ADD_NO_DEFAULT, DROP_B, PROMOTE_A]),
        ("NONE", [ADD_NO_DEFAULT, DROP_B, {"type": "string"}], []),
    ],
)
async def test_avro_levels_accept_and_reject(
    sr: SR, level: str, accepted: list[Any], rejected: list[Any]
) -> None:
    for i, candidate in enumerate(accepted):
        subject = f"ok{i}-value"
        await sr.set_level(level, subject)
        await sr.ok_register(subject, BASE)
        path = f"/compatibility/subjects/{subject}/versions/latest"
        assert await sr.call("POST", path, {"schema": json.dumps(candidate)}) == (
            200,
            {"is_compatible": True},
        )
        await sr.ok_register(subject, candidate)
        assert await sr.call("GET", f"/subjects/{subject}/versions") == (200, [1, 2])
    for i, candidate in enumerate(rejected):
        subject = f"bad{i}-value"
        await sr.set_level(level, subject)
        await sr.ok_register(subject, BASE)
        path = f"/compatibility/subjects/{subject}/versions/1"
        status, body = await sr.call(
            "POST", path, {"schema": json.dumps(candidate)}, verbose="true"
        )
        assert status == 200 and body["is_compatible"] is False and body["messages"], body
        status, body = await sr.register(subject, candidate)
        assert error(status, body) == (409, 409)
        assert "incompatible with an earlier schema" in body["message"]
        assert await sr.call("GET", f"/subjects/{subject}/versions") == (200, [1])


V1 = rec("T", {"name": "f", "type": "string", "default": ""})
V2 = rec("T")
V3 = rec("T", {"name": "f", "type": "int", "default": 0})


@pytest.mark.parametrize(
    ("level", "third_accepted"),
    [
        ("BACKWARD", True),
        ("BACKWARD_TRANSITIVE", False),
        ("FULL", True),
        ("FULL_TRANSITIVE", False),
    ],
)
async def test_transitive_levels_check_every_live_version(
    sr: SR, level: str, third_accepted: bool
) -> None:
    await sr.set_level(level)
    await sr.ok_register("tr-value", V1)
    await sr.ok_register("tr-value", V2)
    status, body = await sr.register("tr-value", V3)
    assert status == (200 if third_accepted else 409), body
    every = "/compatibility/subjects/tr-value/versions"
    assert (await sr.call("POST", every, {"schema": json.dumps(V3)}))[1] == {
        "is_compatible": third_accepted or status == 200
    }


async def test_forward_transitive(sr: SR) -> None:
    await sr.set_level("FORWARD_TRANSITIVE")
    old = rec("F", ("a", "int"), {"name": "b", "type": "int", "default": 1})
    await sr.ok_register("ft-value", old)
    await sr.ok_register(
        "ft-value", rec("F", ("a", "int"), ("b", "int"))
    )  # reads old data? forward
    status, body = await sr.register("ft-value", rec("F", ("a", "int")))  # drops b: v2 cannot read
    assert error(status, body) == (409, 409)


async def test_compatibility_endpoint_edges(sr: SR) -> None:
    schema = {"schema": json.dumps(BASE)}
    # Nothing registered yet: "latest" of nothing is compatible; a numbered version is not found.
    assert await sr.call("POST", "/compatibility/subjects/none-value/versions/latest", schema) == (
        200,
        {"is_compatible": True},
    )
    assert error(
        *await sr.call("POST", "/compatibility/subjects/none-value/versions/3", schema)
    ) == (404, 40401)
    await sr.ok_register("edge-value", BASE)
    assert error(
        *await sr.call("POST", "/compatibility/subjects/edge-value/versions/3", schema)
    ) == (404, 40402)
    assert error(
        *await sr.call("POST", "/compatibility/subjects/edge-value/versions/x", schema)
    ) == (422, 42202)
    bad = {"schema": "{"}
    path = "/compatibility/subjects/edge-value/versions/latest"
    assert error(*await sr.call("POST", path, bad)) == (422, 42201)
    status, body = await sr.call("POST", path, bad, verbose="true")
    assert (
        status == 200 and body["is_compatible"] is False and "Invalid schema" in body["messages"][0]
    )


async def test_json_schema_and_protobuf_with_level_none(sr: SR) -> None:
    js1 = {"type": "object", "properties": {"a": {"type": "integer"}}}
    js2 = {"type": "object", "properties": {"a": {"type": "string"}}}
    # The first version of a subject has nothing to be compatible with: accepted at any level.
    jid = await sr.ok_register("js-value", js1, schemaType="JSON")
    status, body = await sr.register("js-value", js2, schemaType="JSON")
    assert error(status, body) == (422, 42203)
    assert "not implemented for JSON" in body["message"] and "NONE" in body["message"]
    path = "/compatibility/subjects/js-value/versions/latest"
    status, body = await sr.call("POST", path, {"schema": json.dumps(js2), "schemaType": "JSON"})
    assert error(status, body) == (422, 42203)

    await sr.set_level("NONE", "js-value")
    jid2 = await sr.ok_register("js-value", js2, schemaType="JSON")
    assert jid2 != jid
    assert await sr.call("POST", path, {"schema": json.dumps(js1), "schemaType": "JSON"}) == (
        200,
        {"is_compatible": True},
    )
    status, body = await sr.call("GET", "/subjects/js-value/versions/2")
    assert body["schemaType"] == "JSON" and json.loads(body["schema"]) == js2
    status, body = await sr.call("GET", f"/schemas/ids/{jid2}")
    assert body["schemaType"] == "JSON" and json.loads(body["schema"]) == js2
    # Looked up as JSON; the same text as AVRO is another schema.
    status, body = await sr.call(
        "POST", "/subjects/js-value", {"schema": json.dumps(js2), "schemaType": "JSON"}
    )
    assert (status, body["version"]) == (200, 2)

    proto1 = 'syntax = "proto3";\npackage acme;\nmessage Thing { string name = 1; }\n'
    proto2 = 'syntax = "proto3";\npackage acme;\nmessage Thing { string name = 1; int32 n = 2; }\n'
    await sr.set_level("NONE", "pb-value")
    pid = await sr.ok_register("pb-value", proto1, schemaType="PROTOBUF")
    assert await sr.ok_register("pb-value", proto1, schemaType="PROTOBUF") == pid
    await sr.ok_register("pb-value", proto2, schemaType="PROTOBUF")
    status, body = await sr.call("GET", f"/schemas/ids/{pid}")
    assert body == {"schemaType": "PROTOBUF", "schema": proto1}
    await sr.set_level("BACKWARD", "pb-value")
    status, body = await sr.register(
        "pb-value", proto1.replace("Thing", "Other"), schemaType="PROTOBUF"
    )
    assert error(status, body) == (422, 42203)

    # A different schema type under a checked level is simply incompatible.
    await sr.ok_register("mixed-value", {"type": "string"})
    status, body = await sr.register("mixed-value", js1, schemaType="JSON")
    assert error(status, body) == (409, 409)


async def test_references(sr: SR) -> None:
    address = {
        "type": "record",
        "name": "Address",
        "namespace": "acme",
        "fields": [{"name": "city", "type": "string"}],
    }
    user = {"type": "record", "name": "User", "fields": [{"name": "addr", "type": "acme.Address"}]}
    aid = await sr.ok_register("address", address)
    refs = [{"name": "acme.Address", "subject": "address", "version": 1}]
    # Without its reference the type is unknown.
    assert error(*await sr.register("user-value", user)) == (422, 42201)
    uid = await sr.ok_register("user-value", user, references=refs)
    assert uid != aid
    _, body = await sr.call("GET", "/subjects/user-value/versions/1")
    assert body["references"] == refs
    _, body = await sr.call("GET", f"/schemas/ids/{uid}")
    assert body["references"] == refs and "schemaType" not in body
    assert await sr.call("GET", "/subjects/address/versions/1/referencedby") == (200, [uid])
    assert error(*await sr.call("DELETE", "/subjects/address/versions/1")) == (422, 42206)
    missing = [{"name": "acme.Address", "subject": "address", "version": 9}]
    assert error(*await sr.register("user2-value", user, references=missing)) == (422, 42201)


# --- storage: Confluent's record format -----------------------------------------------------------


def key(**k: Any) -> bytes:
    return orjson.dumps(k)


async def test_reads_a_topic_written_by_confluent(
    make_gateway: MakeGatewayFn,
    registry_topic: str,
    kafka_bootstrap: str,
    read_back: ReadBackFn,
) -> None:
    avro1 = json.dumps(rec("A", ("x", "int")))
    avro2 = json.dumps(rec("A", ("x", "int"), {"name": "y", "type": "int", "default": 0}))
    other = json.dumps(rec("Z", ("z", "string")))
    js = json.dumps({"type": "object"})
    records: list[tuple[bytes, bytes | None]] = [
        (key(keytype="NOOP", magic=0), None),
        (key(keytype="CONFIG", magic=0), b'{"compatibilityLevel":"FULL"}'),  # global: no subject
        (key(keytype="CONFIG", subject="a-value", magic=0), b'{"compatibilityLevel":"NONE"}'),
        (key(keytype="MODE", magic=0), b'{"mode":"READWRITE"}'),
        (
            key(keytype="SCHEMA", subject="a-value", version=1, magic=1),
            orjson.dumps(
                {"subject": "a-value", "version": 1, "id": 1, "schema": avro1, "deleted": False}
            ),
        ),
        (
            key(keytype="SCHEMA", subject="a-value", version=2, magic=1),
            orjson.dumps(
                {
                    "subject": "a-value",
                    "version": 2,
                    "id": 7,
                    "schemaType": "AVRO",
                    "schema": avro2,
                    "deleted": False,
                }
            ),
        ),
        # The same schema under another subject shares its id.
        (
            key(keytype="SCHEMA", subject="b-value", version=1, magic=1),
            orjson.dumps(
                {"subject": "b-value", "version": 1, "id": 1, "schema": avro1, "deleted": False}
            ),
        ),
        (
            key(keytype="SCHEMA", subject="j-value", version=1, magic=1),
            orjson.dumps(
                {
                    "subject": "j-value",
                    "version": 1,
                    "id": 3,
                    "schemaType": "JSON",
                    "schema": js,
                    "deleted": False,
                }
            ),
        ),
        # A soft-deleted version, then a whole subject soft-deleted by DELETE_SUBJECT.
        (
            key(keytype="SCHEMA", subject="a-value", version=1, magic=1),
            orjson.dumps(
                {"subject": "a-value", "version": 1, "id": 1, "schema": avro1, "deleted": True}
            ),
        ),
        (
            key(keytype="DELETE_SUBJECT", subject="b-value", magic=0),
            b'{"subject":"b-value","version":1}',
        ),
        # A permanently deleted version (tombstone) and a subject that only ever had it.
        (
            key(keytype="SCHEMA", subject="gone-value", version=1, magic=1),
            orjson.dumps(
                {"subject": "gone-value", "version": 1, "id": 5, "schema": other, "deleted": True}
            ),
        ),
        (key(keytype="SCHEMA", subject="gone-value", version=1, magic=1), None),
        # Defense in depth: a later record claiming id 7 for another schema is ignored.
        (
            key(keytype="SCHEMA", subject="evil-value", version=1, magic=1),
            orjson.dumps(
                {"subject": "evil-value", "version": 1, "id": 7, "schema": other, "deleted": False}
            ),
        ),
        # Garbage and unknown key types are skipped.
        (b"not json", b"{}"),
        (key(keytype="CONTEXT", tenant="x", context=".", magic=0), b"{}"),
        (key(keytype="SCHEMA", subject="broken", version=1, magic=1), b'{"subject":"broken"}'),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for k, v in records:
            await producer.send_and_wait(registry_topic, value=v, key=k, partition=0)
    finally:
        await producer.stop()

    sr = SR(
        await make_gateway(
            {"schema.registry.builtin": "true", "schema.registry.topic": registry_topic}
        )
    )
    assert await sr.call("GET", "/subjects") == (200, ["a-value", "j-value"])
    assert await sr.call("GET", "/subjects", deleted="true") == (
        200,
        ["a-value", "b-value", "j-value"],
    )
    assert await sr.call("GET", "/subjects/a-value/versions") == (200, [2])
    _, body = await sr.call("GET", "/subjects/a-value/versions/latest")
    assert (body["id"], body["schema"]) == (7, avro2) and "schemaType" not in body
    assert (await sr.call("GET", "/schemas/ids/7"))[1] == {"schema": avro2}
    assert (await sr.call("GET", "/schemas/ids/1"))[1] == {"schema": avro1}
    assert (await sr.call("GET", "/schemas/ids/3"))[1] == {"schemaType": "JSON", "schema": js}
    assert error(*await sr.call("GET", "/schemas/ids/5")) == (404, 40403)
    assert error(*await sr.call("GET", "/subjects/evil-value/versions")) == (404, 40401)
    assert await sr.call("GET", "/config") == (200, {"compatibilityLevel": "FULL"})
    assert await sr.call("GET", "/config/a-value") == (200, {"compatibilityLevel": "NONE"})

    # New ids continue after the largest one seen; records are written in Confluent's format.
    new_id = await sr.ok_register("n-value", {"type": "string"})
    assert new_id == 8
    await sr.set_level("FORWARD", "n-value")
    await sr.call("DELETE", "/subjects/n-value")
    written = (await read_back(registry_topic, len(records) + 3))[len(records) :]
    assert [(r.key, r.value) for r in written] == [
        (
            b'{"keytype":"SCHEMA","subject":"n-value","version":1,"magic":1}',
            b'{"subject":"n-value","version":1,"id":8,"schema":"\\"string\\"","deleted":false}',
        ),
        (
            b'{"keytype":"CONFIG","subject":"n-value","magic":0}',
            b'{"subject":"n-value","compatibilityLevel":"FORWARD"}',
        ),
        (
            b'{"keytype":"DELETE_SUBJECT","subject":"n-value","magic":0}',
            b'{"subject":"n-value","version":1}',
        ),
    ]


async def test_creates_its_compacted_topic(
    make_gateway: MakeGatewayFn, kafka_admin: AIOKafkaAdminClient
) -> None:
    topic = unique_topic_name("_schemas-new-")
    try:
        sr = SR(
            await make_gateway({"schema.registry.builtin": "true", "schema.registry.topic": topic})
        )
        sid = await sr.ok_register("x-value", {"type": "int"})
        assert sid == 1
        (meta,) = await kafka_admin.describe_topics([topic])
        assert meta["error_code"] == 0 and len(meta["partitions"]) == 1
        (resp,) = await kafka_admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        configs = {c[0]: c[1] for c in resp.resources[0][4]}
        assert configs["cleanup.policy"] == "compact"
        assert await sr.ok_register("y-value", '"int"') == sid  # the same schema, simplified
        await sr.call("PUT", "/config", {"compatibility": "FULL"})
        # A second gateway (a restart) rebuilds the same view from the topic.
        again = SR(
            await make_gateway({"schema.registry.builtin": "true", "schema.registry.topic": topic})
        )
        assert await again.call("GET", f"/schemas/ids/{sid}") == (200, {"schema": '"int"'})
        assert await again.call("GET", "/config") == (200, {"compatibilityLevel": "FULL"})
        for client in (sr.http, again.http):  # stop the readers before their topic goes
            await client.close()
    finally:
        await kafka_admin.delete_topics([topic])


def deep_avro(depth: int) -> str:
    return '{"type":' * depth + '"int"' + "}" * depth


async def test_malformed_records_written_by_another_tool_are_skipped(
    make_gateway: MakeGatewayFn, registry_topic: str, producer: AIOKafkaProducer
) -> None:
    """Each of these used to stop every replica's reader at its offset for good (or, for the
    last two, to silently change what the registry allocates and checks)."""

    def value(**v: Any) -> bytes:
        base = {"subject": "evil-value", "version": 1, "id": 1, "schema": '"int"'}
        return orjson.dumps({**base, **v})

    schema_key = key(keytype="SCHEMA", subject="evil-value", version=1, magic=1)
    crafted: list[tuple[bytes, bytes | None]] = [
        (b"\xff\xfegarbage", b"\x00\x01\x02"),
        (("[" * 3000 + "]" * 3000).encode(), b"{}"),  # a key no JSON parser here reads
        (schema_key, value(schema=deep_avro(1000))),  # RecursionError in the reader
        (schema_key, value(schema="[" * 5000 + "]" * 5000, schemaType="JSON")),
        (schema_key, value(id=2**40)),  # would become the next id's base
        (key(keytype="CONFIG", magic=0), b'{"compatibilityLevel":"LOOSE"}'),  # no checks
    ]

    async def write(records: list[tuple[bytes, bytes | None]]) -> None:
        for k, v in records:
            await producer.send_and_wait(registry_topic, value=v, key=k, partition=0)

    await write(crafted)
    client = await make_gateway(
        {"schema.registry.builtin": "true", "schema.registry.topic": registry_topic}
    )
    sr = SR(client)
    v1 = rec("User", ("name", "string"))
    assert await sr.ok_register("users-value", v1) == 1  # nothing valid came before it
    status, body = await sr.call("GET", "/subjects/users-value/versions/1")
    assert status == 200 and (body["id"], json.loads(body["schema"])) == (1, v1)
    status, body = await sr.call("GET", "/schemas/ids/1")
    assert status == 200 and json.loads(body["schema"]) == v1
    assert await sr.call("GET", "/subjects") == (200, ["users-value"])
    # The global level is still the default: an incompatible version is refused.
    assert await sr.call("GET", "/config") == (200, {"compatibilityLevel": "BACKWARD"})
    assert error(*await sr.register("users-value", rec("User", ("name", "int")))) == (409, 409)

    from gateway.registry.builtin import REGISTRY

    registry = client.app[REGISTRY]
    assert registry.skipped_records == len(crafted)
    # While it runs, too (the tailing reader, not only the replay at start).
    await write([(schema_key, value(schema=deep_avro(1000), id=2))])
    v2 = rec("User", ("name", "string"), {"name": "age", "type": "int", "default": 0})
    assert await sr.ok_register("users-value", v2) == 2
    assert await sr.call("GET", "/subjects/users-value/versions") == (200, [1, 2])
    assert registry.skipped_records == len(crafted) + 1


async def test_odd_schemas_are_refused_not_crashed_on(sr: SR) -> None:
    for text, extra in [
        (deep_avro(1000), {}),
        ("[" * 5000 + "]" * 5000, {"schemaType": "JSON"}),
        (deep_avro(300), {}),
        ('{"type": {"type": "int"}}', {}),  # shallow, but used to trip the normalizer: 500
        ('{"type": ["null", "int"]}', {}),
    ]:
        assert error(*await sr.register("deep-value", text, **extra)) == (422, 42201)
        lookup = await sr.call("POST", "/subjects/deep-value", {"schema": text, **extra})
        assert error(*lookup) in ((404, 40401), (422, 42201))
    assert await sr.call("GET", "/subjects") == (200, [])


# --- several replicas ------------------------------------------------------------------------------


@pytest.fixture
async def replicas(
    make_gateway: MakeGatewayFn, registry_topic: str, redis_url: str
) -> tuple[SR, SR]:
    props = {
        "schema.registry.builtin": "true",
        "schema.registry.topic": registry_topic,
        "session.store.url": redis_url,
        "cluster.secret": "registry-test-secret",
    }
    return SR(await make_gateway(props)), SR(await make_gateway(props))


@pytest.fixture
async def unlocked_replicas(make_gateway: MakeGatewayFn, registry_topic: str) -> tuple[SR, SR]:
    """Two replicas *without* a shared lock (memory://, a misconfiguration for >1 node):
    only the replay rule and the writers' retry keep ids apart."""
    props = {"schema.registry.builtin": "true", "schema.registry.topic": registry_topic}
    return SR(await make_gateway(props)), SR(await make_gateway(props))


async def test_read_your_writes_across_replicas(replicas: tuple[SR, SR]) -> None:
    a, b = replicas
    for n in range(5):
        await a.set_level("NONE", "ryw-value")
        sid = await a.ok_register("ryw-value", {"type": "enum", "name": "E", "symbols": [f"S{n}"]})
        status, body = await b.call("GET", "/subjects/ryw-value/versions/latest")
        assert (status, body["id"], body["version"]) == (200, sid, n + 1)
        status, body = await b.call("GET", f"/schemas/ids/{sid}")
        assert status == 200
        await b.set_level("FULL", "ryw-value")
        assert await a.call("GET", "/config/ryw-value") == (200, {"compatibilityLevel": "FULL"})


async def test_two_replicas_never_give_one_id_to_two_schemas(
    replicas: tuple[SR, SR], registry_topic: str, read_back: ReadBackFn
) -> None:
    a, b = replicas
    schemas, subjects, results = await concurrent_registrations(a, b)
    # Writes are serialized: the same schema gets one id, whichever replica is asked.
    for ra, rb in results:
        assert ra == rb
    ids = [ra for ra, _ in results]
    assert len(set(ids)) == 20, ids
    for subject in sorted(set(subjects)):
        va, vb = (
            await a.call("GET", f"/subjects/{subject}/versions"),
            await b.call("GET", f"/subjects/{subject}/versions"),
        )
        assert va == vb == (200, [1, 2, 3, 4, 5])
    await each_id_names_one_schema(a, b, schemas, results, registry_topic, read_back)


async def test_without_the_lock_ids_still_never_collide(
    unlocked_replicas: tuple[SR, SR], registry_topic: str, read_back: ReadBackFn
) -> None:
    """Without serialization one schema may get two ids (harmless: both decode the same);
    what must still never happen is one id for two schemas."""
    a, b = unlocked_replicas
    schemas, _, results = await concurrent_registrations(a, b)
    await each_id_names_one_schema(a, b, schemas, results, registry_topic, read_back)


async def concurrent_registrations(
    a: SR, b: SR
) -> tuple[list[dict[str, Any]], list[str], list[tuple[int, int]]]:
    """20 different schemas over 4 subjects (versions contend too), each sent to both
    replicas at the same moment."""
    await a.set_level("NONE")
    schemas = [rec(f"S{i}", (f"f{i}", "int")) for i in range(20)]
    subjects = [f"sub{i % 4}-value" for i in range(20)]

    async def both(i: int) -> tuple[int, int]:
        ra, rb = await asyncio.gather(
            a.ok_register(subjects[i], schemas[i]), b.ok_register(subjects[i], schemas[i])
        )
        return ra, rb

    return schemas, subjects, list(await asyncio.gather(*(both(i) for i in range(20))))


async def each_id_names_one_schema(
    a: SR,
    b: SR,
    schemas: list[dict[str, Any]],
    results: list[tuple[int, int]],
    registry_topic: str,
    read_back: ReadBackFn,
) -> None:
    owner_of: dict[int, int] = {}
    for i, pair in enumerate(results):
        for sid in pair:
            assert owner_of.setdefault(sid, i) == i, (
                f"id {sid} given to schemas {owner_of[sid]}, {i}"
            )
    for sid, i in owner_of.items():
        ga, gb = (
            await a.call("GET", f"/schemas/ids/{sid}"),
            await b.call("GET", f"/schemas/ids/{sid}"),
        )
        assert ga == gb
        assert ga[0] == 200 and json.loads(ga[1]["schema"]) == schemas[i]
    # The log itself, replayed by a plain consumer with the rule "the first record claiming
    # an id owns it": every id the replicas answered names the schema it was answered for.
    log = await read_back(registry_topic, 500, timeout=3)
    first_claim: dict[int, str] = {}
    for r in log:
        k = orjson.loads(r.key)
        if k["keytype"] == "SCHEMA" and r.value is not None:
            v = orjson.loads(r.value)
            first_claim.setdefault(v["id"], v["schema"])
    for sid, i in owner_of.items():
        assert json.loads(first_claim[sid]) == schemas[i]


# --- in-process transport (the registry client's way in) ---------------------------------------


async def test_in_process_transport_answers_like_http(sr: SR) -> None:
    from gateway.registry.builtin import REGISTRY, InProcessTransport

    transport = InProcessTransport(sr.http.app[REGISTRY])
    body = {"schema": json.dumps(BASE)}
    status, doc, raw = await transport.request("POST", "/subjects/a%2Fb-value/versions", body)
    assert status == 200 and orjson.loads(raw) == doc
    sid = doc["id"]
    assert await sr.call("GET", "/subjects") == (200, ["a/b-value"])
    status, doc, _ = await transport.request("GET", f"/schemas/ids/{sid}", None)
    assert (status, doc) == await sr.call("GET", f"/schemas/ids/{sid}")
    path = "/subjects/a%2Fb-value/versions/latest"
    status, doc, _ = await transport.request("GET", path, None)
    assert (status, doc["id"], doc["version"]) == (200, sid, 1)
    status, doc, _ = await transport.request("POST", "/subjects/a%2Fb-value", body)
    assert (status, doc["id"]) == (200, sid)
    status, doc, _ = await transport.request("GET", "/schemas/ids/999", None)
    assert (status, doc["error_code"]) == (404, 40403)
    status, doc, _ = await transport.request("POST", "/subjects/x/versions", {"schema": "{"})
    assert (status, doc["error_code"]) == (422, 42201)


async def test_protobuf_is_compiled_with_its_references(sr: SR) -> None:
    await sr.set_level("NONE")
    common = 'syntax = "proto3";\npackage acme;\nmessage Money { int64 cents = 1; }\n'
    await sr.ok_register("money", common, schemaType="PROTOBUF")
    order = (
        'syntax = "proto3";\npackage acme;\nimport "acme/money.proto";\n'
        "message Order { acme.Money total = 1; }\n"
    )
    refs = [{"name": "acme/money.proto", "subject": "money", "version": 1}]
    assert error(*await sr.register("order-value", order, schemaType="PROTOBUF")) == (422, 42201)
    oid = await sr.ok_register("order-value", order, schemaType="PROTOBUF", references=refs)
    assert await sr.call("GET", f"/schemas/ids/{oid}") == (
        200,
        {"schemaType": "PROTOBUF", "references": refs, "schema": order},
    )
    broken = 'syntax = "proto3";\nmessage Broken { strng x = 1; }\n'
    assert error(*await sr.register("broken-value", broken, schemaType="PROTOBUF")) == (422, 42201)
