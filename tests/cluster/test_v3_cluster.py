"""kafka-mcp's own v3 client against three real replicas behind HAProxy.

kafka-mcp (PyPI ``kafka-mcp==1.0.1``, ``kafka_mcp.api.api_client_kafka.KafkaApi``) is a real
client of Confluent's v3 API, and the one the wire reference quotes: it caches the cluster id
from ``GET /v3/clusters``, treats any status >= 400 as an error, an empty body as success, and
parses any JSON body, including the one-object answer of a single-record produce. Its class is
driven here unchanged, against the load balancer, so consecutive calls land on different
replicas (round robin): the cluster id one replica reported must be accepted by the others,
and every ``self``/``related`` link must name the load balancer (``advertised.listeners``),
never the replica that happened to answer.

Every outcome is checked with independent aiokafka clients: the created topic and its configs
as the broker describes them, the produced record read back with a plain consumer, the lags
against the group's committed offsets and the partitions' end offsets.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from kafka_mcp.api.api_client_kafka import KafkaApi

from tests.harness.api import MakeClusterFn, ReadBackFn
from tests.harness.topics import unique_topic_name, wait_topic_ready

pytestmark = pytest.mark.asyncio


def links_in(value: Any) -> list[str]:
    """Every ``metadata.self`` and ``related`` URL anywhere in a v3 body."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("self", "related") and isinstance(item, str):
                found.append(item)
            else:
                found.extend(links_in(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(links_in(item))
    return found


class Mcp:
    """kafka-mcp's KafkaApi, called off the event loop (it is a blocking client), with every
    response's links collected for the load-balancer check."""

    def __init__(self, base_url: str) -> None:
        self.api = KafkaApi(base_url)
        self.links: list[str] = []

    async def __call__(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = await asyncio.to_thread(method, *args, **kwargs)
        self.links.extend(links_in(result))
        return result

    async def fails(self, method: Callable[..., Any], *args: Any) -> str:
        """kafka-mcp raises ``Exception("API error: <status> - <body>")`` on any >= 400."""
        with pytest.raises(Exception, match=r"^API error: ") as caught:
            await asyncio.to_thread(method, *args)
        return str(caught.value)


async def topic_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """The topic's configs as the broker describes them."""
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [resource] = response.to_object()["resources"]
    assert resource["error_code"] == 0, resource
    return {c["config_names"]: c["config_value"] for c in resource["config_entries"]}


async def eventually(
    check: Callable[[], Awaitable[bool]],
    what: str,
    timeout: float = 30,  # noqa: ASYNC109 (a deadline for a whole poll loop)
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.2)


async def test_kafka_mcp_client_through_three_replicas(
    make_cluster: MakeClusterFn,
    kafka_admin: AIOKafkaAdminClient,
    kafka_bootstrap: str,
    read_back: ReadBackFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = await make_cluster(n=3)
    # What kafka-mcp's MCP server would read; its client class takes the URL as an argument
    # and honours KAFKA_CLUSTER_ID when set, which must not leak in from the environment.
    monkeypatch.setenv("KAFKA_REST_URL", cluster.lb_url)
    monkeypatch.delenv("KAFKA_CLUSTER_ID", raising=False)
    mcp = Mcp(cluster.lb_url)
    api = mcp.api
    described = await kafka_admin.describe_cluster()

    # Clusters: the id kafka-mcp caches is Kafka's.
    assert await asyncio.to_thread(api.cluster_id) == described["cluster_id"]
    clusters = await mcp(api.list_clusters)
    assert [c["cluster_id"] for c in clusters["data"]] == [described["cluster_id"]]
    cluster_body = await mcp(api.get_cluster)
    assert cluster_body["kind"] == "KafkaCluster"
    assert cluster_body["cluster_id"] == described["cluster_id"]

    # Brokers, and one broker's configs as the broker was started with them.
    brokers = await mcp(api.list_brokers)
    broker_ids = sorted(b["broker_id"] for b in brokers["data"])
    assert broker_ids == sorted(b["node_id"] for b in described["brokers"])
    broker = await mcp(api.get_broker, broker_ids[0])
    assert broker["broker_id"] == broker_ids[0]
    broker_configs = await mcp(api.list_broker_configs, broker_ids[0])
    by_name = {c["name"]: c for c in broker_configs["data"]}
    assert by_name["auto.create.topics.enable"]["value"] == "false"  # server.properties.in
    assert by_name["num.partitions"]["value"] == "1"

    # Create a topic: it exists for the broker, with the partitions and the config asked for.
    topic = unique_topic_name("mcp-")
    created = await mcp(
        api.create_topic, topic, partitions_count=3, configs={"cleanup.policy": "compact"}
    )
    assert created["topic_name"] == topic and created["partitions_count"] == 3, created
    await wait_topic_ready(kafka_admin, topic, 3)
    assert (await topic_configs(kafka_admin, topic))["cleanup.policy"] == "compact"
    try:
        listed = await mcp(api.list_topics)
        assert topic in [t["topic_name"] for t in listed["data"]]
        got = await mcp(api.get_topic, topic)
        assert (got["partitions_count"], got["replication_factor"]) == (3, 1), got
        partitions = await mcp(api.list_partitions, topic)
        assert sorted(p["partition_id"] for p in partitions["data"]) == [0, 1, 2]
        partition = await mcp(api.get_partition, topic, 2)
        assert partition["partition_id"] == 2 and partition["leader"] is not None

        # Topic configs: read, one changed (PUT), two changed at once (configs:alter).
        configs = await mcp(api.list_topic_configs, topic)
        assert {c["name"]: c["value"] for c in configs["data"]}["cleanup.policy"] == "compact"
        assert await mcp(api.update_topic_config, topic, "retention.ms", "7654321") == {
            "status": "success"
        }
        assert (await topic_configs(kafka_admin, topic))["retention.ms"] == "7654321"
        changes = {"cleanup.policy": "delete", "max.message.bytes": "200000"}
        assert await mcp(api.update_topic_configs, topic, changes) == {"status": "success"}
        after = await topic_configs(kafka_admin, topic)
        assert {k: after[k] for k in changes} == changes
        assert after["retention.ms"] == "7654321"  # incremental: the others are kept

        await _produce_and_lag(mcp, api, topic, kafka_admin, kafka_bootstrap, read_back)

        # Delete: gone for the broker, and 404 for kafka-mcp afterwards.
        assert await mcp(api.delete_topic, topic) == {"status": "success"}

        async def gone() -> bool:
            return topic not in await kafka_admin.list_topics()

        await eventually(gone, f"topic {topic} deleted")
        assert (await mcp.fails(api.get_topic, topic)).startswith("API error: 404")
    finally:
        if topic in await kafka_admin.list_topics():
            await kafka_admin.delete_topics([topic])

    # Every link any replica wrote names the load balancer, not itself.
    assert len(mcp.links) > 50, mcp.links
    stray = [link for link in mcp.links if not link.startswith(cluster.lb_url + "/v3/clusters")]
    assert stray == [], stray
    # ...and the calls really were spread: every replica's access log shows v3 requests.
    served = [r.log_path.read_text().count(" /v3/clusters") for r in cluster.replicas]
    assert all(n > 0 for n in served), served


async def _produce_and_lag(
    mcp: Mcp,
    api: KafkaApi,
    topic: str,
    kafka_admin: AIOKafkaAdminClient,
    kafka_bootstrap: str,
    read_back: ReadBackFn,
) -> None:
    # Produce one record with a key, a header and a partition: read back exactly so.
    header = base64.b64encode(b"trace-1").decode()
    result = await mcp(
        api.produce_record,
        topic,
        {"n": 1},
        key="k1",
        key_format="STRING",
        partition_id=1,
        headers=[{"name": "h", "value": header}],
    )
    assert result["error_code"] == 200, result
    assert (result["partition_id"], result["offset"]) == (1, 0), result
    [record] = await read_back(topic, 1)
    assert (record.partition, record.offset) == (1, 0)
    assert (record.key, record.value) == (b"k1", b'{"n":1}')
    assert list(record.headers) == [("h", b"trace-1")]
    # Two more on partition 1 and one on 0, so that the lags below differ per partition.
    for partition in (1, 1, 0):
        done = await mcp(
            api.produce_record, topic, "x", value_format="STRING", partition_id=partition
        )
        assert done["error_code"] == 200, done

    # A live member of a fresh group, which has committed offset 1 on partition 1 and 0 on 0.
    group = "mcp-g-" + uuid.uuid4().hex[:8]
    member = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        client_id="mcp-member",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await member.start()
    try:
        deadline = time.monotonic() + 30
        while not member.assignment():
            assert time.monotonic() < deadline, "the member got no assignment"
            await member.getmany(timeout_ms=200)
        await member.commit({TopicPartition(topic, 1): 1, TopicPartition(topic, 0): 0})
        [group_description] = await kafka_admin.describe_consumer_groups([group])
        [member_info] = group_description.to_object()["groups"][0]["members"]
        member_id = member_info["member_id"]

        # What the lags must be, from the broker: end offsets minus committed offsets.
        committed = {
            tp.partition: meta.offset
            for tp, meta in (await kafka_admin.list_consumer_group_offsets(group)).items()
        }
        ends = await member.end_offsets([TopicPartition(topic, p) for p in committed])
        expected = {tp.partition: ends[tp] - committed[tp.partition] for tp in ends}
        assert expected == {0: 1, 1: 2}  # not vacuous: two partitions, different lags

        groups = await mcp(api.list_consumer_groups)
        assert group in [g["consumer_group_id"] for g in groups["data"]]
        described = await mcp(api.get_consumer_group, group)
        assert described["consumer_group_id"] == group and described["state"] == "STABLE"
        consumers = await mcp(api.list_consumers, group)
        assert [(c["consumer_id"], c["client_id"]) for c in consumers["data"]] == [
            (member_id, "mcp-member")
        ]

        lags = await mcp(api.get_group_lags, group)
        rows = {row["partition_id"]: row for row in lags["data"]}
        assert {p: row["lag"] for p, row in rows.items()} == expected
        assert {p: row["current_offset"] for p, row in rows.items()} == committed
        assert {p: row["log_end_offset"] for p, row in rows.items()} == {
            tp.partition: offset for tp, offset in ends.items()
        }
        assert [row["lag"] for row in lags["data"]] == [2, 1]  # lag descending
        assert all(row["consumer_id"] == member_id for row in lags["data"])

        summary = await mcp(api.get_group_lag_summary, group)
        assert summary["total_lag"] == sum(expected.values())
        assert (summary["max_lag"], summary["max_lag_partition_id"]) == (2, 1)
        assert summary["max_lag_topic_name"] == topic
        assert summary["max_lag_consumer_id"] == member_id
    finally:
        await member.stop()
