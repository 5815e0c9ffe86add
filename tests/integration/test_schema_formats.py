"""avro / jsonschema / protobuf through the gateway, on real Kafka, with the built-in registry.

The gateway is never its own witness: what it writes is read back raw from Kafka and decoded
here with independent tools (fastavro, json + jsonschema, protobuf message classes built by the
test from its own protoc run), the Confluent framing parsed by hand; and records the test
frames itself, Confluent-style, with schemas it registers over HTTP, must come out of the
gateway's consumers as Confluent's REST Proxy shows them.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import fastavro
import jsonschema
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tests.harness.api import MakeGatewayFn, NewTopicFn, ReadBackFn
from tests.harness.topics import unique_topic_name
from tests.support.v2 import V2

Client = TestClient[web.Request, web.Application]

AVRO = "application/vnd.kafka.avro.v2+json"
JSONSCHEMA = "application/vnd.kafka.jsonschema.v2+json"
PROTOBUF = "application/vnd.kafka.protobuf.v2+json"
CTYPES = {"avro": AVRO, "jsonschema": JSONSCHEMA, "protobuf": PROTOBUF}
SCHEMA_TYPES = {"avro": "AVRO", "jsonschema": "JSON", "protobuf": "PROTOBUF"}
SR_JSON = "application/vnd.schemaregistry.v1+json"

# --- the schemas and values used throughout -------------------------------------------------

AVRO_VALUE_SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "amount", "type": ["int", "long", "double"]},
        {"name": "raw", "type": "bytes"},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "PAID"]}},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
    ],
}
AVRO_VALUES = [
    {
        "id": 1,
        "note": {"string": "first"},
        "amount": {"long": 100},
        "raw": "\u00ff\u0000z",
        "state": "NEW",
        "tags": {"a": "b"},
    },
    {"id": 2, "note": None, "amount": {"double": 2.5}, "raw": "", "state": "PAID", "tags": {}},
]
AVRO_KEY_SCHEMA = '"string"'

JSON_VALUE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
    "required": ["id"],
    "additionalProperties": False,
}
JSON_VALUES = [{"id": 1, "name": "héllo"}, {"id": 2}]
JSON_KEY_SCHEMA = '{"type": "string"}'

PROTO_VALUE_SCHEMA = """
syntax = "proto3";
package shop;

message Order {
  int64 id = 1;
  string name = 2;
  repeated int32 sizes = 3;
  Item item = 4;
  message Item { string sku = 1; }
}

message Other { bool flag = 1; }
"""
PROTO_VALUES = [
    {"id": "1", "name": "first", "sizes": [1, 2], "item": {"sku": "x"}},
    {"id": "2", "name": "", "sizes": [], "item": {"sku": ""}},
]
PROTO_KEY_SCHEMA = 'syntax = "proto3"; message Key { int32 key = 1; }'

CASES: dict[str, dict[str, Any]] = {
    "avro": {
        "key_schema": AVRO_KEY_SCHEMA,
        "value_schema": json.dumps(AVRO_VALUE_SCHEMA),
        "records": [{"key": f"k{i}", "value": v} for i, v in enumerate(AVRO_VALUES)],
        # What the consumer shows is the Avro JSON encoding of what was written: the input.
        "shown": [(f"k{i}", v) for i, v in enumerate(AVRO_VALUES)],
    },
    "jsonschema": {
        "key_schema": JSON_KEY_SCHEMA,
        "value_schema": json.dumps(JSON_VALUE_SCHEMA),
        "records": [{"key": f"k{i}", "value": v} for i, v in enumerate(JSON_VALUES)],
        "shown": [(f"k{i}", v) for i, v in enumerate(JSON_VALUES)],
    },
    "protobuf": {
        "key_schema": PROTO_KEY_SCHEMA,
        "value_schema": PROTO_VALUE_SCHEMA,
        "records": [{"key": {"key": i}, "value": v} for i, v in enumerate(PROTO_VALUES)],
        # JsonFormat with default values printed: key 0 shows as {"key": 0}.
        "shown": [({"key": i}, v) for i, v in enumerate(PROTO_VALUES)],
    },
}


def request_body(fmt: str) -> dict[str, Any]:
    return {k: CASES[fmt][k] for k in ("key_schema", "value_schema", "records")}


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
async def registry_topic(new_topic: NewTopicFn) -> str:
    """The built-in registry's own compacted topic, fresh per test (no shared ids)."""
    return await new_topic(1, unique_topic_name("_schemas-"), {"cleanup.policy": "compact"})


