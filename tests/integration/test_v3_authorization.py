"""v3 under authorisation rules (``authorization.rules.file``), BASIC users, real Kafka.

Who may do what (gateway/security/rules.py): topic ``create``/``delete``/``alter`` for topic
admin, topic ``describe`` to see a topic and its configs, group ``describe`` for a group and its
lag, cluster ``describe`` for the cluster, brokers and ACLs, cluster ``alter`` for broker
configs and ACL changes. A refusal is 403/40301 in Confluent's error shape, answered before
any Kafka lookup, so it is the same whether the topic, group, config or even the cluster id
exists or not; lists show only what the caller may describe. Whatever a refused request would
have changed is checked unchanged with independent aiokafka clients.

The users: ``admin`` (cluster alter), ``alice`` (in group ``ops``: cluster describe; admin of
the ``<rid>-a-*`` topics; describes the ``<rid>-g-*`` groups), ``bob`` (describes one topic
and nothing else) and ``carol`` (no rules at all).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from gateway.security.basic import add_user
from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.harness.topics import partitions_of

Client = TestClient[web.Request, web.Application]
JSON = "application/json"
PASSWORDS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
GROUPS = {"alice": ["ops"]}


class As:
    """One user's v3 calls: status and decoded body."""

    def __init__(self, http: Client, user: str, cid: str) -> None:
        token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        self.http, self.auth, self.cid = http, {"Authorization": f"Basic {token}"}, cid

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """``path`` below ``/v3/clusters/{cid}`` unless it starts with ``/v3``."""
        url = path if path.startswith("/v3") else f"/v3/clusters/{self.cid}{path}"
        headers = dict(self.auth)
        data = None
        if body is not None:
            headers["Content-Type"] = JSON
            data = orjson.dumps(body)
        async with self.http.request(
            method, url, data=data, headers=headers, params=params
        ) as resp:
            raw = await resp.read()
            return resp.status, (orjson.loads(raw) if raw else None)


def refused(result: tuple[int, Any]) -> str:
    """The refusal's message, once it is exactly Confluent's 403/40301 shape."""
    status, body = result
    assert status == 403, result
    assert set(body) == {"error_code", "message"} and body["error_code"] == 40301, body
    return str(body["message"])


def same_refusal(a: tuple[int, Any], name_a: str, b: tuple[int, Any], name_b: str) -> None:
    """Two refusals that differ only by the name asked for: existence is never revealed."""
    assert refused(a).replace(name_a, "NAME") == refused(b).replace(name_b, "NAME")


class World:
    def __init__(self, http: Client, rid: str, cid: str) -> None:
        self.rid = rid
        self.admin, self.alice, self.bob, self.carol = (
            As(http, user, cid) for user in ("admin", "alice", "bob", "carol")
        )


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("v3authz") / "users.txt"
    for name, password in PASSWORDS.items():
        add_user(path, name, password, GROUPS.get(name, []))
    return path


def rules_for(rid: str) -> list[dict[str, Any]]:
    return [
        {"principal": "User:admin", "cluster": "kafka-cluster", "allow": ["alter"]},
        {"principal": "Group:ops", "cluster": "kafka-cluster", "allow": ["describe"]},
        {"principal": "User:alice", "topic": f"{rid}-a-*", "allow": ["create", "delete", "alter"]},
        {"principal": "User:alice", "group": f"{rid}-g-*", "allow": ["describe"]},
        {"principal": "User:bob", "topic": f"{rid}-a-shown", "allow": ["describe"]},
    ]


@pytest.fixture
async def world(
    make_gateway: MakeGatewayFn,
    users_file: Path,
    tmp_path: Path,
    kafka_admin: AIOKafkaAdminClient,
) -> World:
    rid = "v3az" + uuid.uuid4().hex[:8]
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": rules_for(rid)}))
    http = await make_gateway(
        {
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users_file),
            "authorization.rules.file": str(rules),
        }
    )
    cid = str((await kafka_admin.describe_cluster())["cluster_id"])
    return World(http, rid, cid)


async def topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [resource] = response.to_object()["resources"]
    assert resource["error_code"] == 0, resource
    return {c["config_names"]: c["config_value"] for c in resource["config_entries"]}


