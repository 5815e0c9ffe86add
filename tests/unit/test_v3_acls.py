"""v3 ACL wire rules without a broker: enums, query filters, create bodies, link encoding, order."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import errors as ke

from gateway.errors import GatewayError
from gateway.v3 import acl_kafka
from gateway.v3.acl_model import (
    OPERATION,
    RESOURCE_TYPE,
    Acl,
    AclFilter,
    acl_query,
    java_url_encode,
    parse_acl,
    parse_filter,
)

GOOD = {
    "resource_type": "TOPIC",
    "resource_name": "orders",
    "pattern_type": "LITERAL",
    "principal": "User:alice",
    "host": "*",
    "operation": "READ",
    "permission": "ALLOW",
}


def _error(call: Any, *args: Any, **kwargs: Any) -> tuple[int, int, str]:
    with pytest.raises(GatewayError) as caught:
        call(*args, **kwargs)
    return caught.value.status, caught.value.error_code, caught.value.message


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("User:alice", "User%3Aalice"),
        ("*", "*"),
        ("a b", "a+b"),
        ("a~b", "a%7Eb"),  # Java encodes ~, Python's quote would keep it
        ("x.y-z_1", "x.y-z_1"),
        ("é/&=?", "%C3%A9%2F%26%3D%3F"),
        ("", ""),
    ],
)
def test_links_encode_values_as_java_urlencoder(value: str, encoded: str) -> None:
    assert java_url_encode(value) == encoded


def test_link_query_has_all_seven_in_confluents_order() -> None:
    acl = Acl(2, "topic-", 4, "User:bob", "1.2.3.4", 4, 3)
    assert acl_query(acl.wire()) == (
        "resource_type=TOPIC&resource_name=topic-&pattern_type=PREFIXED&principal=User%3Abob"
        "&host=1.2.3.4&operation=WRITE&permission=ALLOW"
    )


def test_search_defaults_to_any_and_reads_any_case() -> None:
    assert parse_filter({}, delete=False) == AclFilter(1, "", 1, "", "", 1, 1)
    found = parse_filter(
        {"resource_type": "Topic", "pattern_type": "match", "operation": "describe_configs"},
        delete=False,
    )
    assert found == AclFilter(2, "", 2, "", "", 10, 1)
    assert found.kafka() == (2, None, 2, None, None, 10, 1)  # empty strings match anything
    assert parse_filter({"resource_type": ""}, delete=False).resource_type == 1


def test_search_refuses_unknown_and_foreign_words() -> None:
    assert _error(parse_filter, {"resource_type": "UNKNOWN"}, delete=False) == (
        400,
        400,
        "Bad Request: resource_type cannot be UNKNOWN",
    )
    assert _error(parse_filter, {"permission": "teapot"}, delete=False) == (
        404,
        404,
        "The valid values for Permission do not include 'teapot'",
    )
    # Converted first (JAX-RS), refused second: the 404 wins over an earlier UNKNOWN.
    assert _error(parse_filter, {"resource_type": "unknown", "operation": "x"}, delete=False) == (
        404,
        404,
        "The valid values for Operation do not include 'x'",
    )


def test_delete_needs_the_four_enums() -> None:
    assert _error(parse_filter, {}, delete=True) == (
        400,
        400,
        "Bad Request: resource_type cannot be unspecified or UNKNOWN",
    )
    query = {"resource_type": "any", "pattern_type": "any", "operation": "any"}
    assert _error(parse_filter, query, delete=True)[2] == (
        "Bad Request: permission cannot be unspecified or UNKNOWN"
    )
    assert parse_filter({**query, "permission": "any"}, delete=True) == AclFilter(
        1, "", 1, "", "", 1, 1
    )


def test_create_body_reads_every_field() -> None:
    assert parse_acl(GOOD) == Acl(2, "orders", 3, "User:alice", "*", 3, 3)
    assert parse_acl({**GOOD, "operation": "idempotent_write"}).operation == 12


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resource_type": "ANY"}, "Bad Request: resource_type cannot be ANY"),
        ({"resource_type": "UNKNOWN"}, "Bad Request: resource_type cannot be UNKNOWN"),
        ({"pattern_type": "MATCH"}, "Bad Request: pattern_type cannot be MATCH"),
        ({"pattern_type": "ANY"}, "Bad Request: pattern_type cannot be ANY"),
        ({"operation": "ANY"}, "Bad Request: operation cannot be ANY"),
        ({"permission": "ANY"}, "Bad Request: permission cannot be ANY"),
    ],
)
def test_create_refuses_wildcards(change: dict[str, str], message: str) -> None:
    assert _error(parse_acl, {**GOOD, **change}) == (400, 400, message)


def test_create_body_shape_errors() -> None:
    status, code, message = _error(parse_acl, {"resource_type": "TOPIC", "host": None})
    assert (status, code) == (400, 400)
    assert message.endswith(
        "Missing required properties: resource_name, pattern_type, principal, host, "
        "operation, permission"
    )
    status, code, message = _error(parse_acl, {**GOOD, "operation": "teapot"})
    assert (status, code) == (400, 400)
    assert '"teapot"' in message and "'operation'" in message
    assert _error(parse_acl, {**GOOD, "resource_type": 2})[:2] == (400, 400)
    assert _error(parse_acl, {**GOOD, "extra": 1}) == (422, 422, "Unrecognized field: extra")
    assert _error(parse_acl, [GOOD])[:2] == (400, 400)
    # Jackson's scalar coercion for the string fields.
    assert parse_acl({**GOOD, "resource_name": 7}).resource_name == "7"


def test_codes_confluent_does_not_know_read_as_unknown() -> None:
    # Kafka's USER resource (7) and CREATE_TOKENS operation (13) have no Confluent name.
    acl = Acl(7, "u", 3, "User:a", "*", 13, 3)
    assert acl.wire()["resource_type"] == "UNKNOWN"
    assert acl.wire()["operation"] == "UNKNOWN"
    assert RESOURCE_TYPE.ordinal(7) == 0 and OPERATION.ordinal(13) == 0


def test_order_is_declaration_order_then_java_string_order() -> None:
    def acl(rtype: int, name: str, op: int = 3) -> Acl:
        return Acl(rtype, name, 3, "User:a", "*", op, 3)

    acls = [
        acl(6, "a"),  # DELEGATION_TOKEN
        acl(4, "kafka-cluster"),  # CLUSTER
        acl(3, "a"),  # GROUP
        acl(2, "b"),
        acl(2, "a", op=4),
        acl(2, "a", op=3),
        acl(2, "\U0001f600"),  # above U+FFFF: a surrogate pair, which Java sorts ...
        acl(2, "\uffff"),  # ... before U+FFFF
    ]
    ordered = sorted(acls, key=Acl.sort_key)
    assert [(a.resource_type, a.resource_name, a.operation) for a in ordered] == [
        (2, "a", 3),
        (2, "a", 4),
        (2, "b", 3),
        (2, "\U0001f600", 3),
        (2, "\uffff", 3),
        (3, "a", 3),
        (4, "kafka-cluster", 3),
        (6, "a", 3),
    ]


# --- Kafka's answers (the response objects as aiokafka decodes them) --------------------------


class _Answer:
    """Stands in for the admin client: every request gets ``response``."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.sent: list[Any] = []


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(response: Any) -> _Answer:
        admin = _Answer(response)

        async def send(target: _Answer, request: Any, node_id: int | None = None) -> Any:
            target.sent.append(request)
            return target.response

        monkeypatch.setattr(acl_kafka.kafka_internals, "admin_request", send)
        return admin

    return install