@pytest.fixture
async def gateway(make_gateway: MakeGatewayFn, registry_topic: str) -> Client:
    return await make_gateway(
        {
            "schema.registry.builtin": "true",
            "schema.registry.topic": registry_topic,
            "consumer.request.timeout.ms": "500",
        }
    )


async def produce(client: Client, topic: str, fmt: str, body: Any) -> tuple[int, Any]:
    async with client.post(
        f"/topics/{topic}", data=orjson.dumps(body), headers={"Content-Type": CTYPES[fmt]}
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def register(
    client: Client, subject: str, schema: str, schema_type: str, refs: list | None = None
) -> int:
    body: dict[str, Any] = {"schema": schema, "schemaType": schema_type}
    if refs:
        body["references"] = refs
    async with client.post(
        f"/subjects/{subject}/versions",
        data=orjson.dumps(body),
        headers={"Content-Type": SR_JSON},
    ) as resp:
        answer = await resp.json(content_type=None)
        assert resp.status == 200, answer
        return answer["id"]


async def consumer(api: V2, fmt: str) -> tuple[str, str]:
    group = "g-" + uuid.uuid4().hex[:10]
    status, body = await api.create(
        group, name="c", format=fmt, **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1}
    )
    assert status == 200, body
    return group, "c"


async def consume(
    client: Client, topic: str, fmt: str, want: int, accept: str | None = None
) -> list[dict]:
    api = V2(client)
    group, name = await consumer(api, fmt)
    assert await api.subscribe(group, name, [topic]) == 204
    return await api.drain(group, name, want, accept or CTYPES[fmt])


def unframe(data: bytes) -> tuple[int, bytes]:
    """The test's own reading of Confluent's framing: magic 0, big-endian id, payload."""
    assert data[0] == 0, data
    (schema_id,) = struct.unpack(">I", data[1:5])
    return schema_id, data[5:]


def frame(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + payload


def avro_bytes(schema: Any, datum: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


def avro_datum(schema: Any, payload: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(schema))


def proto_classes(sources: dict[str, str], main: str) -> dict[str, Any]:
    """Message classes for ``main``, compiled by the test's own protoc run."""
    with tempfile.TemporaryDirectory() as root:
        for name, text in sources.items():
            path = os.path.join(root, *name.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write(text)
        out = os.path.join(root, "set.pb")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{root}",
                "--include_imports",
                f"--descriptor_set_out={out}",
                main,
            ],
            check=True,
        )
        with open(out, "rb") as fh:
            files = descriptor_pb2.FileDescriptorSet.FromString(fh.read())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    fd = pool.FindFileByName(main)
    classes = {}
    for name, desc in fd.message_types_by_name.items():
        classes[name] = message_factory.GetMessageClass(desc)
        for nested in desc.nested_types:
            classes[f"{name}.{nested.name}"] = message_factory.GetMessageClass(nested)
    return classes


def elements(got: list[dict]) -> list[tuple[Any, Any]]:
    return [(r["key"], r["value"]) for r in got]


def error(status: int, body: Any) -> tuple[int, int]:
    assert isinstance(body, dict) and set(body) == {"error_code", "message"}, body
    return status, body["error_code"]


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["avro", "jsonschema", "protobuf"])
async def test_round_trip_through_the_gateway(
    gateway: Client, new_topic: NewTopicFn, fmt: str
) -> None:
    topic = await new_topic()
    case = CASES[fmt]
    status, answer = await produce(gateway, topic, fmt, request_body(fmt))
    assert status == 200, answer
    assert all(o["error_code"] is None for o in answer["offsets"])
    assert isinstance(answer["key_schema_id"], int)
    assert isinstance(answer["value_schema_id"], int)
    assert answer["key_schema_id"] != answer["value_schema_id"]

    got = await consume(gateway, topic, fmt, len(case["records"]))
    assert elements(got) == case["shown"]
    assert [(r["topic"], r["partition"], r["offset"]) for r in got] == [
        (topic, 0, i) for i in range(len(got))
    ]
    assert all(list(r) == ["topic", "key", "value", "partition", "offset"] for r in got)


