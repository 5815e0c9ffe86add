"""v3 consumer groups, members, assignments and lag, against a real broker.

The group is a v2 consumer instance created through the gateway itself, as a user's would be;
every figure the v3 endpoints give is checked against what Kafka says to independent aiokafka
clients (committed offsets from an admin client, read-committed log ends from a consumer,
members from the coordinator), never against the gateway's own answers.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.group import MemberAssignment

from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.support.v2 import V2

Client = TestClient[web.Request, web.Application]
HOST = {"Host": "lb.example:8082"}
ORIGIN = "http://lb.example:8082"


def _group_name() -> str:
    return "v3g-" + uuid.uuid4().hex[:10]


async def _get(gateway: Client, path: str) -> tuple[int, Any]:
    resp = await gateway.get(path, headers=HOST)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def _cluster_id(gateway: Client) -> str:
    status, body = await _get(gateway, "/v3/clusters")
    assert status == 200
    cid: str = body["data"][0]["cluster_id"]
    return cid


async def _independent_lags(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, group: str
) -> dict[tuple[str, int], tuple[int, int]]:
    """(committed, read-committed log end) per partition with a committed offset."""
    committed = {
        (tp.topic, tp.partition): om.offset
        for tp, om in (await kafka_admin.list_consumer_group_offsets(group)).items()
        if om.offset >= 0
    }
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(t, p) for t, p in committed])
    finally:
        await consumer.stop()
    return {tp: (off, ends[TopicPartition(*tp)]) for tp, off in committed.items()}


async def _independent_members(kafka_admin: AIOKafkaAdminClient, group: str) -> dict[str, Any]:
    """member id -> (client id, sorted assignment), and the assignor, from the coordinator."""
    [response] = await kafka_admin.describe_consumer_groups([group])
    [described] = response.to_object()["groups"]
    members = {}
    for m in described["members"]:
        decoded = MemberAssignment.decode(m["member_assignment"])
        parts = sorted((t, p) for t, ps in decoded.assignment for p in ps)
        members[m["member_id"]] = (m["client_id"], parts)
    return {"state": described["state"], "protocol": described["protocol"], "members": members}


def _expected_rows(
    independent: dict[tuple[str, int], tuple[int, int]], owner: str, client: str
) -> list[dict[str, Any]]:
    rows = [
        {
            "topic_name": t,
            "partition_id": p,
            "consumer_id": owner,
            "instance_id": None,
            "client_id": client,
            "current_offset": committed,
            "log_end_offset": end,
            "lag": max(0, end - committed),
        }
        for (t, p), (committed, end) in independent.items()
    ]
    return sorted(rows, key=lambda r: (-r["lag"], r["topic_name"], r["partition_id"]))


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keep = (
        "topic_name",
        "partition_id",
        "consumer_id",
        "instance_id",
        "client_id",
        "current_offset",
        "log_end_offset",
        "lag",
    )
    return [{k: r[k] for k in keep} for r in rows]


async def _commit(api: V2, group: str, name: str, topic: str, offsets: dict[int, int]) -> None:
    body = {"offsets": [{"topic": topic, "partition": p, "offset": o} for p, o in offsets.items()]}
    status, answer, _ = await api.call("POST", api.inst(group, name) + "/offsets", body)
    assert (status, answer) == (200, [])


async def test_a_v2_consumer_as_v3_sees_it(
    gateway: Client,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    kafka_bootstrap: str,
) -> None:
    topic = await new_topic(partitions=2)
    for i in range(6):
        await producer.send_and_wait(topic, b"a%d" % i, partition=0)
    for i in range(4):
        await producer.send_and_wait(topic, b"b%d" % i, partition=1)
    cid = await _cluster_id(gateway)
    base = f"{ORIGIN}/v3/clusters/{cid}"

    api = V2(gateway)
    group = _group_name()
    status, created = await api.create(
        group,
        name="c1",
        format="binary",
        **{"auto.commit.enable": "false", "auto.offset.reset": "earliest"},
    )
    assert status == 200, created
    assert await api.subscribe(group, "c1", [topic]) == 204
    got = await api.drain(group, "c1", 10)
    assert len(got) == 10
    await _commit(api, group, "c1", topic, {0: 1, 1: 0})  # committed: 2 and 1

    # --- the group, listed and on its own -----------------------------------------------
    kafka_view = await _independent_members(kafka_admin, group)
    [(member_id, (client_id, assigned))] = kafka_view["members"].items()
    assert client_id == "event-gateway-c1"
    assert assigned == [(topic, 0), (topic, 1)]
    coordinator = await kafka_admin.find_coordinator(group)

    expected_group = {
        "kind": "KafkaConsumerGroup",
        "metadata": {
            "self": f"{base}/consumer-groups/{group}",
            "resource_name": f"crn:///kafka={cid}/consumer-group={group}",
        },
        "cluster_id": cid,
        "consumer_group_id": group,
        "is_simple": False,
        "partition_assignor": kafka_view["protocol"],
        "state": "STABLE",
        "type": "CLASSIC",
        "is_mixed_consumer_group": False,
        "coordinator": {"related": f"{base}/brokers/{coordinator}"},
        "consumers": {"related": f"{base}/consumer-groups/{group}/consumers"},
        "lag_summary": {"related": f"{base}/consumer-groups/{group}/lag-summary"},
    }
    assert kafka_view["protocol"]  # a live consumer group has an assignor
    status, listed = await _get(gateway, f"/v3/clusters/{cid}/consumer-groups")
    assert status == 200
    assert listed["kind"] == "KafkaConsumerGroupList"
    assert listed["metadata"] == {"self": f"{base}/consumer-groups", "next": None}
    assert [g for g in listed["data"] if g["consumer_group_id"] == group] == [expected_group]
    listed_ids = {g["consumer_group_id"] for g in listed["data"]}
    assert {g for g, _ in await kafka_admin.list_consumer_groups()} >= listed_ids
    assert await _get(gateway, f"/v3/clusters/{cid}/consumer-groups/{group}") == (
        200,
        expected_group,
    )

    # --- its member and the member's assignments -------------------------------------------
    member_url = f"{base}/consumer-groups/{group}/consumers/{member_id}"
    expected_member = {
        "kind": "KafkaConsumer",
        "metadata": {
            "self": member_url,
            "resource_name": f"crn:///kafka={cid}/consumer-group={group}/consumer={member_id}",
        },
        "cluster_id": cid,
        "consumer_group_id": group,
        "consumer_id": member_id,
        "instance_id": None,
        "client_id": "event-gateway-c1",
        "assignments": {"related": f"{member_url}/assignments"},
    }
    status, members = await _get(gateway, f"/v3/clusters/{cid}/consumer-groups/{group}/consumers")
    assert status == 200
    assert members["kind"] == "KafkaConsumerList"
    assert members["data"] == [expected_member]
    path = f"/v3/clusters/{cid}/consumer-groups/{group}/consumers/{member_id}"
    assert await _get(gateway, path) == (200, expected_member)

    status, assignments = await _get(gateway, path + "/assignments")
    assert status == 200
    assert assignments["kind"] == "KafkaConsumerAssignmentList"
    assert assignments["metadata"]["self"] == f"{member_url}/assignments"
    assert [(a["topic_name"], a["partition_id"]) for a in assignments["data"]] == assigned
    one = assignments["data"][1]
    assert one == {
        "kind": "KafkaConsumerAssignment",
        "metadata": {
            "self": f"{member_url}/assignments/{topic}/partitions/1",
            "resource_name": f"crn:///kafka={cid}/consumer-group={group}/consumer={member_id}"
            f"/assignment={topic}/partition=1",
        },
        "cluster_id": cid,
        "consumer_group_id": group,
        "consumer_id": member_id,
        "topic_name": topic,
        "partition_id": 1,
        "partition": {"related": f"{base}/topics/{topic}/partitions/1"},
        "lag": {"related": f"{base}/consumer-groups/{group}/lags/{topic}/partitions/1"},
    }
    assert await _get(gateway, f"{path}/assignments/{topic}/partitions/1") == (200, one)
    status, body = await _get(gateway, f"{path}/assignments/{topic}/partitions/2")
    assert (status, body) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})
    status, body = await _get(gateway, f"{path}x")
    assert (status, body) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})
    status, body = await _get(gateway, f"{path}x/assignments")
    assert (status, body["message"]) == (404, f"Consumer {member_id}x does not exist.")

    # --- lag while it consumes, before and after a further commit --------------------------
    lags_path = f"/v3/clusters/{cid}/consumer-groups/{group}/lags"
    independent = await _independent_lags(kafka_bootstrap, kafka_admin, group)
    assert independent == {(topic, 0): (2, 6), (topic, 1): (1, 4)}
    status, lags = await _get(gateway, lags_path)
    assert status == 200
    assert lags["kind"] == "KafkaConsumerLagList"
    assert lags["metadata"] == {"self": f"{base}/consumer-groups/{group}/lags", "next": None}
    assert _strip(lags["data"]) == _expected_rows(independent, member_id, "event-gateway-c1")
    assert [r["partition_id"] for r in lags["data"]] == [0, 1]  # lag 4 before lag 3
    first = lags["data"][0]
    assert first["kind"] == "KafkaConsumerLag"
    assert first["metadata"] == {
        "self": f"{base}/consumer-groups/{group}/lags/{topic}/partitions/0",
        "resource_name": f"crn:///kafka={cid}/consumer-group={group}/lag={topic}/partition=0",
    }
    assert (first["cluster_id"], first["consumer_group_id"]) == (cid, group)
    assert await _get(gateway, f"{lags_path}/{topic}/partitions/0") == (200, first)

    summary_path = f"/v3/clusters/{cid}/consumer-groups/{group}/lag-summary"
    status, summary = await _get(gateway, summary_path)
    assert status == 200
    assert summary == {
        "kind": "KafkaConsumerGroupLagSummary",
        "metadata": {
            "self": f"{base}/consumer-groups/{group}/lag-summary",
            "resource_name": f"crn:///kafka={cid}/consumer-group={group}/lag-summary",
        },
        "cluster_id": cid,
        "consumer_group_id": group,
        "max_lag_consumer_id": member_id,
        "max_lag_instance_id": None,
        "max_lag_client_id": "event-gateway-c1",
        "max_lag_topic_name": topic,
        "max_lag_partition_id": 0,
        "max_lag": 4,
        "total_lag": 7,
        "max_lag_consumer": {"related": member_url},
        "max_lag_partition": {"related": f"{base}/topics/{topic}/partitions/0"},
    }

    # More records arrive on partition 1 and the consumer commits further: the order flips.
    for i in range(3):
        await producer.send_and_wait(topic, b"c%d" % i, partition=1)
    assert len(await api.drain(group, "c1", 3)) == 3
    await _commit(api, group, "c1", topic, {0: 5, 1: 4})  # committed: 6 of 6, 5 of 7
    independent = await _independent_lags(kafka_bootstrap, kafka_admin, group)
    assert independent == {(topic, 0): (6, 6), (topic, 1): (5, 7)}
    status, lags = await _get(gateway, lags_path)
    assert status == 200
    assert _strip(lags["data"]) == _expected_rows(independent, member_id, "event-gateway-c1")
    assert [(r["partition_id"], r["lag"]) for r in lags["data"]] == [(1, 2), (0, 0)]
    status, summary = await _get(gateway, summary_path)
    assert (summary["max_lag"], summary["total_lag"]) == (2, 2)
    assert (summary["max_lag_topic_name"], summary["max_lag_partition_id"]) == (topic, 1)

    # No committed offset for a partition, and partitions that cannot exist: plain 404s.
    not_found = {"error_code": 404, "message": "HTTP 404 Not Found"}
    assert await _get(gateway, f"{lags_path}/{topic}/partitions/7") == (404, not_found)
    assert await _get(gateway, f"{lags_path}/other/partitions/0") == (404, not_found)
    assert await _get(gateway, f"{lags_path}/{topic}/partitions/x") == (404, not_found)

    # --- the instance goes: offsets stay, nobody owns them -----------------------------------
    assert await api.delete(group, "c1") == 204
    status, body = await _get(gateway, f"/v3/clusters/{cid}/consumer-groups/{group}")
    assert (status, body["state"], body["partition_assignor"]) == (200, "EMPTY", "")
    status, members = await _get(gateway, f"/v3/clusters/{cid}/consumer-groups/{group}/consumers")
    assert (status, members["data"]) == (200, [])
    assert await _get(gateway, path) == (404, not_found)
    status, lags = await _get(gateway, lags_path)
    assert status == 200
    independent = await _independent_lags(kafka_bootstrap, kafka_admin, group)
    assert _strip(lags["data"]) == _expected_rows(independent, "", "")
    status, summary = await _get(gateway, summary_path)
    assert status == 200
    assert (summary["max_lag_consumer_id"], summary["max_lag_client_id"]) == ("", "")
    assert summary["max_lag_instance_id"] is None
    assert summary["max_lag_consumer"] == {"related": f"{base}/consumer-groups/{group}/consumers"}
    assert (summary["max_lag"], summary["total_lag"]) == (2, 2)

    # An open transaction on partition 0: its records are not yet something a read-committed
    # reader is behind on, so the log end is the last stable offset, not the high watermark.
    txn = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=_group_name())
    await txn.start()
    try:
        await txn.begin_transaction()
        for i in range(2):
            await txn.send_and_wait(topic, b"t%d" % i, partition=0)
        uncommitted = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
        await uncommitted.start()
        try:
            high = await uncommitted.end_offsets([TopicPartition(topic, 0)])
        finally:
            await uncommitted.stop()
        assert high[TopicPartition(topic, 0)] == 8
        independent = await _independent_lags(kafka_bootstrap, kafka_admin, group)
        assert independent[(topic, 0)] == (6, 6)
        status, lags = await _get(gateway, lags_path)
        assert _strip(lags["data"]) == _expected_rows(independent, "", "")
        await txn.commit_transaction()
    finally:
        await txn.stop()
    independent = await _independent_lags(kafka_bootstrap, kafka_admin, group)
    assert independent[(topic, 0)] == (6, 9)  # 2 records and the commit marker
    status, lags = await _get(gateway, lags_path)
    assert _strip(lags["data"]) == _expected_rows(independent, "", "")
    assert [(r["partition_id"], r["lag"]) for r in lags["data"]] == [(0, 3), (1, 2)]


async def test_unknown_groups_and_groups_without_offsets(
    gateway: Client, new_topic: NewTopicFn, kafka_bootstrap: str
) -> None:
    cid = await _cluster_id(gateway)
    missing = _group_name()
    groups = f"/v3/clusters/{cid}/consumer-groups"

    # A group Kafka has never heard of.
    assert await _get(gateway, f"{groups}/{missing}") == (
        404,
        {"error_code": 404, "message": "HTTP 404 Not Found"},
    )
    does_not_exist = {"error_code": 404, "message": f"Consumer Group {missing} does not exist."}
    assert await _get(gateway, f"{groups}/{missing}/consumers") == (404, does_not_exist)
    assert await _get(gateway, f"{groups}/{missing}/consumers/m") == (404, does_not_exist)
    assert await _get(gateway, f"{groups}/{missing}/consumers/m/assignments") == (
        404,
        does_not_exist,
    )
    not_found = {"error_code": 404, "message": f"Consumer Group {missing} could not be found."}
    assert await _get(gateway, f"{groups}/{missing}/lags") == (404, not_found)
    assert await _get(gateway, f"{groups}/{missing}/lags/t/partitions/0") == (404, not_found)
    assert await _get(gateway, f"{groups}/{missing}/lag-summary") == (404, not_found)
    status, listed = await _get(gateway, groups)
    assert status == 200 and missing not in {g["consumer_group_id"] for g in listed["data"]}

    # A live group that has not committed anything yet: it exists, but has no lag.
    topic = await new_topic(partitions=1)
    group = _group_name()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
        status, body = await _get(gateway, f"{groups}/{group}")
        assert (status, body["state"], body["is_simple"]) == (200, "STABLE", False)
        no_offsets = {"error_code": 404, "message": "Consumer group offsets could not be found."}
        assert await _get(gateway, f"{groups}/{group}/lags") == (404, no_offsets)
        assert await _get(gateway, f"{groups}/{group}/lag-summary") == (404, no_offsets)
        status, members = await _get(gateway, f"{groups}/{group}/consumers")
        assert status == 200
        [member] = members["data"]
        assert member["client_id"] == consumer._client._client_id
    finally:
        await consumer.stop()


async def test_unknown_cluster_and_body_type(gateway: Client) -> None:
    for path in ("consumer-groups", "consumer-groups/g", "consumer-groups/g/lags"):
        assert await _get(gateway, f"/v3/clusters/nope/{path}") == (
            404,
            {"error_code": 404, "message": "Cluster nope could not be found."},
        )
    cid = await _cluster_id(gateway)
    resp = await gateway.get(
        f"/v3/clusters/{cid}/consumer-groups", headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 415


async def test_authorisation_hides_groups_and_topics(
    make_gateway: MakeGatewayFn,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    prefix = _group_name()
    seen_topic, hidden_topic = await new_topic(partitions=1), await new_topic(partitions=1)
    for topic in (seen_topic, hidden_topic):
        for i in range(3):
            await producer.send_and_wait(topic, b"%d" % i, partition=0)
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "rules": [
                    {"principal": "*", "group": f"{prefix}-seen*", "allow": ["describe"]},
                    {"principal": "*", "topic": seen_topic, "allow": ["describe"]},
                ]
            }
        )
    )
    gateway = await make_gateway({"authorization.rules.file": str(rules)})
    cid = (await kafka_admin.describe_cluster())["cluster_id"]
    groups = f"/v3/clusters/{cid}/consumer-groups"

    # A simple group (offsets committed without ever joining) the caller may not see...
    hidden = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"{prefix}-hidden")
    await hidden.start()
    try:
        hidden.assign([TopicPartition(seen_topic, 0)])
        await hidden.commit({TopicPartition(seen_topic, 0): 1})
    finally:
        await hidden.stop()
    # ...and a live one reading both topics, whose rows of the hidden topic are left out.
    seen = f"{prefix}-seen"
    member = AIOKafkaConsumer(
        seen_topic,
        hidden_topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=seen,
        enable_auto_commit=False,
    )
    await member.start()
    try:
        async with asyncio.timeout(30):
            while len(member.assignment()) < 2:
                await member.getmany(timeout_ms=200)
        await member.commit({TopicPartition(seen_topic, 0): 1, TopicPartition(hidden_topic, 0): 2})

        status, listed = await _get(gateway, groups)
        assert status == 200
        ids = {g["consumer_group_id"] for g in listed["data"]}
        assert seen in ids and f"{prefix}-hidden" not in ids
        assert {g for g, _ in await kafka_admin.list_consumer_groups()} >= {
            seen,
            f"{prefix}-hidden",
        }
        for path in ("", "/consumers", "/lags", "/lag-summary"):
            status, body = await _get(gateway, f"{groups}/{prefix}-hidden{path}")
            assert (status, body["error_code"]) == (403, 40301), path

        status, lags = await _get(gateway, f"{groups}/{seen}/lags")
        assert status == 200
        assert [(r["topic_name"], r["current_offset"], r["lag"]) for r in lags["data"]] == [
            (seen_topic, 1, 2)
        ]
        status, summary = await _get(gateway, f"{groups}/{seen}/lag-summary")
        assert (summary["max_lag_topic_name"], summary["total_lag"]) == (seen_topic, 2)
        status, body = await _get(gateway, f"{groups}/{seen}/lags/{hidden_topic}/partitions/0")
        assert (status, body["error_code"]) == (403, 40301)

        status, members = await _get(gateway, f"{groups}/{seen}/consumers")
        [consumer] = members["data"]
        path = f"{groups}/{seen}/consumers/{consumer['consumer_id']}/assignments"
        status, assignments = await _get(gateway, path)
        assert [a["topic_name"] for a in assignments["data"]] == [seen_topic]
        status, body = await _get(gateway, f"{path}/{hidden_topic}/partitions/0")
        assert (status, body["error_code"]) == (403, 40301)
    finally:
        await member.stop()

    # Without rules, the hidden group shows what it is: simple (it only ever committed).
    open_gateway = await make_gateway()
    status, body = await _get(open_gateway, f"{groups}/{prefix}-hidden")
    assert (status, body["is_simple"], body["state"]) == (200, True, "EMPTY")