async def test_clusters_and_brokers_need_cluster_describe(world: World) -> None:
    status, body = await world.alice.call("GET", "/v3/clusters")
    assert status == 200 and body["data"][0]["cluster_id"] == world.alice.cid, body
    assert (await world.alice.call("GET", "/brokers"))[0] == 200
    assert (await world.admin.call("GET", ""))[0] == 200  # alter implies describe
    refused(await world.carol.call("GET", "/v3/clusters"))
    refused(await world.carol.call("GET", ""))
    refused(await world.carol.call("GET", "/brokers"))
    refused(await world.bob.call("GET", "/brokers/1"))
    refused(await world.bob.call("GET", "/brokers/1/configs"))
    # The cluster id is not revealed either: a wrong one is refused the same way.
    same_refusal(
        await world.carol.call("GET", "/brokers"),
        world.carol.cid,
        await world.carol.call("GET", "/v3/clusters/not-this-one/brokers"),
        "not-this-one",
    )


async def test_topic_create_and_delete(world: World, kafka_admin: AIOKafkaAdminClient) -> None:
    rid = world.rid
    mine, other = f"{rid}-a-made", f"{rid}-b-made"
    try:
        status, body = await world.alice.call(
            "POST", "/topics", {"topic_name": mine, "partitions_count": 2}
        )
        assert status == 201 and body["topic_name"] == mine, body
        assert await partitions_of(kafka_admin, mine) == [0, 1]

        # bob may only describe one topic; carol may do nothing; alice not outside her prefix.
        refused(await world.bob.call("POST", "/topics", {"topic_name": f"{rid}-a-bob"}))
        refused(await world.alice.call("POST", "/topics", {"topic_name": other}))
        # An existing name is refused exactly like a new one (not 400 "already exists").
        same_refusal(
            await world.carol.call("POST", "/topics", {"topic_name": mine}),
            mine,
            await world.carol.call("POST", "/topics", {"topic_name": other}),
            other,
        )
        existing = set(await kafka_admin.list_topics())
        assert {f"{rid}-a-bob", other} & existing == set()

        # Delete: refused for an existing and a missing topic alike, and nothing is deleted.
        same_refusal(
            await world.bob.call("DELETE", f"/topics/{mine}"),
            mine,
            await world.bob.call("DELETE", f"/topics/{rid}-a-nope"),
            f"{rid}-a-nope",
        )
        refused(await world.carol.call("DELETE", f"/v3/clusters/wrong/topics/{mine}"))
        assert mine in await kafka_admin.list_topics()
        assert await world.alice.call("DELETE", f"/topics/{mine}") == (204, None)
        deadline = time.monotonic() + 30
        while mine in await kafka_admin.list_topics():
            assert time.monotonic() < deadline, "deleted topic still listed"
            await asyncio.sleep(0.2)
        # Allowed, and past the check: Kafka's own 404 for a topic that is not there.
        status, body = await world.alice.call("DELETE", f"/topics/{rid}-a-nope")
        assert (status, body["error_code"]) == (404, 40403), body
    finally:
        left = [t for t in (mine, other) if t in await kafka_admin.list_topics()]
        if left:
            await kafka_admin.delete_topics(left)


async def test_topic_configs_and_partitions_need_alter(
    world: World, new_topic: NewTopicFn, kafka_admin: AIOKafkaAdminClient
) -> None:
    rid = world.rid
    shown = await new_topic(1, f"{rid}-a-shown")
    base = f"/topics/{shown}/configs"
    before = await topic_configs(kafka_admin, shown)

    # bob describes the topic and its configs, but changes nothing.
    status, body = await world.bob.call("GET", base)
    assert status == 200 and {c["topic_name"] for c in body["data"]} == {shown}, body
    assert (await world.bob.call("GET", base + "/cleanup.policy"))[0] == 200
    refused(await world.bob.call("PUT", base + "/retention.ms", {"value": "1000"}))
    refused(await world.bob.call("DELETE", base + "/retention.ms"))
    refused(
        await world.bob.call(
            "POST", base + ":alter", {"data": [{"name": "retention.ms", "value": "1000"}]}
        )
    )
    refused(await world.bob.call("PATCH", f"/topics/{shown}", {"partitions_count": 3}))
    # A config name that does not exist is refused like one that does (not 404).
    same_refusal(
        await world.bob.call("PUT", base + "/retention.ms", {"value": "1"}),
        "retention.ms",
        await world.bob.call("PUT", base + "/no.such.config", {"value": "1"}),
        "no.such.config",
    )
    refused(await world.carol.call("GET", base))
    assert await topic_configs(kafka_admin, shown) == before
    assert await partitions_of(kafka_admin, shown) == [0]

    # alice administers the topic: her changes reach Kafka.
    assert await world.alice.call("PUT", base + "/retention.ms", {"value": "7654321"}) == (
        204,
        None,
    )
    assert (await topic_configs(kafka_admin, shown))["retention.ms"] == "7654321"
    status, body = await world.alice.call("PATCH", f"/topics/{shown}", {"partitions_count": 2})
    assert (status, body["partitions_count"]) == (200, 2), body
    assert await partitions_of(kafka_admin, shown) == [0, 1]


