"""v3 topic admin leaves protected topics alone and refuses partition counts that hurt Kafka.

Kafka's ``__*`` topics and the schema registry's topic are protected for produce and consume
(gateway/topics.py); deleting one, growing it or changing its configs through v3 would break
the cluster or the registry just as surely, so those are 403/40301 too, before Kafka is asked.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness.api import NewTopicFn

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}


async def _cid(gateway: Client) -> str:
    body = await (await gateway.get("/v3/clusters")).json()
    return str(body["data"][0]["cluster_id"])


async def test_protected_topics_are_refused_for_admin_writes(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    base = f"/v3/clusters/{await _cid(gateway)}/topics"
    before = {t for t in await kafka_admin.list_topics()}
    calls = [
        ("POST", base, {"topic_name": "__not_allowed"}),
        ("DELETE", f"{base}/__consumer_offsets", None),
        ("PATCH", f"{base}/__consumer_offsets", {"partitions_count": 99}),
        ("PUT", f"{base}/_schemas/configs/cleanup.policy", {"value": "delete"}),
        ("DELETE", f"{base}/__consumer_offsets/configs/cleanup.policy", None),
        (
            "POST",
            f"{base}/__consumer_offsets/configs:alter",
            {"data": [{"name": "cleanup.policy", "value": "delete"}]},
        ),
    ]
    for method, path, body in calls:
        resp = await gateway.request(method, path, json=body, headers=JSON if body else None)
        answer = await resp.json()
        assert resp.status == 403, (method, path, answer)
        assert answer["error_code"] == 40301, answer
    after = {t for t in await kafka_admin.list_topics()}
    assert "__not_allowed" not in after
    assert before <= after


async def test_absurd_partition_counts_are_refused_before_kafka(
    gateway: Client, new_topic: NewTopicFn, kafka_admin: AIOKafkaAdminClient
) -> None:
    topic = await new_topic(partitions=1)
    base = f"/v3/clusters/{await _cid(gateway)}/topics"
    resp = await gateway.patch(
        f"{base}/{topic}", json={"partitions_count": 1_586_057}, headers=JSON
    )
    assert (resp.status, (await resp.json())["error_code"]) == (400, 40002)
    resp = await gateway.post(
        base, json={"topic_name": topic + "-big", "partitions_count": 10_001}, headers=JSON
    )
    assert (resp.status, (await resp.json())["error_code"]) == (400, 40002)
    assert topic + "-big" not in await kafka_admin.list_topics()
    [described] = await kafka_admin.describe_topics([topic])
    assert len(described["partitions"]) == 1
