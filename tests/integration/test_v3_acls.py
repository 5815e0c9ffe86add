"""v3 ACLs against a real broker running Kafka's StandardAuthorizer (one per module).

Every change the gateway makes is read back without it: a separate aiokafka admin client
sending a raw DescribeAcls, and once Kafka's own Java admin client, whose enums are Kafka's
(so an ACL the gateway wrote with a wrong code cannot pass as right). Kafka applies an ACL
change to what DescribeAcls answers a moment after CreateAcls returns, so reads after a
change poll until they settle; the assertion after the poll is exact.

Each test owns its principals (``User:<test>-<random>``), so tests share the broker without
seeing each other's ACLs. The no-authorizer answer is checked against the default test broker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.v3.acl_kafka import NO_AUTHORIZER
from tests.harness.kafka_acl import AclKafkaServer, AclTuple, describe_acls, java_acls

Client = TestClient[web.Request, web.Application]
T = TypeVar("T")
HOST = "lb.example:8082"


@pytest.fixture(scope="module")
def acl_bootstrap() -> Iterator[str]:
    """One broker with StandardAuthorizer for the module (about 10 s to start)."""
    server = AclKafkaServer()
    server.start()
    try:
        yield server.bootstrap
    finally:
        server.stop()


async def _client(bootstrap: str, props: dict[str, str] | None = None) -> Client:
    from gateway.app import build_app
    from gateway.config import from_properties

    cfg = from_properties(
        {"bootstrap.servers": bootstrap, "kafka.timeout.ms": "10000", **(props or {})}
    )
    client = TestClient(TestServer(build_app(cfg)))
    await client.start_server()
    return client


@pytest.fixture
async def acl_gateway(acl_bootstrap: str) -> AsyncIterator[Client]:
    client = await _client(acl_bootstrap)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def base(acl_gateway: Client) -> str:
    """``/v3/clusters/{cid}/acls`` of the ACL broker."""
    resp = await acl_gateway.get("/v3/clusters")
    assert resp.status == 200
    cid = (await resp.json())["data"][0]["cluster_id"]
    return f"/v3/clusters/{cid}/acls"


def _tag() -> str:
    return uuid.uuid4().hex[:10]


async def _settle(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float = 15.0,  # noqa: ASYNC109 (a deadline for a whole poll loop)
) -> T:
    """``read()`` until ``done`` says it settled (or the timeout passes): the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def _kafka_acls(bootstrap: str, principal: str, expected: set[AclTuple]) -> set[AclTuple]:
    """The principal's ACLs as an independent client sees them, once they equal ``expected``
    (or whatever they are after the wait, for the assertion to show)."""
    return await _settle(lambda: describe_acls(bootstrap, principal), lambda v: v == expected)


async def _get(client: Client, url: str, count: int) -> dict[str, Any]:
    """A 200 search body once it lists ``count`` ACLs (or the last one)."""

    async def read() -> dict[str, Any]:
        resp = await client.get(url, headers={"Host": HOST})
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    return await _settle(read, lambda b: len(b["data"]) == count)


def _acl(
    rtype: str, name: str, ptype: str, principal: str, host: str, op: str, perm: str
) -> dict[str, str]:
    return {
        "resource_type": rtype,
        "resource_name": name,
        "pattern_type": ptype,
        "principal": principal,
        "host": host,
        "operation": op,
        "permission": perm,
    }


def _tuple(acl: dict[str, str]) -> AclTuple:
    return (
        acl["resource_type"],
        acl["resource_name"],
        acl["pattern_type"],
        acl["principal"],
        acl["host"],
        acl["operation"],
        acl["permission"],
    )


def _upper(acl: AclTuple) -> AclTuple:
    """The enum fields in upper case, as Kafka names them."""
    rtype, name, ptype, principal, host, op, perm = acl
    return (rtype.upper(), name, ptype.upper(), principal, host, op.upper(), perm.upper())


def _url(base: str, query: str) -> str:
    return f"http://{HOST}{base}?{query}"


def _element(base: str, cid: str, acl: dict[str, str], query: str) -> dict[str, Any]:
    return {"kind": "KafkaAcl", "metadata": {"self": _url(base, query)}, "cluster_id": cid, **acl}


def _cid(base: str) -> str:
    return base.split("/")[3]


# --- round trips ----------------------------------------------------------------------------