async def test_multi_topic_config_alter_needs_alter_on_every_topic(
    world: World, new_topic: NewTopicFn, kafka_admin: AIOKafkaAdminClient
) -> None:
    rid = world.rid
    mine = await new_topic(1, f"{rid}-a-multi")
    also_mine = await new_topic(1, f"{rid}-a-multi2")
    theirs = await new_topic(1, f"{rid}-b-multi")

    def body(topics: tuple[str, ...], value: str) -> dict[str, Any]:
        change = [{"name": "retention.ms", "value": value}]
        return {"data": [{"topic_name": t, "configs": change} for t in topics]}

    refused(await world.alice.call("POST", "/topics/-/configs:alter", body((mine, theirs), "1")))
    for topic in (mine, theirs):  # all or nothing: neither changed
        assert (await topic_configs(kafka_admin, topic))["retention.ms"] != "1"
    # Alter on every topic named: applied to all of them.
    status, answer = await world.alice.call(
        "POST", "/topics/-/configs:alter", body((mine, also_mine), "7654321")
    )
    assert (status, answer) == (204, None), answer
    for topic in (mine, also_mine):
        assert (await topic_configs(kafka_admin, topic))["retention.ms"] == "7654321"


async def test_topic_lists_are_filtered(world: World, new_topic: NewTopicFn) -> None:
    rid = world.rid
    shown = await new_topic(1, f"{rid}-a-shown")
    other = await new_topic(1, f"{rid}-a-other")
    secret = await new_topic(1, f"{rid}-secret")

    async def listed(user: As) -> set[str]:
        status, body = await user.call("GET", "/topics")
        assert status == 200, body
        return {t["topic_name"] for t in body["data"] if t["topic_name"].startswith(rid)}

    assert await listed(world.alice) == {shown, other}
    assert await listed(world.bob) == {shown}
    assert await listed(world.carol) == set()
    status, body = await world.bob.call("GET", f"/topics/{shown}")
    assert status == 200 and body["topic_name"] == shown, body
    same_refusal(
        await world.alice.call("GET", f"/topics/{secret}"),
        secret,
        await world.alice.call("GET", f"/topics/{rid}-nope"),
        f"{rid}-nope",
    )
    refused(await world.alice.call("GET", f"/topics/{secret}/partitions"))
    refused(await world.alice.call("GET", f"/topics/{secret}/configs"))


