"""Kafka credentials against a real broker that requires SASL and enforces ACLs.

One broker (SASL_PLAINTEXT, PLAIN and SCRAM-SHA-256 users, Kafka's StandardAuthorizer, no
access without an ACL) is shared by every test here. The verdicts are Kafka's own: the
gateway only has to carry the right identity and turn a refusal into Confluent's 403/40301.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.harness.kafka import run_async
from tests.harness.kafka_sasl import Acl, SaslKafkaServer, admin_kwargs, create_acls
from tests.support.v2 import BINARY, V2

# Topics, created by the super user; who may use which is the ACLs below.
GW_TOPIC = "gw-orders"  # the gateway's own identity may use gw-*
LOCKED = "locked"  # nobody but the super user
TOPIC_A = "pt-a"  # alice
TOPIC_B = "pt-b"  # bob (a SCRAM user)

ACLS = [
    Acl("gateway", "all", ("topic", "gw-*")),
    Acl("gateway", "all", ("group", "gw-*")),
    Acl("scrammy", "all", ("topic", "gw-*")),
    Acl("alice", "write", ("topic", TOPIC_A)),
    Acl("alice", "describe", ("topic", TOPIC_A)),
    Acl("alice", "read", ("topic", TOPIC_A)),
    Acl("alice", "describe_configs", ("topic", TOPIC_A)),  # GET /topics/{t} shows configs
    Acl("alice", "read", ("group", "alice-*")),
    Acl("bob", "write", ("topic", TOPIC_B)),
    Acl("bob", "describe", ("topic", TOPIC_B)),
]


@dataclass(frozen=True)
class SaslBroker:
    bootstrap: str


async def _provision(bootstrap: str) -> None:
    await create_acls(bootstrap, ACLS)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **admin_kwargs()
    )
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in (GW_TOPIC, LOCKED, TOPIC_A, TOPIC_B)])
    finally:
        await admin.close()
    await _until_acls_apply(bootstrap)


async def _until_acls_apply(bootstrap: str, limit_s: float = 30.0) -> None:
    """ACLs reach the broker's authorizer through the metadata log a moment after they are
    created (longer on a loaded machine): wait until the gateway's user may write its topic,
    so no test starts before its ACLs are in force."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username="gateway",
            sasl_plain_password="gateway-secret",
            request_timeout_ms=5000,
        )
        try:
            await producer.start()
            await producer.send_and_wait(GW_TOPIC, b"hi")  # what the tests write too
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await producer.stop()


@pytest.fixture(scope="session")
def sasl_broker() -> Iterator[SaslBroker]:
    server = SaslKafkaServer()
    try:
        server.start()
        run_async(lambda: _provision(server.bootstrap), timeout=60)
    except Exception as exc:
        server.stop()
        pytest.fail(f"cannot start the SASL Kafka broker: {exc}", pytrace=False)
    try:
        yield SaslBroker(server.bootstrap)
    finally:
        server.stop()


def jaas(user: str, password: str, module: str = "plain.PlainLoginModule") -> str:
    return (
        f"org.apache.kafka.common.security.{module} required "
        f'username="{user}" password="{password}";'
    )