async def test_create_search_and_delete_one_by_one(
    acl_gateway: Client, base: str, acl_bootstrap: str
) -> None:
    """Confluent's own integration scenario, with exact Location, self links and bodies."""
    tag = _tag()
    alice, bob = f"User:alice-{tag}", f"User:bob-{tag}"
    alice_acl = _acl("TOPIC", "*", "LITERAL", alice, "*", "READ", "ALLOW")
    bob_acl = _acl("TOPIC", f"topic-{tag}-", "PREFIXED", bob, "1.2.3.4", "WRITE", "ALLOW")
    alice_query = (
        f"resource_type=TOPIC&resource_name=*&pattern_type=LITERAL&principal=User%3Aalice-{tag}"
        "&host=*&operation=READ&permission=ALLOW"
    )
    bob_query = (
        f"resource_type=TOPIC&resource_name=topic-{tag}-&pattern_type=PREFIXED"
        f"&principal=User%3Abob-{tag}&host=1.2.3.4&operation=WRITE&permission=ALLOW"
    )
    search = f"{base}?resource_type=topic&resource_name=topic-{tag}-1&pattern_type=match"
    search_self = _url(
        base,
        f"resource_type=TOPIC&resource_name=topic-{tag}-1&pattern_type=MATCH&principal=&host="
        "&operation=ANY&permission=ANY",
    )

    body = await _get(acl_gateway, search, 0)
    assert body == {
        "kind": "KafkaAclList",
        "metadata": {"self": search_self, "next": None},
        "data": [],
    }

    for acl, query in ((alice_acl, alice_query), (bob_acl, bob_query)):
        resp = await acl_gateway.post(base, json=acl, headers={"Host": HOST})
        assert resp.status == 201, await resp.text()
        assert await resp.read() == b""
        assert resp.headers["Location"] == _url(base, query)

    assert await _kafka_acls(acl_bootstrap, alice, {_tuple(alice_acl)}) == {_tuple(alice_acl)}
    assert await _kafka_acls(acl_bootstrap, bob, {_tuple(bob_acl)}) == {_tuple(bob_acl)}

    cid = _cid(base)
    body = await _get(acl_gateway, search, 2)
    assert body == {
        "kind": "KafkaAclList",
        "metadata": {"self": search_self, "next": None},
        "data": [
            _element(base, cid, alice_acl, alice_query),
            _element(base, cid, bob_acl, bob_query),
        ],
    }

    # An ACL's own link, followed with DELETE, removes exactly that ACL.
    resp = await acl_gateway.delete(
        _url(base, alice_query).split(HOST, 1)[1], headers={"Host": HOST}
    )
    assert resp.status == 200
    assert await resp.json() == {"data": [_element(base, cid, alice_acl, alice_query)]}
    assert await _kafka_acls(acl_bootstrap, alice, set()) == set()
    assert await describe_acls(acl_bootstrap, bob) == {_tuple(bob_acl)}

    resp = await acl_gateway.delete(f"{base}?{bob_query}", headers={"Host": HOST})
    assert resp.status == 200
    assert await resp.json() == {"data": [_element(base, cid, bob_acl, bob_query)]}
    assert await _kafka_acls(acl_bootstrap, bob, set()) == set()
    assert (await _get(acl_gateway, search, 0))["data"] == []