async def test_no_authorizer_is_said_plainly(answer: Any) -> None:
    admin = answer(SimpleNamespace(error_code=54, error_message="No Authorizer is configured."))
    with pytest.raises(GatewayError) as caught:
        await acl_kafka.describe_acls(admin, AclFilter(1, "", 1, "", "", 1, 1))
    assert (caught.value.status, caught.value.error_code) == (400, 40002)
    assert "no authorizer configured" in caught.value.message


async def test_a_create_refusal_is_kafkas_error(answer: Any) -> None:
    admin = answer(SimpleNamespace(creation_responses=[(0, None), (42, "Invalid empty name")]))
    with pytest.raises(ke.InvalidRequestError) as caught:
        await acl_kafka.create_acls(admin, [Acl(2, "a", 3, "User:a", "*", 3, 3)] * 2)
    assert caught.value.args[0] == "Invalid empty name"
    assert len(admin.sent) == 1  # one request for the whole batch


async def test_an_empty_batch_asks_nothing(answer: Any) -> None:
    admin = answer(None)
    await acl_kafka.create_acls(admin, [])
    assert admin.sent == []


async def test_a_match_kafka_failed_to_delete_is_not_hidden(answer: Any) -> None:
    deleted = (0, None, 2, "a", 3, "User:a", "*", 3, 3)
    failed = (31, "Cluster authorization failed.", 2, "b", 3, "User:a", "*", 3, 3)
    admin = answer(SimpleNamespace(filter_responses=[(0, None, [deleted, failed])]))
    with pytest.raises(ke.ClusterAuthorizationFailedError) as caught:
        await acl_kafka.delete_acls(admin, AclFilter(1, "", 1, "User:a", "", 1, 1))
    assert "1 matching ACLs not deleted; 1 other matching ACLs were deleted" in str(caught.value)

    admin = answer(SimpleNamespace(filter_responses=[(0, None, [deleted])]))
    found = await acl_kafka.delete_acls(admin, AclFilter(1, "", 1, "User:a", "", 1, 1))
    assert found == [Acl(2, "a", 3, "User:a", "*", 3, 3)]