MakeFn = Callable[[Mapping[str, str]], Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def make(sasl_broker: SaslBroker) -> AsyncIterator[MakeFn]:
    from gateway.app import build_app
    from gateway.config import from_properties

    clients: list[TestClient[web.Request, web.Application]] = []

    async def build(props: Mapping[str, str]) -> TestClient[web.Request, web.Application]:
        cfg = from_properties(
            {
                "bootstrap.servers": sasl_broker.bootstrap,
                "kafka.timeout.ms": "5000",
                "producer.max.block.ms": "3000",
                "client.security.protocol": "SASL_PLAINTEXT",
                **props,
            }
        )
        client = TestClient(TestServer(build_app(cfg)))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


def gateway_identity(user: str = "gateway", password: str = "gateway-secret") -> dict[str, str]:
    return {"client.sasl.mechanism": "PLAIN", "client.sasl.jaas.config": jaas(user, password)}


async def produce(v2: V2, topic: str, n: int = 1) -> tuple[int, dict[str, Any]]:
    records = [{"value": "aGk="} for _ in range(n)]  # base64 "hi"
    status, body, _ = await v2.call("POST", f"/topics/{topic}", {"records": records}, ctype=BINARY)
    return status, body


# --- (a) the gateway's own identity ----------------------------------------------------------


async def test_gateway_identity_produces_and_consumes(make: MakeFn) -> None:
    v2 = V2(await make(gateway_identity()))
    status, body = await produce(v2, GW_TOPIC, 2)
    assert status == 200, body
    assert [o["error_code"] for o in body["offsets"]] == [None, None]

    group = f"gw-group-{time.monotonic_ns()}"
    status, created = await v2.create(group, name="c1", **{"auto.offset.reset": "earliest"})
    assert status == 200, created
    assert await v2.subscribe(group, "c1", [GW_TOPIC]) == 204
    got = await v2.drain(group, "c1", 2)
    assert len(got) >= 2 and all(r["value"] == "aGk=" for r in got)
    assert await v2.delete(group, "c1") == 204


async def test_gateway_identity_with_scram(make: MakeFn) -> None:
    props = {
        "client.sasl.mechanism": "SCRAM-SHA-256",
        "client.sasl.jaas.config": jaas("scrammy", "scrammy-secret", "scram.ScramLoginModule"),
    }
    status, body = await produce(V2(await make(props)), GW_TOPIC)
    assert status == 200, body
    assert body["offsets"][0]["error_code"] is None


async def test_topic_without_acl_for_the_gateway_is_403(make: MakeFn) -> None:
    v2 = V2(await make(gateway_identity()))
    began = time.monotonic()
    status, body = await produce(v2, LOCKED)
    # Kafka's verdict, per record; the status is the records' (none could be sent).
    assert status == 403, body
    (offset,) = body["offsets"]
    assert offset["error_code"] == 40301, body
    assert "TopicAuthorizationFailed" in offset["error"]
    assert time.monotonic() - began < 3.0  # refused by Kafka, not timed out waiting

    status, body, _ = await v2.call("GET", f"/topics/{LOCKED}")
    assert (status, body["error_code"]) == (403, 40301), body


async def test_wrong_gateway_password_is_a_clear_retriable_error(make: MakeFn) -> None:
    began = time.monotonic()
    client = await make(gateway_identity(password="wrong"))
    assert time.monotonic() - began < 8.0  # start-up is bounded, it does not hang
    v2 = V2(client)
    status, body, headers = await v2.call("GET", "/topics")
    assert status == 503, body
    assert body["error_code"] == 50003
    assert "authentication" in body["message"].lower(), body
    assert "wrong" not in body["message"]  # the password is never echoed
    assert "Retry-After" in headers


# --- (b) pass-through: each HTTP caller is itself to Kafka -----------------------------------


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    from gateway.security.basic import add_user

    path = tmp_path_factory.mktemp("users") / "users"
    for name, password in [("alice", "alice-secret"), ("bob", "bob-secret")]:
        add_user(path, name, password, [])
    return str(path)


def pass_through(users_file: str, mechanism: str = "PLAIN") -> dict[str, str]:
    return {
        **gateway_identity(),
        "authentication.method": "BASIC",
        "authentication.basic.users.file": users_file,
        "kafka.credentials": "principal",
        "kafka.principal.sasl.mechanism": mechanism,
    }


def as_user(client: TestClient[web.Request, web.Application], user: str) -> V2:
    import aiohttp

    class Authed:
        def request(self, method: str, path: str, **kw: Any) -> Any:
            auth = aiohttp.encode_basic_auth(user, f"{user}-secret")
            kw["headers"] = {**kw.get("headers", {}), "Authorization": auth}
            return client.request(method, path, **kw)

    return V2(Authed())


async def test_pass_through_kafka_acls_decide_per_caller(make: MakeFn, users_file: str) -> None:
    client = await make(pass_through(users_file))
    alice = as_user(client, "alice")

    status, body = await produce(alice, TOPIC_A)
    assert status == 200, body
    assert body["offsets"][0]["error_code"] is None

    status, body = await produce(alice, TOPIC_B)  # alice has no ACL on B: Kafka says no
    assert status == 403, body
    assert body["offsets"][0]["error_code"] == 40301, body
    status, body, _ = await alice.call("GET", f"/topics/{TOPIC_B}")
    assert (status, body["error_code"]) == (403, 40301), body
    status, body, _ = await alice.call("GET", f"/topics/{TOPIC_A}")
    assert status == 200, body

    # The gateway's own identity may write gw-*, the caller may not: no fallback to it.
    status, body = await produce(alice, GW_TOPIC)
    assert (status, body["offsets"][0]["error_code"]) == (403, 40301), body

    status, body, headers = await V2(client).call("GET", f"/topics/{TOPIC_A}")
    assert status == 401, body
    assert "WWW-Authenticate" in headers


async def test_pass_through_scram_caller(make: MakeFn, users_file: str) -> None:
    bob = as_user(await make(pass_through(users_file, "SCRAM-SHA-256")), "bob")
    status, body = await produce(bob, TOPIC_B)
    assert status == 200, body
    status, body = await produce(bob, TOPIC_A)
    assert (status, body["offsets"][0]["error_code"]) == (403, 40301), body


async def test_pass_through_consumer_reads_as_its_creator(make: MakeFn, users_file: str) -> None:
    alice = as_user(await make(pass_through(users_file)), "alice")
    status, body = await produce(alice, TOPIC_A)
    assert status == 200, body
    group = f"alice-{time.monotonic_ns()}"
    status, created = await alice.create(group, name="c", **{"auto.offset.reset": "earliest"})
    assert status == 200, created
    assert await alice.subscribe(group, "c", [TOPIC_A]) == 204
    got = await alice.drain(group, "c", 1)
    assert got and got[0]["value"] == "aGk="
    assert await alice.delete(group, "c") == 204