async def test_batch_and_kafka_java_client_agree(
    acl_gateway: Client, base: str, acl_bootstrap: str
) -> None:
    """What the gateway writes, Kafka's Java client reads with the same names, and back."""
    tag = _tag()
    ours, theirs = f"User:ours-{tag}", f"User:theirs-{tag}"
    batch = [
        _acl("group", f"billing-{tag}", "prefixed", ours, "*", "read", "deny"),  # any case
        _acl("CLUSTER", "kafka-cluster", "LITERAL", ours, "10.1.2.3", "ALTER_CONFIGS", "ALLOW"),
        _acl("TRANSACTIONAL_ID", f"tx-{tag}", "LITERAL", ours, "*", "WRITE", "ALLOW"),
        _acl("TOPIC", f"t-{tag}", "LITERAL", ours, "*", "IDEMPOTENT_WRITE", "DENY"),
    ]
    resp = await acl_gateway.post(f"{base}:batch", json={"data": batch})
    assert resp.status == 204, await resp.text()
    assert await resp.read() == b""
    expected_ours = {_upper(_tuple(a)) for a in batch}
    assert await _kafka_acls(acl_bootstrap, ours, expected_ours) == expected_ours

    java_made: list[AclTuple] = [
        ("DELEGATION_TOKEN", f"dt-{tag}", "LITERAL", theirs, "*", "DESCRIBE", "ALLOW"),
        ("TRANSACTIONAL_ID", f"tx-{tag}", "PREFIXED", theirs, "*", "DESCRIBE_CONFIGS", "DENY"),
        ("TOPIC", f"t-{tag}", "LITERAL", theirs, "*", "CLUSTER_ACTION", "ALLOW"),
        ("GROUP", f"g-{tag}", "LITERAL", theirs, "*", "DELETE", "ALLOW"),
        ("CLUSTER", "kafka-cluster", "LITERAL", theirs, "*", "ALL", "ALLOW"),
    ]
    seen = java_acls(acl_bootstrap, java_made)
    assert {a for a in seen if a[3] == ours} == expected_ours
    assert await _kafka_acls(acl_bootstrap, theirs, set(java_made)) == set(java_made)

    # Read through the gateway: Confluent's order is the enums' declaration order (TOPIC,
    # GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN), not alphabetical.
    body = await _get(acl_gateway, f"{base}?principal=User:theirs-{tag}", len(java_made))
    listed = [
        {k: v for k, v in e.items() if k not in ("kind", "metadata", "cluster_id")}
        for e in body["data"]
    ]
    order = ["TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID", "DELEGATION_TOKEN"]
    assert listed == [_acl(*a) for a in sorted(java_made, key=lambda a: order.index(a[0]))]

    for principal, made in ((ours, expected_ours), (theirs, set(java_made))):
        resp = await acl_gateway.delete(
            base,
            params={
                "resource_type": "ANY",
                "pattern_type": "ANY",
                "operation": "ANY",
                "permission": "ANY",
                "principal": principal,
            },
        )
        assert resp.status == 200
        assert {_tuple(e) for e in (await resp.json())["data"]} == made
        assert await _kafka_acls(acl_bootstrap, principal, set()) == set()


async def test_search_filters(acl_gateway: Client, base: str, acl_bootstrap: str) -> None:
    tag = _tag()
    who = f"User:filters-{tag}"
    read = _acl("TOPIC", f"orders-{tag}", "LITERAL", who, "*", "READ", "ALLOW")
    write = _acl("TOPIC", f"orders-{tag}", "LITERAL", who, "10.0.0.1", "WRITE", "DENY")
    prefixed = _acl("TOPIC", f"p-{tag}-", "PREFIXED", who, "*", "DESCRIBE", "ALLOW")
    group = _acl("GROUP", f"orders-{tag}", "LITERAL", who, "*", "READ", "ALLOW")
    everything = [read, write, prefixed, group]
    resp = await acl_gateway.post(f"{base}:batch", json={"data": everything})
    assert resp.status == 204
    assert await _kafka_acls(acl_bootstrap, who, {_tuple(a) for a in everything}) == {
        _tuple(a) for a in everything
    }

    def fields(body: dict[str, Any]) -> list[dict[str, str]]:
        return [{k: e[k] for k in read} for e in body["data"]]

    mine = f"principal={who}"
    cases = [
        (f"{mine}&operation=write", [write]),
        (f"{mine}&permission=DENY", [write]),
        (f"{mine}&host=10.0.0.1", [write]),
        (f"{mine}&resource_type=Group", [group]),
        (f"{mine}&pattern_type=prefixed", [prefixed]),
        (f"{mine}&resource_type=topic&resource_name=p-{tag}-x&pattern_type=match", [prefixed]),
        (
            f"{mine}&resource_type=topic&resource_name=orders-{tag}&pattern_type=literal",
            [read, write],
        ),
        (f"resource_name=orders-{tag}", [read, write, group]),  # "*" sorts before "1"
        (mine, [read, write, prefixed, group]),
        (f"{mine}&operation=alter", []),
    ]
    for query, expected in cases:
        body = await _get(acl_gateway, f"{base}?{query}", len(expected))
        assert fields(body) == expected, query

    resp = await acl_gateway.get(
        f"{base}?resource_type=topic&principal={who}&operation=read", headers={"Host": HOST}
    )
    assert (await resp.json())["metadata"]["self"] == _url(
        base,
        f"resource_type=TOPIC&resource_name=&pattern_type=ANY&principal=User%3Afilters-{tag}"
        "&host=&operation=READ&permission=ANY",
    )

    # A delete filter with wildcards removes every match, and says which.
    resp = await acl_gateway.delete(
        f"{base}?resource_type=topic&pattern_type=any&operation=any&permission=any&{mine}"
    )
    assert resp.status == 200
    assert [{k: e[k] for k in read} for e in (await resp.json())["data"]] == [read, write, prefixed]
    assert await _kafka_acls(acl_bootstrap, who, {_tuple(group)}) == {_tuple(group)}
    resp = await acl_gateway.delete(
        f"{base}?resource_type=group&pattern_type=literal&operation=read&permission=allow"
        f"&resource_name=orders-{tag}&{mine}&host=*"
    )
    assert [{k: e[k] for k in read} for e in (await resp.json())["data"]] == [group]
    assert await _kafka_acls(acl_bootstrap, who, set()) == set()


