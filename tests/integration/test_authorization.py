"""Authorisation rules on the in-process app with real Kafka and BASIC users.

alice (group ops), bob and carol (no rules at all) call one gateway that also serves the
built-in registry. Every refusal is 403/40301 in Confluent's shape, and what a refused
request would have written is checked to be absent: end offsets, subjects, subscriptions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.harness.topics import unique_topic_name

Client = TestClient[web.Request, web.Application]
V2_JSON = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
AVRO = "application/vnd.kafka.avro.v2+json"
SR_JSON = "application/vnd.schemaregistry.v1+json"
PASSWORDS = {"alice": "alice-secret", "bob": "bob-pw", "carol": "carol-pw"}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written by the real CLI, as an operator would."""
    path = tmp_path_factory.mktemp("authz") / "users.txt"
    for name, groups in [("alice", ["ops"]), ("bob", []), ("carol", [])]:
        cmd = [sys.executable, "-m", "gateway.cli", "user", "add", "--users-file", str(path)]
        cmd += [name, "--password-stdin", *(a for g in groups for a in ("--group", g))]
        done = subprocess.run(cmd, input=PASSWORDS[name] + "\n", capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    return path


class As:
    """One user's calls: status and decoded body, nothing hidden."""

    def __init__(self, http: Client, user: str | None) -> None:
        self.http = http
        self.auth = (
            {}
            if user is None
            else {
                "Authorization": "Basic "
                + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
            }
        )

    async def call(
        self, method: str, path: str, body: Any = None, ctype: str = V2_JSON, accept: str = ""
    ) -> tuple[int, Any]:
        headers = dict(self.auth)
        if body is not None:
            headers["Content-Type"] = ctype
        if accept:
            headers["Accept"] = accept
        data = orjson.dumps(body) if body is not None else None
        async with self.http.request(method, path, data=data, headers=headers) as resp:
            raw = await resp.read()
            return resp.status, (orjson.loads(raw) if raw else None)

    async def produce(self, topic: str, n: int = 1) -> tuple[int, Any]:
        records = [{"value": base64.b64encode(b"v%d" % i).decode()} for i in range(n)]
        return await self.call("POST", f"/topics/{topic}", {"records": records}, BINARY)

    async def sr(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call(method, path, body, SR_JSON, SR_JSON)


def denied(result: tuple[int, Any]) -> bool:
    status, body = result
    assert status == 403, result
    assert set(body) == {"error_code", "message"} and body["error_code"] == 40301, body
    return True


class World:
    def __init__(self, http: Client, rid: str, orders: str, secret: str, rules: Path) -> None:
        self.http, self.rid, self.orders, self.secret, self.rules_path = (
            http,
            rid,
            orders,
            secret,
            rules,
        )
        self.alice, self.bob, self.carol = (As(http, u) for u in ("alice", "bob", "carol"))


def rules_for(rid: str) -> list[dict[str, Any]]:
    return [
        {"principal": "User:alice", "topic": f"{rid}-orders*", "allow": ["produce", "consume"]},
        {"principal": "Group:ops", "group": f"{rid}-ops-*", "allow": ["consume"]},
        {"principal": "User:bob", "topic": f"{rid}-orders", "allow": ["describe"]},
        {"principal": "User:bob", "group": f"{rid}-bob", "allow": ["consume"]},
        {"principal": "User:alice", "subject": f"{rid}-orders-*", "allow": ["write"]},
        {"principal": "User:bob", "subject": f"{rid}-orders-*", "allow": ["read"]},
        {"principal": "Group:ops", "subject": "*", "allow": ["read"]},
    ]


@pytest.fixture
async def world(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, users_file: Path, tmp_path: Path
) -> World:
    rid = "az" + uuid.uuid4().hex[:10]
    orders = await new_topic(1, f"{rid}-orders")
    secret = await new_topic(1, f"{rid}-secret")
    registry_topic = await new_topic(
        1, unique_topic_name("_schemas-"), {"cleanup.policy": "compact"}
    )
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": rules_for(rid)}))
    http = await make_gateway(
        {
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users_file),
            "authorization.rules.file": str(rules),
            "schema.registry.builtin": "true",
            "schema.registry.topic": registry_topic,
            "consumer.request.timeout.ms": "500",
        }
    )
    return World(http, rid, orders, secret, rules)


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def test_produce_allowed_and_denied(world: World, kafka_bootstrap: str) -> None:
    status, body = await world.alice.produce(world.orders, 2)
    assert status == 200 and [o["offset"] for o in body["offsets"]] == [0, 1], body
    assert denied(await world.bob.produce(world.orders))  # describe only: no produce
    assert denied(await world.carol.produce(world.orders))
    assert denied(await world.alice.produce(world.secret))
    status, body = await world.alice.call(
        "POST", f"/topics/{world.secret}/partitions/0", {"records": [{"value": "YQ=="}]}, BINARY
    )
    assert denied((status, body))
    assert await end_offset(kafka_bootstrap, world.orders) == 2
    assert await end_offset(kafka_bootstrap, world.secret) == 0


async def test_consume_by_group_and_topic(world: World) -> None:
    alice, bob, orders = world.alice, world.bob, world.orders
    assert (await alice.produce(orders))[0] == 200
    group = f"{world.rid}-ops-1"
    # Groups: alice through her group ops; bob neither there nor in a group no rule names.
    status, body = await alice.call(
        "POST",
        f"/consumers/{group}",
        {"name": "a", "format": "binary", "auto.offset.reset": "earliest"},
    )
    assert status == 200, body
    assert denied(await bob.call("POST", f"/consumers/{group}", {"name": "b"}))
    assert denied(await world.carol.call("POST", f"/consumers/{world.rid}-bob", {"name": "c"}))
    status, body = await bob.call("POST", f"/consumers/{world.rid}-bob", {"name": "b"})
    assert status == 200, body
    # ...and the refused create made no instance: the same name is still free in that group.
    status, body = await alice.call("POST", f"/consumers/{group}", {"name": "b"})
    assert status == 200, body

    # Topics: bob may see orders but not consume it; refused requests leave the instance as is.
    bob_inst = f"/consumers/{world.rid}-bob/instances/b"
    assert denied(await bob.call("POST", bob_inst + "/subscription", {"topics": [orders]}))
    assert denied(
        await bob.call(
            "POST", bob_inst + "/assignments", {"partitions": [{"topic": orders, "partition": 0}]}
        )
    )
    assert denied(
        await bob.call("POST", bob_inst + "/subscription", {"topic_pattern": f"{world.rid}-.*"})
    )
    assert await bob.call("GET", bob_inst + "/subscription") == (200, {"topics": []})
    assert await bob.call("GET", bob_inst + "/assignments") == (200, {"partitions": []})

    inst = f"/consumers/{group}/instances/a"
    assert denied(await alice.call("POST", inst + "/subscription", {"topics": [world.secret]}))
    # A pattern broader than her rule is refused whole, even though it also matches orders.
    assert denied(
        await alice.call("POST", inst + "/subscription", {"topic_pattern": f"{world.rid}-.*"})
    )
    assert await alice.call("GET", inst + "/subscription") == (200, {"topics": []})
    status, _ = await alice.call(
        "POST", inst + "/subscription", {"topic_pattern": f"{world.rid}-orders.*"}
    )
    assert status == 204
    got: list[Any] = []
    for _ in range(40):
        status, body = await alice.call("GET", inst + "/records", accept=BINARY)
        assert status == 200, body
        got += body
        if got:
            break
    assert [r["topic"] for r in got] == [orders]
    assert denied(
        await alice.call(
            "POST",
            inst + "/offsets",
            {"offsets": [{"topic": world.secret, "partition": 0, "offset": 0}]},
        )
    )

    # Instance operations check the group on every call: revoke ops' group right, and alice's
    # own instance answers 403 once the rules file is re-read.
    rules = [r for r in rules_for(world.rid) if r.get("group") != f"{world.rid}-ops-*"]
    world.rules_path.write_text(json.dumps({"rules": rules}))
    st = world.rules_path.stat()
    os.utime(world.rules_path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    for _ in range(50):
        status, body = await alice.call("GET", inst + "/subscription")
        if status == 403:
            break
        await asyncio.sleep(0.1)
    assert denied((status, body))
    assert denied(await alice.call("DELETE", inst))


async def test_metadata_is_filtered_and_checked(world: World) -> None:
    def ours(topics: list[str]) -> list[str]:
        return [t for t in topics if t.startswith(world.rid)]

    status, topics = await world.alice.call("GET", "/topics")
    assert status == 200 and ours(topics) == [world.orders]
    status, topics = await world.bob.call("GET", "/topics")
    assert status == 200 and ours(topics) == [world.orders]
    assert await world.carol.call("GET", "/topics") == (200, [])

    status, body = await world.bob.call("GET", f"/topics/{world.orders}")
    assert status == 200 and body["name"] == world.orders
    for path in ("", "/partitions", "/partitions/0", "/partitions/0/offsets"):
        assert (await world.alice.call("GET", f"/topics/{world.orders}{path}"))[0] == 200, path
        assert denied(await world.alice.call("GET", f"/topics/{world.secret}{path}"))
        assert denied(await world.carol.call("GET", f"/topics/{world.orders}{path}"))
    # A refusal does not depend on existence: it reveals nothing.
    assert denied(await world.bob.call("GET", f"/topics/{world.rid}-orders-missing"))
    assert (await world.alice.call("GET", f"/topics/{world.rid}-orders-missing"))[0] == 404

    status, body = await world.bob.call("GET", "/brokers")
    assert status == 200 and body["brokers"]
    assert denied(await world.carol.call("GET", "/brokers"))


async def test_registry_read_and_write(world: World) -> None:
    alice, bob, carol = world.alice, world.bob, world.carol
    subject = f"{world.rid}-orders-value"
    v1 = {"schema": json.dumps({"type": "record", "name": "O", "fields": []})}
    status, body = await alice.sr("POST", f"/subjects/{subject}/versions", v1)
    assert status == 200, body
    schema_id = body["id"]
    v2 = {
        "schema": json.dumps(
            {"type": "record", "name": "O", "fields": [{"name": "x", "type": "int", "default": 0}]}
        )
    }
    assert denied(await bob.sr("POST", f"/subjects/{subject}/versions", v2))
    assert denied(await alice.sr("POST", f"/subjects/{world.rid}-other/versions", v1))
    assert denied(await bob.sr("DELETE", f"/subjects/{subject}"))
    assert denied(await bob.sr("PUT", f"/config/{subject}", {"compatibility": "NONE"}))

    assert await bob.sr("GET", f"/subjects/{subject}/versions") == (200, [1])
    assert (await bob.sr("POST", f"/subjects/{subject}", v1))[0] == 200  # a lookup reads
    assert denied(await carol.sr("GET", f"/subjects/{subject}/versions"))
    assert (await bob.sr("GET", f"/schemas/ids/{schema_id}"))[0] == 200
    assert denied(await carol.sr("GET", f"/schemas/ids/{schema_id}"))
    assert denied(await carol.sr("GET", f"/schemas/ids/{schema_id}/schema"))
    assert await carol.sr("GET", f"/schemas/ids/{schema_id}/subjects") == (200, [])
    assert await carol.sr("GET", "/subjects") == (200, [])
    status, subjects = await bob.sr("GET", "/subjects")
    assert status == 200 and subjects == [subject]

    # Registry-wide configuration needs a rule on every subject.
    assert (await alice.sr("GET", "/config"))[0] == 200  # ops read "*"
    assert denied(await bob.sr("GET", "/config"))
    assert denied(await alice.sr("PUT", "/config", {"compatibility": "NONE"}))
    status, body = await alice.sr("PUT", f"/config/{subject}", {"compatibility": "NONE"})
    assert status == 200, body

    # A schema-format produce refused for the topic registers nothing.
    record = {"value_schema": json.dumps({"type": "string"}), "records": [{"value": "x"}]}
    assert denied(await bob.call("POST", f"/topics/{world.orders}", record, AVRO))
    assert await alice.sr("GET", f"/subjects/{subject}/versions") == (200, [1])
    assert await alice.sr("GET", "/subjects") == (200, [subject])


async def test_anonymous_callers_need_a_rule_naming_them(
    make_gateway: MakeGatewayFn, new_topic: NewTopicFn, tmp_path: Path, kafka_bootstrap: str
) -> None:
    """Authorisation without authentication: every caller is User:ANONYMOUS."""
    open_topic = await new_topic(1)
    closed_topic = await new_topic(1)
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {"rules": [{"principal": "User:ANONYMOUS", "topic": open_topic, "allow": ["produce"]}]}
        )
    )
    anyone = As(await make_gateway({"authorization.rules.file": str(rules)}), None)
    assert (await anyone.produce(open_topic))[0] == 200
    assert denied(await anyone.produce(closed_topic))
    assert await end_offset(kafka_bootstrap, closed_topic) == 0


def test_a_bad_rules_file_stops_start_up(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('{"rules": [{"principal": "User:a", "topic": "t", "allow": ["write"]}]}')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--set",
            f"authorization.rules.file={rules}",
            "--set",
            "listeners=http://127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "rule 1" in done.stderr and "not operations on a topic" in done.stderr
