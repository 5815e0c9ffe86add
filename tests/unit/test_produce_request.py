"""Produce-body validation: every client mistake is a 4xx decided before Kafka is involved."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.produce.request import parse_produce_request


def test_records_become_parallel_columns() -> None:
    req = parse_produce_request(
        {
            "records": [
                {"key": "k", "value": {"a": 1}},
                {"value": "v", "partition": 2},
                {"partition": "1", "key": None},  # Jackson coerces numeric strings
            ],
            "value_schema_id": 7,
        }
    )
    assert req.keys == ["k", None, None]
    assert req.values == [{"a": 1}, "v", None]
    assert req.partitions == [None, 2, 1]
    assert req.value_schema_id == 7 and req.key_schema is None
    assert len(req) == 3


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (None, 422, 422, None),
        ({}, 422, 422, None),
        ({"records": None}, 422, 422, None),
        ({"records": []}, 422, 422, None),
        ({"records": [{"value": "x"}], "topic": "t"}, 422, 422, "Unrecognized field: topic"),
        ({"records": [{"value": "x", "headers": []}]}, 422, 422, "Unrecognized field: headers"),
        ({"records": [{"value": "x", "timestamp": 1}]}, 422, 422, "Unrecognized field: timestamp"),
        ([], 400, 400, None),
        ({"records": "abc"}, 400, 400, None),
        ({"records": [1]}, 400, 400, None),
        ({"records": [None]}, 400, 400, None),
        ({"records": [{"value": "x", "partition": "abc"}]}, 400, 400, None),
        ({"records": [{"value": "x", "partition": 1.5}]}, 400, 400, None),
        ({"records": [{"value": "x", "partition": True}]}, 400, 400, None),
        ({"records": [{"value": "x"}], "key_schema_id": "x"}, 400, 400, None),
        ({"records": [{"value": "x"}], "value_schema": {"type": "int"}}, 400, 400, None),
        # Java's Integer, else Jackson's 400 (a partition the topic lacks is the sender's).
        ({"records": [{"value": "x", "partition": 2**31}]}, 400, 400, None),
        ({"records": [{"value": "x", "partition": -(2**31) - 1}]}, 400, 400, None),
        ({"records": [{"value": "x", "partition": 1e300}]}, 400, 400, None),
        ({"records": [{"value": "x", "partition": "99999999999"}]}, 400, 400, None),
        ({"records": [{"value": "x"}], "value_schema_id": 2**31}, 400, 400, None),
    ],
)
def test_rejections(body: Any, status: int, code: int, message: str | None) -> None:
    with pytest.raises(GatewayError) as err:
        parse_produce_request(body)
    assert (err.value.status, err.value.error_code) == (status, code)
    if message is not None:
        assert err.value.message == message


def test_a_bad_last_record_rejects_the_whole_request() -> None:
    records: list[dict[str, Any]] = [{"value": "QQ=="}] * 50 + [{"value": "x", "oops": 1}]
    with pytest.raises(GatewayError) as err:
        parse_produce_request({"records": records})
    assert err.value.message == "Unrecognized field: oops"


def test_the_largest_partition_number_is_accepted() -> None:
    req = parse_produce_request({"records": [{"value": "x", "partition": 2**31 - 1}]})
    assert req.partitions == [2**31 - 1]  # the topic lacks it: that is the sender's 40002
