"""v3 config logic without Kafka: entry shaping, write bodies, the IncrementalAlterConfigs wire."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.v3 import config_bodies
from gateway.v3.config_entries import by_name, fields, find, from_kafka, source_name
from gateway.v3.config_protocol import (
    BROKER,
    DELETE,
    SET,
    TOPIC,
    AlterOp,
    AlterResource,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsRequest_v0,
)


def _raw(name: str, value: str | None, source: int, **more: Any) -> dict[str, Any]:
    return {
        "config_names": name,
        "config_value": value,
        "read_only": more.get("read_only", False),
        "config_source": source,
        "is_sensitive": more.get("is_sensitive", False),
        "config_synonyms": more.get("synonyms", []),
    }


# --- entries ---------------------------------------------------------------------------------


def test_sources_are_named_as_confluent_names_them() -> None:
    assert [source_name(i) for i in range(9)] == [
        "UNKNOWN",
        "DYNAMIC_TOPIC_CONFIG",
        "DYNAMIC_BROKER_CONFIG",
        "DYNAMIC_DEFAULT_BROKER_CONFIG",
        "STATIC_BROKER_CONFIG",
        "DEFAULT_CONFIG",
        "DYNAMIC_BROKER_LOGGER_CONFIG",
        "UNKNOWN",  # client metrics: Confluent has no name for it
        "DYNAMIC_GROUP_CONFIG",
    ]
    assert source_name(99) == "UNKNOWN"


def test_entry_fields_in_confluent_order_with_synonyms() -> None:
    synonyms = [
        {"config_name": "retention.ms", "config_value": "1000", "config_source": 1},
        {"config_name": "log.retention.hours", "config_value": "168", "config_source": 5},
    ]
    entry = from_kafka(_raw("retention.ms", "1000", 1, synonyms=synonyms))
    shaped = fields(entry)
    assert list(shaped) == [
        "name",
        "value",
        "is_default",
        "is_read_only",
        "is_sensitive",
        "source",
        "synonyms",
    ]
    assert shaped["is_default"] is False
    assert shaped["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert shaped["synonyms"] == [
        {"name": "retention.ms", "value": "1000", "source": "DYNAMIC_TOPIC_CONFIG"},
        {"name": "log.retention.hours", "value": "168", "source": "DEFAULT_CONFIG"},
    ]


def test_default_means_the_built_in_default_only() -> None:
    assert from_kafka(_raw("a", "1", 5)).is_default is True
    assert from_kafka(_raw("a", "1", 4)).is_default is False  # static: set in server.properties
    assert from_kafka(_raw("a", "1", 3)).is_default is False


def test_sensitive_values_are_null_even_if_kafka_sent_one() -> None:
    synonyms = [{"config_name": "p", "config_value": "secret", "config_source": 2}]
    entry = from_kafka(_raw("p", "secret", 2, is_sensitive=True, synonyms=synonyms))
    assert entry.value is None
    assert entry.synonyms[0].value is None
    assert fields(entry)["is_sensitive"] is True


def test_sorted_by_name_and_found_by_exact_name() -> None:
    entries = [
        from_kafka(_raw(n, "x", 5)) for n in ("segment.ms", "cleanup.policy", "retention.ms")
    ]
    assert [e.name for e in by_name(entries)] == ["cleanup.policy", "retention.ms", "segment.ms"]
    found = find(entries, "retention.ms")
    assert found is not None and found.name == "retention.ms"
    assert find(entries, "Retention.ms") is None


# --- bodies ----------------------------------------------------------------------------------


def test_alter_entries_default_to_set_and_delete_drops_the_value() -> None:
    body = {
        "data": [
            {"name": "cleanup.policy", "operation": "DELETE", "value": "ignored"},
            {"name": "retention.ms", "value": 1000},
            {"name": "segment.ms", "value": None, "operation": "SET"},
        ]
    }
    assert config_bodies.alter_ops(body) == [
        AlterOp("cleanup.policy", DELETE, None),
        AlterOp("retention.ms", SET, "1000"),  # Jackson's String coercion of a number
        AlterOp("segment.ms", SET, None),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code", "text"),
    [
        ({}, 422, 42206, "Payload error. data is required."),
        ({"data": None}, 422, 42206, "Payload error. data is required."),
        ({"data": {}}, 400, 400, "expected a JSON array"),
        ({"data": [{"value": "x"}]}, 422, 42206, "Payload error. data[0].name is required."),
        ({"data": [{"name": "a", "op": "SET"}]}, 422, 422, "Unrecognized field: op"),
        ({"data": [{"name": "a", "operation": "set"}]}, 400, 400, "[SET, DELETE]"),
        ({"data": [{"name": "a", "operation": "APPEND"}]}, 400, 400, "AlterOperation"),
        ({"data": ["a"]}, 400, 400, "expected a JSON object"),
        ({"data": [{"name": ["a"]}]}, 400, 400, "`String`"),
    ],
)
def test_alter_body_mistakes(body: dict[str, Any], status: int, code: int, text: str) -> None:
    with pytest.raises(GatewayError) as caught:
        config_bodies.alter_ops(body)
    assert (caught.value.status, caught.value.error_code) == (status, code)
    assert text in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), (True, True), (False, False), ("true", True), ("false", False)],
)
def test_validate_only_coercions(value: Any, expected: bool) -> None:
    assert config_bodies.validate_only({"validate_only": value}) is expected
    assert config_bodies.validate_only({}) is False


@pytest.mark.parametrize("value", [1, "yes", [], {}])
def test_validate_only_of_another_type_is_400(value: Any) -> None:
    with pytest.raises(GatewayError) as caught:
        config_bodies.validate_only({"validate_only": value})
    assert caught.value.status == 400


def test_put_value_may_be_null_or_absent() -> None:
    assert config_bodies.put_value({"value": "gzip"}) == "gzip"
    assert config_bodies.put_value({"value": None}) is None
    assert config_bodies.put_value({}) is None
    assert config_bodies.put_value({"value": 5}) == "5"


def test_topic_alters_merge_a_topic_named_twice_in_order() -> None:
    body = {
        "data": [
            {"topic_name": "a", "configs": [{"name": "x", "value": "1"}]},
            {"topic_name": "b", "configs": [{"name": "y", "operation": "DELETE"}]},
            {"topic_name": "a", "configs": [{"name": "z", "value": "2"}]},
        ]
    }
    assert config_bodies.topic_alters(body) == [
        ("a", [AlterOp("x", SET, "1"), AlterOp("z", SET, "2")]),
        ("b", [AlterOp("y", DELETE)]),
    ]


@pytest.mark.parametrize(
    ("entry", "status", "text"),
    [
        ({"configs": []}, 422, "Payload error. data[0].topic_name is required."),
        ({"topic_name": "a"}, 422, "Payload error. data[0].configs is required."),
        ({"topic_name": "a", "configs": [], "x": 1}, 422, "Unrecognized field: x"),
        ({"topic_name": "a", "configs": [{}]}, 422, "data[0].configs[0].name is required."),
    ],
)
def test_topic_alter_mistakes(entry: dict[str, Any], status: int, text: str) -> None:
    with pytest.raises(GatewayError) as caught:
        config_bodies.topic_alters({"data": [entry]})
    assert caught.value.status == status
    assert text in caught.value.message


# --- the wire --------------------------------------------------------------------------------


def test_incremental_alter_request_encodes_ops_and_null_values() -> None:
    request = IncrementalAlterConfigsRequest(
        [
            AlterResource(TOPIC, "t", (AlterOp("a", SET, "1"), AlterOp("b", DELETE))),
            AlterResource(BROKER, "", (AlterOp("c", SET, "x"),)),
        ],
        validate_only=True,
    )
    struct = request.prepare({44: (0, 1)})
    assert isinstance(struct, IncrementalAlterConfigsRequest_v0)
    decoded = IncrementalAlterConfigsRequest_v0.decode(struct.encode()).to_object()
    assert decoded == {
        "resources": [
            {
                "resource_type": 2,
                "resource_name": "t",
                "configs": [
                    {"name": "a", "config_operation": 0, "value": "1"},
                    {"name": "b", "config_operation": 1, "value": None},
                ],
            },
            {
                "resource_type": 4,
                "resource_name": "",
                "configs": [{"name": "c", "config_operation": 0, "value": "x"}],
            },
        ],
        "validate_only": True,
    }
