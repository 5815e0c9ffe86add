"""Kafka client failures -> Confluent codes and the produce response's HTTP status (ref. 5.6)."""

from __future__ import annotations

import pytest
from aiokafka import errors as k

from gateway.errors import kafka_error_code
from gateway.produce.sender import response_status


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (k.SaslAuthenticationFailed(), 40101),
        (k.AuthenticationFailedError(), 40101),
        (k.TopicAuthorizationFailedError(), 40301),
        (k.ClusterAuthorizationFailedError(), 40301),
        (k.KafkaTimeoutError(), 50003),
        (TimeoutError(), 50003),
        (k.NotLeaderForPartitionError(), 50003),
        (k.KafkaConnectionError(), 50003),
        (k.RequestTimedOutError(), 50003),
        (k.MessageSizeTooLargeError(), 50002),
        (k.CorruptRecordException(), 50002),
        (k.InvalidTopicError(), 50002),
    ],
)
def test_error_codes(exc: BaseException, code: int) -> None:
    assert kafka_error_code(exc) == code


def _entry(code: int | None) -> dict:
    return {"partition": None, "offset": None, "error_code": code, "error": None}


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ([None, None], 200),
        ([None, 50003], 200),
        ([50002, 50003], 200),
        ([None, 40301], 403),
        ([40301, 40101], 401),  # authentication outranks authorization
        ([40101], 401),
    ],
)
def test_response_status(codes: list[int | None], status: int) -> None:
    assert response_status([_entry(c) for c in codes]) == status