async def test_avro_bytes_decode_with_fastavro(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    status, answer = await produce(gateway, topic, "avro", request_body("avro"))
    assert status == 200, answer
    raw = await read_back(topic, 2)
    key_id, key = unframe(raw[0].key)
    value_id, value = unframe(raw[0].value)
    assert (key_id, value_id) == (answer["key_schema_id"], answer["value_schema_id"])
    assert avro_datum("string", key) == "k0"
    assert key == b"\x04k0"  # the Avro string, nothing more
    assert avro_datum(AVRO_VALUE_SCHEMA, value) == {
        "id": 1,
        "note": "first",
        "amount": 100,
        "raw": b"\xff\x00z",
        "state": "NEW",
        "tags": {"a": "b"},
    }
    # {"long": 100} wrote union branch 1 (not int, branch 0): byte right after id and note.
    assert value == avro_bytes(
        AVRO_VALUE_SCHEMA,
        {
            "id": 1,
            "note": "first",
            "amount": ("long", 100),
            "raw": b"\xff\x00z",
            "state": "NEW",
            "tags": {"a": "b"},
        },
    )
    assert avro_datum(AVRO_VALUE_SCHEMA, unframe(raw[1].value)[1])["amount"] == 2.5


async def test_jsonschema_bytes_are_the_compact_document(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    status, answer = await produce(gateway, topic, "jsonschema", request_body("jsonschema"))
    assert status == 200, answer
    raw = await read_back(topic, 2)
    value_id, payload = unframe(raw[0].value)
    assert value_id == answer["value_schema_id"]
    assert payload == '{"id":1,"name":"héllo"}'.encode()
    jsonschema.validate(json.loads(payload), JSON_VALUE_SCHEMA)
    assert unframe(raw[0].key) == (answer["key_schema_id"], b'"k0"')


async def test_protobuf_bytes_have_confluent_message_indexes(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    status, answer = await produce(gateway, topic, "protobuf", request_body("protobuf"))
    assert status == 200, answer
    raw = await read_back(topic, 2)
    classes = proto_classes({"order.proto": PROTO_VALUE_SCHEMA}, "order.proto")
    value_id, rest = unframe(raw[0].value)
    assert value_id == answer["value_schema_id"]
    assert rest[0] == 0  # message indexes [0]: Confluent writes the single byte 0
    order = classes["Order"].FromString(rest[1:])
    assert (order.id, order.name, list(order.sizes), order.item.sku) == (1, "first", [1, 2], "x")
    key_classes = proto_classes({"key.proto": PROTO_KEY_SCHEMA}, "key.proto")
    _, key_rest = unframe(raw[1].key)
    assert key_rest[0] == 0 and key_classes["Key"].FromString(key_rest[1:]).key == 1


# --- records framed by another Confluent client -------------------------------------------------


async def test_consume_avro_written_in_confluent_wire_format(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic()
    value_id = await register(gateway, f"{topic}-value", json.dumps(AVRO_VALUE_SCHEMA), "AVRO")
    key_id = await register(gateway, f"{topic}-key", '"long"', "AVRO")
    datum = {
        "id": 9,
        "note": None,
        "amount": ("int", 3),
        "raw": b"\x01",
        "state": "PAID",
        "tags": {"t": "v"},
    }
    await producer.send_and_wait(
        topic,
        frame(value_id, avro_bytes(AVRO_VALUE_SCHEMA, datum)),
        key=frame(key_id, avro_bytes("long", -5)),
    )
    await producer.send_and_wait(topic, None, key=frame(key_id, avro_bytes("long", 6)))

    # Any of the three schema Accept types reads a schema-format instance (Confluent's quirk).
    for accept in (AVRO, PROTOBUF):
        got = await consume(gateway, topic, "avro", 2, accept)
        shown = {
            "id": 9,
            "note": None,
            "amount": {"int": 3},
            "raw": "\u0001",
            "state": "PAID",
            "tags": {"t": "v"},
        }
        assert elements(got) == [(-5, shown), (6, None)]


async def test_consume_jsonschema_written_in_confluent_wire_format(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic()
    value_id = await register(gateway, f"{topic}-value", json.dumps(JSON_VALUE_SCHEMA), "JSON")
    await producer.send_and_wait(topic, frame(value_id, b'{"id": 5, "name": "x"}'))
    got = await consume(gateway, topic, "jsonschema", 1, AVRO)
    assert elements(got) == [(None, {"id": 5, "name": "x"})]


async def test_consume_protobuf_nested_message_and_imports(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic()
    dep = (
        'syntax = "proto3";\npackage common;\nmessage Money { int64 cents = 1; string cur = 2; }\n'
    )
    main = (
        'syntax = "proto3";\npackage shop;\nimport "common/money.proto";\n'
        "message First { int32 a = 1; }\n"
        "message Payment { common.Money total = 1; Line line = 2;\n"
        "  message Line { string sku = 1; }\n}\n"
    )
    dep_id = await register(gateway, "common-money", dep, "PROTOBUF")
    main_id = await register(
        gateway,
        f"{topic}-value",
        main,
        "PROTOBUF",
        [{"name": "common/money.proto", "subject": "common-money", "version": 1}],
    )
    assert dep_id != main_id
    classes = proto_classes({"common/money.proto": dep, "main.proto": main}, "main.proto")
    payment = classes["Payment"](total={"cents": 1250, "cur": "EUR"}, line={"sku": "A1"})
    line = classes["Payment.Line"](sku="B2")
    # Payment is message [1]; its nested Line is [1, 0]: zigzag varints, count first.
    await producer.send_and_wait(topic, frame(main_id, b"\x02\x02" + payment.SerializeToString()))
    await producer.send_and_wait(topic, frame(main_id, b"\x04\x02\x00" + line.SerializeToString()))
    first = classes["First"](a=7)
    await producer.send_and_wait(topic, frame(main_id, b"\x00" + first.SerializeToString()))

    got = await consume(gateway, topic, "protobuf", 3)
    assert [r["value"] for r in got] == [
        {"total": {"cents": "1250", "cur": "EUR"}, "line": {"sku": "A1"}},
        {"sku": "B2"},
        {"a": 7},
    ]


# --- produce with a schema id -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["avro", "jsonschema", "protobuf"])
async def test_produce_with_schema_ids(gateway: Client, new_topic: NewTopicFn, fmt: str) -> None:
    topic = await new_topic()
    case = CASES[fmt]
    value_id = await register(gateway, f"{topic}-value", case["value_schema"], SCHEMA_TYPES[fmt])
    key_id = await register(gateway, f"{topic}-key", case["key_schema"], SCHEMA_TYPES[fmt])
    body = {"key_schema_id": key_id, "value_schema_id": value_id, "records": case["records"]}
    status, answer = await produce(gateway, topic, fmt, body)
    assert status == 200, answer
    assert (answer["key_schema_id"], answer["value_schema_id"]) == (key_id, value_id)
    # The same text again finds the registered ids instead of registering new ones.
    status, answer = await produce(gateway, topic, fmt, request_body(fmt))
    assert (status, answer["key_schema_id"], answer["value_schema_id"]) == (200, key_id, value_id)
    got = await consume(gateway, topic, fmt, 2 * len(case["records"]))
    assert elements(got) == 2 * case["shown"]


async def test_values_only_and_keyless_records(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic()
    body = {"value_schema": '["null", "string"]', "records": [{"value": {"string": "v"}}, {}]}
    # The second record has neither key nor value: that is refused before anything is sent.
    status, answer = await produce(gateway, topic, "avro", body)
    assert error(status, answer) == (422, 422)
    body["records"] = [{"value": {"string": "v"}}, {"value": {"string": "w"}, "partition": 0}]
    status, answer = await produce(gateway, topic, "avro", body)
    assert (status, answer["key_schema_id"]) == (200, None)
    got = await consume(gateway, topic, "avro", 2)
    assert elements(got) == [(None, "v"), (None, "w")]  # a top-level union is shown unwrapped


# --- produce errors -----------------------------------------------------------------------------


async def assert_nothing_written(read_back: ReadBackFn, topic: str) -> None:
    assert await read_back(topic, 1, timeout=1.5) == []


async def test_key_or_value_without_its_schema(
    gateway: Client, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    topic = await new_topic()
    schema = json.dumps(AVRO_VALUE_SCHEMA)
    body = {"value_schema": schema, "records": [{"key": "k", "value": AVRO_VALUES[0]}]}
    status, answer = await produce(gateway, topic, "avro", body)
    assert error(status, answer) == (422, 42201)
    assert answer["message"] == "Request includes keys but does not include key schema"
    body = {"key_schema": '"string"', "records": [{"key": "k", "value": {"id": 1}}]}
    status, answer = await produce(gateway, topic, "avro", body)
    assert error(status, answer) == (422, 42202)
    assert answer["message"] == "Request includes values but does not include value schema"
    await assert_nothing_written(read_back, topic)


@pytest.mark.parametrize(
    ("fmt", "schema"),
    [
        ("avro", '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "nope"}]}'),
        ("avro", "not json"),
        ("jsonschema", '{"type": 12}'),
        ("jsonschema", "[1, 2"),
        ("protobuf", 'syntax = "proto3"; message M { strin a = 1; }'),
        ("protobuf", 'syntax = "proto3"; import "missing.proto"; message M { int32 a = 1; }'),
    ],
)
async def test_invalid_schema_text(
    gateway: Client, new_topic: NewTopicFn, fmt: str, schema: str
) -> None:
    topic = await new_topic()
    status, answer = await produce(
        gateway, topic, fmt, {"value_schema": schema, "records": [{"value": {"a": 1}}]}
    )
    assert error(status, answer) == (422, 42205)
    assert answer["message"].startswith("Invalid schema: ")


@pytest.mark.parametrize(
    ("fmt", "value", "detail"),
    [
        ("avro", {**AVRO_VALUES[0], "amount": 5}, "Expected start-union"),
        ("avro", {**AVRO_VALUES[0], "state": "LOST"}, "Unknown symbol"),
        ("jsonschema", {"id": "one"}, "#/id"),
        ("jsonschema", {"id": 1, "extra": True}, "Additional properties"),
        ("protobuf", {"id": "1", "nope": 1}, "no field named"),
        ("protobuf", {"id": "x"}, "id"),
    ],
)
async def test_data_not_matching_its_schema_is_a_400_and_writes_nothing(
    gateway: Client,
    new_topic: NewTopicFn,
    read_back: ReadBackFn,
    fmt: str,
    value: Any,
    detail: str,
) -> None:
    topic = await new_topic()
    good = CASES[fmt]["records"][0]["value"]
    body = {
        "value_schema": CASES[fmt]["value_schema"],
        "records": [{"value": good}, {"value": value}],  # the good one is not written either
    }
    status, answer = await produce(gateway, topic, fmt, body)
    assert error(status, answer) == (400, 400)
    assert answer["message"].startswith("Bad Request: ")
    assert detail in answer["message"]
    await assert_nothing_written(read_back, topic)


@pytest.mark.parametrize(
    ("fmt", "value", "status", "code"),
    [
        ("avro", None, 400, 400),  # a record schema does not take null
        ("protobuf", None, 400, 400),  # JsonFormat: a message must be an object
    ],
)
async def test_null_value_with_a_schema_that_refuses_it(
    gateway: Client, new_topic: NewTopicFn, fmt: str, value: Any, status: int, code: int
) -> None:
    topic = await new_topic()
    body = {"value_schema": CASES[fmt]["value_schema"], "records": [{"key": None, "value": value}]}
    got_status, answer = await produce(gateway, topic, fmt, body)
    assert error(got_status, answer) == (status, code)


async def test_schema_id_and_text_together(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic()
    body = {"value_schema": '"string"', "value_schema_id": 1, "records": [{"value": "x"}]}
    status, answer = await produce(gateway, topic, "avro", body)
    assert error(status, answer) == (422, 422)
    assert "value_schema and value_schema_id" in answer["message"]


async def test_unknown_or_foreign_schema_ids(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic()
    status, answer = await produce(
        gateway, topic, "avro", {"value_schema_id": 999_999, "records": [{"value": "x"}]}
    )
    assert error(status, answer) == (422, 42207)
    assert answer["message"].startswith(
        "Error serializing message. Error when fetching schema by id. schemaId = 999999\n"
    )
    # Registered, but under another topic's subject: Confluent refuses it (42207) too.
    other_id = await register(gateway, "elsewhere-value", '"string"', "AVRO")
    status, answer = await produce(
        gateway, topic, "avro", {"value_schema_id": other_id, "records": [{"value": "x"}]}
    )
    assert error(status, answer) == (422, 42207)
    assert f"subject = {topic}-value" in answer["message"]
    # A protobuf schema's id used for an avro request: the schema is unusable here.
    proto_id = await register(gateway, f"{topic}-value", PROTO_KEY_SCHEMA, "PROTOBUF")
    status, answer = await produce(
        gateway, topic, "avro", {"value_schema_id": proto_id, "records": [{"value": "x"}]}
    )
    assert error(status, answer) == (422, 42205)


async def test_no_registry_configured(make_gateway: MakeGatewayFn, new_topic: NewTopicFn) -> None:
    gateway = await make_gateway({"schema.registry.url": ""})
    topic = await new_topic()
    for fmt in ("avro", "jsonschema", "protobuf"):
        status, answer = await produce(
            gateway, topic, fmt, {"value_schema": '"string"', "records": [{"value": "x"}]}
        )
        assert error(status, answer) == (422, 42206)
        assert answer["message"] == (
            "Payload error. Schema Registry must be configured when using schemas."
        )
        status, answer = await V2(gateway).create("g", format=fmt)
        assert error(status, answer) == (422, 42206)
    # Without schemas there is nothing to look up: the usual 42202 for a value.
    status, answer = await produce(gateway, topic, "avro", {"records": [{"value": "x"}]})
    assert error(status, answer) == (422, 42202)


async def test_registry_unreachable(make_gateway: MakeGatewayFn, new_topic: NewTopicFn) -> None:
    gateway = await make_gateway({"schema.registry.url": "http://127.0.0.1:1"})
    topic = await new_topic()
    status, answer = await produce(
        gateway, topic, "avro", {"value_schema": '"string"', "records": [{"value": "x"}]}
    )
    assert error(status, answer) == (422, 42207)
    assert answer["message"].startswith(
        f"Error serializing message. Error when fetching schema version. subject = {topic}-value"
    )


# --- a registry we control: other registries, failures, credentials ---------------------------


class FakeRegistry:
    """A scripted Confluent-compatible registry: ``status`` forces an answer for every call."""

    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, Any]] = {}
        self.status: int | None = None
        self.auth_seen: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(r"/schemas/ids/{id:\d+}", self.by_id)
        app.router.add_post("/subjects/{subject}", self.lookup)
        app.router.add_post("/subjects/{subject}/versions", self.register)
        return app

    def forced(self, request: web.Request) -> web.Response | None:
        self.auth_seen.append(request.headers.get("Authorization"))
        if self.status is None:
            return None
        return web.json_response(
            {"error_code": self.status * 100 + 1, "message": "scripted failure"},
            status=self.status,
        )

    async def by_id(self, request: web.Request) -> web.Response:
        if (forced := self.forced(request)) is not None:
            return forced
        found = self.schemas.get(int(request.match_info["id"]))
        if found is None:
            return web.json_response(
                {"error_code": 40403, "message": "Schema not found"}, status=404
            )
        return web.json_response(found)

    async def lookup(self, request: web.Request) -> web.Response:
        if (forced := self.forced(request)) is not None:
            return forced
        return web.json_response({"error_code": 40401, "message": "Subject not found"}, status=404)

    async def register(self, request: web.Request) -> web.Response:
        if (forced := self.forced(request)) is not None:
            return forced
        body = await request.json()
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = body
        return web.json_response({"id": schema_id})


@pytest.fixture
async def fake_registry() -> AsyncIterator[tuple[FakeRegistry, str]]:
    registry = FakeRegistry()
    server = TestServer(registry.app())
    await server.start_server()
    try:
        yield registry, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_registry_credentials_and_failures(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, fake_registry: tuple[FakeRegistry, str]
) -> None:
    registry, url = fake_registry
    gateway = await make_gateway(
        {"schema.registry.url": url, "schema.registry.basic.auth.user.info": "ann:s3cret"}
    )
    topic = await new_topic()
    body = {"value_schema": '"string"', "records": [{"value": "x"}]}
    status, answer = await produce(gateway, topic, "avro", body)
    assert (status, answer["value_schema_id"]) == (200, 1)
    assert registry.auth_seen[0] == "Basic YW5uOnMzY3JldA=="  # ann:s3cret

    for forced, expected in [(401, (403, 40301)), (403, (403, 40301)), (500, (422, 42207))]:
        registry.status = forced
        body["value_schema"] = f'{{"type": "string", "doc": "{forced}"}}'  # not cached yet
        status, answer = await produce(gateway, topic, "avro", body)
        assert error(status, answer) == expected, answer
        assert "scripted failure" in answer["message"]


async def test_consume_survives_a_registry_outage_without_skipping(
    make_gateway: MakeGatewayFn,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    fake_registry: tuple[FakeRegistry, str],
) -> None:
    registry, url = fake_registry
    registry.schemas[7] = {"schema": '"string"'}
    gateway = await make_gateway({"schema.registry.url": url, "consumer.request.timeout.ms": "500"})
    topic = await new_topic()
    await producer.send_and_wait(topic, frame(7, avro_bytes("string", "kept")))

    api = V2(gateway)
    group, name = await consumer(api, "avro")
    assert await api.subscribe(group, name, [topic]) == 204
    registry.status = 503
    for _ in range(40):
        status, answer, _ = await api.records(group, name, AVRO)
        if status != 200 or answer:
            break
    assert error(status, answer) == (408, 40801)
    assert "No record was skipped" in answer["message"]
    registry.status = None
    assert await api.drain(group, name, 1, AVRO) == [
        {"topic": topic, "key": None, "value": "kept", "partition": 0, "offset": 0}
    ]


async def test_a_gateway_uses_another_gateways_builtin_registry_over_http(
    gateway: Client, make_gateway: MakeGatewayFn, new_topic: NewTopicFn
) -> None:
    other = await make_gateway({"schema.registry.url": str(gateway.make_url("")).rstrip("/")})
    topic = await new_topic()
    status, answer = await produce(other, topic, "protobuf", request_body("protobuf"))
    assert status == 200, answer
    got = await consume(gateway, topic, "protobuf", 2)  # read where the registry lives
    assert elements(got) == CASES["protobuf"]["shown"]
    got = await consume(other, topic, "protobuf", 2)
    assert elements(got) == CASES["protobuf"]["shown"]


# --- consume errors: poison records -------------------------------------------------------------


async def test_undecodable_records_answer_408_and_are_skipped(
    gateway: Client, new_topic: NewTopicFn, producer: AIOKafkaProducer
) -> None:
    topic = await new_topic()
    value_id = await register(gateway, f"{topic}-value", '"string"', "AVRO")
    poison = [
        b"not framed at all",  # no magic byte
        frame(424242, b"\x02a"),  # an id the registry does not know
        frame(value_id, b"\x09"),  # a string whose length runs past the end
    ]
    await producer.send_and_wait(topic, frame(value_id, avro_bytes("string", "first")))
    for data in poison:
        await producer.send_and_wait(topic, data)
    await producer.send_and_wait(topic, frame(value_id, avro_bytes("string", "last")))

    api = V2(gateway)
    group, name = await consumer(api, "avro")
    assert await api.subscribe(group, name, [topic]) == 204
    seen: list[Any] = []
    failures: list[str] = []
    for _ in range(60):
        status, answer, _ = await api.records(group, name, AVRO)
        if status == 200:
            seen.extend(r["value"] for r in answer)
        else:
            assert error(status, answer) == (408, 40801)
            failures.append(answer["message"])
        if "last" in seen:
            break
    assert seen == ["first", "last"]
    assert len(failures) == 3
    for offset, message in zip((1, 2, 3), failures, strict=True):
        assert f"partition {topic}-0 at offset {offset}" in message
    assert "Unknown magic byte!" in failures[0]
    assert "424242 not found" in failures[1]


async def test_consumer_formats_are_accepted(gateway: Client) -> None:
    api = V2(gateway)
    for fmt in ("avro", "jsonschema", "protobuf", "AVRO"):
        status, body = await api.create("g-" + uuid.uuid4().hex[:8], format=fmt)
        assert status == 200, body


async def test_jsonschema_refs_resolve_through_registry_references(
    gateway: Client, new_topic: NewTopicFn
) -> None:
    topic = await new_topic()
    address = json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    person = json.dumps(
        {
            "type": "object",
            "properties": {"name": {"type": "string"}, "home": {"$ref": "address.json"}},
            "required": ["home"],
        }
    )
    await register(gateway, "address", address, "JSON")
    refs = [{"name": "address.json", "subject": "address", "version": 1}]
    person_id = await register(gateway, f"{topic}-value", person, "JSON", refs)

    body = {"value_schema_id": person_id, "records": [{"value": {"home": {"city": "Oslo"}}}]}
    status, answer = await produce(gateway, topic, "jsonschema", body)
    assert (status, answer["value_schema_id"]) == (200, person_id), answer
    body["records"] = [{"value": {"home": {"town": "Oslo"}}}]  # the referenced schema applies
    status, answer = await produce(gateway, topic, "jsonschema", body)
    assert error(status, answer) == (400, 400)
    assert "'city' is a required property" in answer["message"]
    got = await consume(gateway, topic, "jsonschema", 1)
    assert elements(got) == [(None, {"home": {"city": "Oslo"}})]


async def test_protobuf_well_known_imports(gateway: Client, new_topic: NewTopicFn) -> None:
    topic = await new_topic()
    schema = (
        'syntax = "proto3";\nimport "google/protobuf/timestamp.proto";\n'
        "message Event { google.protobuf.Timestamp at = 1; string name = 2; }\n"
    )
    body = {
        "value_schema": schema,
        "records": [{"value": {"at": "2024-05-01T12:00:00Z", "name": "x"}}],
    }
    status, answer = await produce(gateway, topic, "protobuf", body)
    assert status == 200, answer
    got = await consume(gateway, topic, "protobuf", 1)
    assert elements(got) == [(None, {"at": "2024-05-01T12:00:00Z", "name": "x"})]
