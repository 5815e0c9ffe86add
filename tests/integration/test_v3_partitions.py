"""v3 partitions, offsets, replicas and reassignments against a real single-node broker.

Offsets are checked against records written by an independent producer (and a log start
moved with ``delete_records``); partition layouts against ``kafka_admin``'s metadata. The
broker has one node, so no reassignment can be under way: the lists are empty and a
partition's reassignment is 404, which is what an idle cluster answers.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from tests.harness.api import MakeGatewayFn, NewTopicFn
from tests.harness.topics import unique_topic_name

Client = TestClient[web.Request, web.Application]
HOST = "lb.example:8082"
NOT_FOUND = {"error_code": 404, "message": "HTTP 404 Not Found"}


async def _get(client: Client, path: str, **headers: str) -> tuple[int, Any]:
    async with client.get(path, headers={"Host": HOST, **headers}) as resp:
        raw = await resp.read()
        return resp.status, (json.loads(raw) if raw else None)


async def _layout(kafka_admin: AIOKafkaAdminClient) -> tuple[str, int]:
    described = await kafka_admin.describe_cluster()
    [broker] = [b["node_id"] for b in described["brokers"]]
    return str(described["cluster_id"]), broker


def _partition(cid: str, topic: str, p: int, leader: int) -> dict[str, Any]:
    base = f"http://{HOST}/v3/clusters/{cid}/topics/{topic}/partitions/{p}"
    return {
        "kind": "KafkaPartition",
        "metadata": {
            "self": base,
            "resource_name": f"crn:///kafka={cid}/topic={topic}/partition={p}",
        },
        "cluster_id": cid,
        "topic_name": topic,
        "partition_id": p,
        "leader": {"related": f"{base}/replicas/{leader}"},
        "replicas": {"related": f"{base}/replicas"},
        "reassignment": {"related": f"{base}/reassignment"},
    }


def _replica(cid: str, topic: str, p: int, broker: int) -> dict[str, Any]:
    base = f"http://{HOST}/v3/clusters/{cid}"
    return {
        "kind": "KafkaReplica",
        "metadata": {
            "self": f"{base}/topics/{topic}/partitions/{p}/replicas/{broker}",
            "resource_name": f"crn:///kafka={cid}/topic={topic}/partition={p}/replica={broker}",
        },
        "cluster_id": cid,
        "topic_name": topic,
        "partition_id": p,
        "broker_id": broker,
        "is_leader": True,
        "is_in_sync": True,
        "broker": {"related": f"{base}/brokers/{broker}"},
    }


async def test_partitions_and_their_links(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid, broker = await _layout(kafka_admin)
    topic = await new_topic(2)
    (meta,) = await kafka_admin.describe_topics([topic])
    leaders = {p["partition"]: p["leader"] for p in meta["partitions"]}
    assert set(leaders.values()) == {broker}
    path = f"/v3/clusters/{cid}/topics/{topic}/partitions"

    status, body = await _get(gateway, path)
    assert status == 200
    assert body == {
        "kind": "KafkaPartitionList",
        "metadata": {"self": f"http://{HOST}{path}", "next": None},
        "data": [_partition(cid, topic, p, leaders[p]) for p in (0, 1)],
    }
    assert await _get(gateway, f"{path}/1") == (200, _partition(cid, topic, 1, leaders[1]))
    # Every link leads somewhere the gateway serves (through the same Host).
    for link in (body["data"][1]["leader"], body["data"][1]["replicas"]):
        status, _ = await _get(gateway, link["related"].removeprefix(f"http://{HOST}"))
        assert status == 200, link

    for bad in ("2", "-1", "abc", "1.0", "99999999999"):
        assert await _get(gateway, f"{path}/{bad}") == (404, NOT_FOUND), bad
    missing = unique_topic_name("v3p-")
    status, body = await _get(gateway, f"/v3/clusters/{cid}/topics/{missing}/partitions")
    assert (status, body["error_code"]) == (404, 40403)
    status, body = await _get(gateway, f"/v3/clusters/{cid}/topics/{missing}/partitions/0")
    assert (status, body) == (
        404,
        {
            "error_code": 40403,
            "message": f"This server does not host topic-partition 0 for topic {missing}",
        },
    )
    assert missing not in await kafka_admin.list_topics()
    status, body = await _get(gateway, f"/v3/clusters/nope/topics/{topic}/partitions")
    assert (status, body) == (404, {"error_code": 404, "message": "Cluster nope cannot be found."})


async def test_offsets_agree_with_what_was_produced(
    gateway: Client,
    kafka_admin: AIOKafkaAdminClient,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
) -> None:
    cid, _ = await _layout(kafka_admin)
    topic = await new_topic(2)
    for i in range(5):
        await producer.send_and_wait(topic, b"v%d" % i, partition=0)
    await producer.send_and_wait(topic, b"other", partition=1)
    path = f"/v3/clusters/{cid}/topics/{topic}/partitions/0/offset"

    def offsets(p: int, earliest: int, latest: int) -> dict[str, Any]:
        return {
            "kind": "KafkaPartitionWithOffsets",
            "metadata": {
                "self": f"http://{HOST}/v3/clusters/{cid}/topics/{topic}/partitions/{p}/offset",
                "resource_name": f"crn:///kafka={cid}/topic={topic}/partition={p}"
                "/offset_type=earliest_and_latest",
            },
            "cluster_id": cid,
            "topic_name": topic,
            "partition_id": p,
            "earliest_offset": earliest,
            "latest_offset": latest,
        }

    assert await _get(gateway, path) == (200, offsets(0, 0, 5))
    assert await _get(gateway, f"{path}?offset_type=earliest_and_latest") == (200, offsets(0, 0, 5))
    assert await _get(gateway, path.replace("/0/", "/1/")) == (200, offsets(1, 0, 1))
    # The log start moves when records are deleted: earliest is Kafka's, not an assumed 0.
    await kafka_admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(3)})
    assert await _get(gateway, path) == (200, offsets(0, 3, 5))

    assert await _get(gateway, f"{path}?offset_type=foo") == (
        400,
        {"error_code": 400, "message": "Bad Request: offset_type:foo is invalid"},
    )
    assert await _get(gateway, path.replace("/0/", "/7/")) == (
        404,
        {"error_code": 40402, "message": "Partition not found."},
    )
    assert await _get(gateway, path.replace("/0/", "/x/")) == (404, NOT_FOUND)
    missing = unique_topic_name("v3o-")
    status, body = await _get(gateway, path.replace(topic, missing))
    assert (status, body["error_code"]) == (404, 40403)


async def test_replicas_of_a_partition_and_of_a_broker(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid, broker = await _layout(kafka_admin)
    topic = await new_topic(2)
    path = f"/v3/clusters/{cid}/topics/{topic}/partitions/1/replicas"

    status, body = await _get(gateway, path)
    assert status == 200
    assert body == {
        "kind": "KafkaReplicaList",
        "metadata": {"self": f"http://{HOST}{path}", "next": None},
        "data": [_replica(cid, topic, 1, broker)],
    }
    assert await _get(gateway, f"{path}/{broker}") == (200, _replica(cid, topic, 1, broker))
    assert await _get(gateway, f"{path}/{broker + 1}") == (404, NOT_FOUND)
    assert await _get(gateway, f"{path}/one") == (404, NOT_FOUND)
    status, body = await _get(gateway, path.replace("/1/", "/5/"))
    assert (status, body) == (
        404,
        {
            "error_code": 404,
            "message": f"Partition 5 of topic {topic} could not be found on cluster {cid}.",
        },
    )

    hosted = f"/v3/clusters/{cid}/brokers/{broker}/partition-replicas"
    status, body = await _get(gateway, hosted)
    assert status == 200
    assert body["kind"] == "KafkaReplicaList"
    assert body["metadata"] == {"self": f"http://{HOST}{hosted}", "next": None}
    keys = [(r["topic_name"], r["partition_id"]) for r in body["data"]]
    assert keys == sorted(keys)
    assert [r for r in body["data"] if r["topic_name"] == topic] == [
        _replica(cid, topic, p, broker) for p in (0, 1)
    ]
    # The single broker hosts every partition Kafka has (internal topics included).
    everything = {
        (t["topic"], p["partition"])
        for t in await kafka_admin.describe_topics()
        if t["error_code"] == 0
        for p in t["partitions"]
    }
    assert (topic, 0) in everything and set(keys) >= {k for k in everything if k[0] == topic}
    assert await _get(gateway, f"/v3/clusters/{cid}/brokers/{broker + 100}/partition-replicas") == (
        404,
        {"error_code": 404, "message": f"Broker {broker + 100} cannot be found."},
    )
    assert await _get(gateway, f"/v3/clusters/{cid}/brokers/b1/partition-replicas") == (
        404,
        NOT_FOUND,
    )


async def test_reassignments_on_an_idle_cluster(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid, _ = await _layout(kafka_admin)
    topic = await new_topic(1)
    base = f"/v3/clusters/{cid}/topics"
    for path in (
        f"{base}/-/partitions/-/reassignment",
        f"{base}/{topic}/partitions/-/reassignment",
    ):
        assert await _get(gateway, path) == (
            200,
            {
                "kind": "KafkaReassignmentList",
                "metadata": {"self": f"http://{HOST}{path}", "next": None},
                "data": [],
            },
        )
    # The topic's and the partition's own links lead here.
    _, described = await _get(gateway, f"{base}/{topic}")
    assert described["partition_reassignments"]["related"] == (
        f"http://{HOST}{base}/{topic}/partitions/-/reassignment"
    )
    assert await _get(gateway, f"{base}/{topic}/partitions/0/reassignment") == (404, NOT_FOUND)
    missing = unique_topic_name("v3r-")
    for path in (
        f"{base}/{missing}/partitions/-/reassignment",
        f"{base}/{missing}/partitions/0/reassignment",
    ):
        status, body = await _get(gateway, path)
        assert (status, body["error_code"]) == (404, 40403), path
    assert await _get(gateway, f"{base}/{topic}/partitions/zero/reassignment") == (404, NOT_FOUND)


async def test_cluster_wide_views_need_cluster_describe(
    make_gateway: MakeGatewayFn,
    kafka_admin: AIOKafkaAdminClient,
    new_topic: NewTopicFn,
    tmp_path: Any,
) -> None:
    """Anonymous callers (authentication off) with a topic rule and no cluster rule."""
    cid, broker = await _layout(kafka_admin)
    seen, hidden = await new_topic(1), await new_topic(1)
    rules = [{"principal": "*", "topic": seen, "allow": ["describe"]}]
    (tmp_path / "rules.json").write_text(json.dumps({"rules": rules}))
    client = await make_gateway({"authorization.rules.file": str(tmp_path / "rules.json")})
    base = f"/v3/clusters/{cid}"
    assert (await _get(client, f"{base}/topics/{seen}/partitions"))[0] == 200
    assert (await _get(client, f"{base}/topics/{seen}/partitions/0/offset"))[0] == 200
    assert (await _get(client, f"{base}/topics/{seen}/partitions/-/reassignment"))[0] == 200
    for path in (
        f"{base}/topics/{hidden}/partitions",
        f"{base}/topics/{hidden}/partitions/0",
        f"{base}/topics/{hidden}/partitions/0/offset",
        f"{base}/topics/{hidden}/partitions/0/replicas",
        f"{base}/topics/{hidden}/partitions/-/reassignment",
        f"{base}/topics/-/partitions/-/reassignment",
        f"{base}/brokers/{broker}/partition-replicas",
    ):
        status, body = await _get(client, path)
        assert (status, body["error_code"]) == (403, 40301), path