# --- client mistakes ------------------------------------------------------------------------


async def test_query_mistakes(acl_gateway: Client, base: str) -> None:
    cases = [
        ("get", "resource_type=UNKNOWN", 400, "Bad Request: resource_type cannot be UNKNOWN"),
        ("get", "pattern_type=unknown", 400, "Bad Request: pattern_type cannot be UNKNOWN"),
        (
            "get",
            "resource_type=teapot",
            404,
            "The valid values for ResourceType do not include 'teapot'",
        ),
        ("get", "operation=teapot", 404, "The valid values for Operation do not include 'teapot'"),
        # Every word is converted before UNKNOWN is refused, as JAX-RS does.
        (
            "get",
            "resource_type=unknown&permission=maybe",
            404,
            "The valid values for Permission do not include 'maybe'",
        ),
        ("delete", "", 400, "Bad Request: resource_type cannot be unspecified or UNKNOWN"),
        (
            "delete",
            "resource_type=topic&pattern_type=literal&operation=read",
            400,
            "Bad Request: permission cannot be unspecified or UNKNOWN",
        ),
        (
            "delete",
            "resource_type=teapot",
            404,
            "The valid values for ResourceType do not include 'teapot'",
        ),
    ]
    for method, query, status, message in cases:
        resp = await getattr(acl_gateway, method)(f"{base}?{query}")
        assert (resp.status, await resp.json()) == (
            status,
            {"error_code": status, "message": message},
        ), query