async def _group_with_offsets(
    bootstrap: str, group: str, committed: dict[tuple[str, int], int]
) -> None:
    """A group that has committed these offsets (no member left)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t, p in committed])
        await consumer.commit({TopicPartition(t, p): o for (t, p), o in committed.items()})
    finally:
        await consumer.stop()


async def test_group_lags_need_group_describe(
    world: World, new_topic: NewTopicFn, producer: AIOKafkaProducer, kafka_bootstrap: str
) -> None:
    rid = world.rid
    visible = await new_topic(1, f"{rid}-a-lag")
    hidden = await new_topic(1, f"{rid}-secret-lag")
    for topic, n in ((visible, 3), (hidden, 10)):
        for i in range(n):
            await producer.send_and_wait(topic, b"r%d" % i, partition=0)
    group, other_group = f"{rid}-g-1", f"{rid}-h-1"
    # Lag 2 on the visible topic, 9 on the hidden one (the group's largest).
    await _group_with_offsets(kafka_bootstrap, group, {(visible, 0): 1, (hidden, 0): 1})
    await _group_with_offsets(kafka_bootstrap, other_group, {(visible, 0): 0})

    status, body = await world.alice.call("GET", f"/consumer-groups/{group}/lags")
    assert status == 200, body
    assert [(r["topic_name"], r["lag"]) for r in body["data"]] == [(visible, 2)]
    status, summary = await world.alice.call("GET", f"/consumer-groups/{group}/lag-summary")
    assert status == 200, summary
    # The hidden topic is not named, and its lag is not counted.
    assert (summary["max_lag_topic_name"], summary["max_lag"], summary["total_lag"]) == (
        visible,
        2,
        2,
    )
    assert hidden not in json.dumps(summary)

    # Refused for bob and carol, and for alice outside her groups, whether the group exists.
    for path in ("", "/lags", "/lag-summary", "/consumers", f"/lags/{visible}/partitions/0"):
        refused(await world.bob.call("GET", f"/consumer-groups/{group}{path}"))
        same_refusal(
            await world.carol.call("GET", f"/consumer-groups/{group}{path}"),
            group,
            await world.carol.call("GET", f"/consumer-groups/{rid}-g-none{path}"),
            f"{rid}-g-none",
        )
        refused(await world.alice.call("GET", f"/consumer-groups/{other_group}{path}"))

    # The group list shows only the groups the caller may describe.
    async def listed(user: As) -> set[str]:
        status, body = await user.call("GET", "/consumer-groups")
        assert status == 200, body
        return {
            g["consumer_group_id"] for g in body["data"] if g["consumer_group_id"].startswith(rid)
        }

    assert await listed(world.alice) == {group}
    assert await listed(world.bob) == set()


async def test_acls_need_cluster_rights(world: World) -> None:
    acl = {
        "resource_type": "TOPIC",
        "resource_name": f"{world.rid}-acl",
        "pattern_type": "LITERAL",
        "principal": "User:nobody",
        "host": "*",
        "operation": "READ",
        "permission": "ALLOW",
    }
    query = {k: v for k, v in acl.items() if k != "resource_name"}
    # carol may not even search; alice (describe) may search but not change.
    refused(await world.carol.call("GET", "/acls"))
    refused(await world.alice.call("POST", "/acls", acl))
    refused(await world.alice.call("POST", "/acls:batch", {"data": [acl]}))
    refused(await world.alice.call("DELETE", "/acls", params=query))
    refused(await world.bob.call("POST", "/acls", acl))
    # Allowed callers get past the check to Kafka: the test broker has no authorizer, which
    # Kafka answers with SecurityDisabled (400/40002), not the gateway's 403.
    for result in (
        await world.alice.call("GET", "/acls"),
        await world.admin.call("POST", "/acls", acl),
        await world.admin.call("DELETE", "/acls", params=query),
    ):
        status, body = result
        assert status != 403 and body is not None and body.get("error_code") != 40301, result


async def test_broker_and_cluster_configs_need_cluster_alter(world: World) -> None:
    name = "log.cleaner.backoff.ms"
    # alice may read broker configs (describe) but not write them; nothing is looked up first.
    status, body = await world.alice.call("GET", "/broker-configs")
    assert status == 200, body
    refused(await world.alice.call("PUT", f"/brokers/1/configs/{name}", {"value": "15000"}))
    refused(await world.alice.call("DELETE", f"/brokers/1/configs/{name}"))
    refused(await world.alice.call("POST", "/brokers/1/configs:alter", {"data": [{"name": name}]}))
    same_refusal(
        await world.alice.call("DELETE", f"/broker-configs/{name}"),
        name,
        await world.alice.call("DELETE", "/broker-configs/no.such.config"),
        "no.such.config",
    )
    refused(await world.bob.call("GET", "/broker-configs"))
    # admin gets past the check: removing a cluster-wide default nobody set is Kafka's 404.
    status, body = await world.admin.call("DELETE", "/broker-configs/no.such.config")
    assert status == 404 and body["error_code"] == 404, body


async def test_refusals_come_before_kafka_is_asked(
    make_gateway: MakeGatewayFn, users_file: Path, tmp_path: Path
) -> None:
    """With Kafka unreachable, an allowed request is 503 + Retry-After (Kafka was asked) while
    a refused one is still 403: the rules were asked first, Kafka never (else it too would be
    503)."""
    rid = "v3az" + uuid.uuid4().hex[:8]
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": rules_for(rid)}))
    http = await make_gateway(
        {
            "bootstrap.servers": "127.0.0.1:9",  # nothing listens there
            "kafka.timeout.ms": "1000",
            "authentication.method": "BASIC",
            "authentication.basic.users.file": str(users_file),
            "authorization.rules.file": str(rules),
        }
    )
    carol, alice = As(http, "carol", "any-id"), As(http, "alice", "any-id")
    for method, path, body in [
        ("GET", "/v3/clusters", None),
        ("GET", "/brokers", None),
        ("POST", "/topics", {"topic_name": f"{rid}-a-x"}),
        ("DELETE", f"/topics/{rid}-a-x", None),
        ("PUT", f"/topics/{rid}-a-x/configs/retention.ms", {"value": "1"}),
        ("GET", f"/consumer-groups/{rid}-g-1/lags", None),
        ("POST", "/acls", {"resource_type": "TOPIC"}),
    ]:
        refused(await carol.call(method, path, body))
    async with http.get(
        "/v3/clusters/any-id/consumer-groups/" + f"{rid}-g-1/lags", headers=alice.auth
    ) as resp:
        assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 0
        assert (await resp.json())["error_code"] in (50003, 50302)