async def test_body_mistakes_create_nothing(
    acl_gateway: Client, base: str, acl_bootstrap: str
) -> None:
    tag = _tag()
    who = f"User:mistakes-{tag}"
    good = _acl("TOPIC", f"t-{tag}", "LITERAL", who, "*", "READ", "ALLOW")
    cases: list[tuple[str, Any, int, int, str]] = [
        (
            "",
            {**good, "resource_type": "ANY"},
            400,
            400,
            "Bad Request: resource_type cannot be ANY",
        ),
        (
            "",
            {**good, "pattern_type": "match"},
            400,
            400,
            "Bad Request: pattern_type cannot be MATCH",
        ),
        ("", {**good, "pattern_type": "ANY"}, 400, 400, "Bad Request: pattern_type cannot be ANY"),
        ("", {**good, "operation": "ANY"}, 400, 400, "Bad Request: operation cannot be ANY"),
        (
            "",
            {**good, "permission": "UNKNOWN"},
            400,
            400,
            "Bad Request: permission cannot be UNKNOWN",
        ),
        ("", {**good, "colour": "red"}, 422, 422, "Unrecognized field: colour"),
        ("", None, 422, 42206, "Payload error. Null input provided. Data is required."),
        (":batch", None, 422, 42206, "Payload error. Null input provided. Data is required."),
        (":batch", {}, 422, 42206, "Payload error. Empty input provided. Data is required."),
        (":batch", {"data": [good], "more": 1}, 422, 422, "Unrecognized field: more"),
        # Kafka's own refusal of one ACL: a client mistake, 400/40002 with Kafka's text.
        (
            "",
            {**good, "resource_type": "CLUSTER", "resource_name": "not-kafka-cluster"},
            400,
            40002,
            "The only valid name for the CLUSTER resource is kafka-cluster",
        ),
    ]
    for suffix, body, status, code, message in cases:
        data = b"" if body is None else json.dumps(body).encode()
        resp = await acl_gateway.post(
            f"{base}{suffix}", data=data, headers={"Content-Type": "application/json"}
        )
        assert (resp.status, await resp.json()) == (
            status,
            {"error_code": code, "message": message},
        ), body

    # Shape errors name the field; any one bad entry stops the whole batch.
    for suffix, body in [
        ("", {"resource_type": "TOPIC"}),
        ("", {**good, "operation": "teapot"}),
        ("", {**good, "host": ["*"]}),
        ("", [good]),
        (":batch", {"data": [{**good, "operation": "WRITE"}, {"resource_type": "TOPIC"}]}),
        (":batch", {"data": good}),
    ]:
        resp = await acl_gateway.post(f"{base}{suffix}", json=body)
        error = await resp.json()
        assert (resp.status, error["error_code"]) == (400, 400), (body, error)
    resp = await acl_gateway.post(base, json={"resource_type": "TOPIC"})
    assert (
        "resource_name, pattern_type, principal, host, operation, permission"
        in (await resp.json())["message"]
    )

    resp = await acl_gateway.post(
        base, data=json.dumps(good), headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 415
    resp = await acl_gateway.post(base.replace("/acls", "x/acls"), json=good)
    cid = _cid(base)
    assert (resp.status, await resp.json()) == (
        404,
        {"error_code": 404, "message": f"Cluster {cid}x cannot be found."},
    )

    # Nothing above reached Kafka as an ACL; the same good ACL then does (the poll is real).
    assert await describe_acls(acl_bootstrap, who) == set()
    resp = await acl_gateway.post(base, json=good)
    assert resp.status == 201
    assert await _kafka_acls(acl_bootstrap, who, {_tuple(good)}) == {_tuple(good)}
    resp = await acl_gateway.delete(
        f"{base}?resource_type=any&pattern_type=any&operation=any&permission=any&principal={who}"
    )
    assert len((await resp.json())["data"]) == 1


async def test_empty_batch_is_fine(acl_gateway: Client, base: str) -> None:
    resp = await acl_gateway.post(f"{base}:batch", json={"data": []})
    assert resp.status == 204


# --- who may call ---------------------------------------------------------------------------


async def test_gateway_rules_guard_acls(acl_bootstrap: str, tmp_path: Path) -> None:
    """Listing needs cluster describe, changing needs cluster alter: refused before Kafka."""
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {"rules": [{"principal": "*", "cluster": "kafka-cluster", "allow": ["describe"]}]}
        )
    )
    client = await _client(acl_bootstrap, {"authorization.rules.file": str(rules)})
    try:
        cid = (await (await client.get("/v3/clusters")).json())["data"][0]["cluster_id"]
        base = f"/v3/clusters/{cid}/acls"
        who = f"User:refused-{_tag()}"
        acl = _acl("TOPIC", "t", "LITERAL", who, "*", "READ", "ALLOW")
        assert (await client.get(f"{base}?principal={who}")).status == 200
        for resp in [
            await client.post(base, json=acl),
            await client.post(f"{base}:batch", json={"data": [acl]}),
            await client.delete(
                f"{base}?resource_type=any&pattern_type=any&operation=any&permission=any"
            ),
        ]:
            assert resp.status == 403
            assert (await resp.json())["error_code"] == 40301
        assert await describe_acls(acl_bootstrap, who) == set()
    finally:
        await client.close()


# --- a broker without an authorizer ---------------------------------------------------------


async def test_broker_without_authorizer_is_a_clear_400(gateway: Client) -> None:
    cid = (await (await gateway.get("/v3/clusters")).json())["data"][0]["cluster_id"]
    base = f"/v3/clusters/{cid}/acls"
    acl = _acl("TOPIC", "t", "LITERAL", "User:alice", "*", "READ", "ALLOW")
    for resp in [
        await gateway.get(base),
        await gateway.post(base, json=acl),
        await gateway.post(f"{base}:batch", json={"data": [acl]}),
        await gateway.delete(
            f"{base}?resource_type=any&pattern_type=any&operation=any&permission=any"
        ),
    ]:
        body = await resp.json()
        assert (resp.status, body) == (400, {"error_code": 40002, "message": NO_AUTHORIZER})
        assert "no authorizer configured" in body["message"]
