"""v3 topic configs and cluster-wide broker defaults against a real broker.

Every write is read back with an independent admin client (``describe_configs``), and
polled: under KRaft a change is applied by the controller and reaches the broker's metadata
a moment later.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import EllipsisType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.harness.api import MakeGatewayFn, NewTopicFn

Client = TestClient[web.Request, web.Application]
Value = tuple[str | None, int]  # (value, Kafka's source id)
Expected = tuple[str | EllipsisType | None, int]

DEFAULT_SOURCE, TOPIC_SOURCE, CLUSTER_DEFAULT_SOURCE = 5, 1, 3
WEEK_MS = "604800000"  # Kafka's retention.ms default


async def _cluster_id(kafka_admin: AIOKafkaAdminClient) -> str:
    return str((await kafka_admin.describe_cluster())["cluster_id"])


async def _kafka_configs(
    kafka_admin: AIOKafkaAdminClient, kind: ConfigResourceType, name: str
) -> dict[str, Value]:
    """Every config of the resource as Kafka itself describes it: name -> (value, source)."""
    [response] = await kafka_admin.describe_configs([ConfigResource(kind, name)], True)
    [resource] = response.to_object()["resources"]
    assert resource["error_code"] == 0, resource
    return {
        e["config_names"]: (e["config_value"], e["config_source"])
        for e in resource["config_entries"]
    }


def _shows(seen: Value | None, expected: Expected) -> bool:
    if seen is None:
        return False
    value, source = expected
    return seen[1] == source and (value is ... or seen[0] == value)


async def _until(
    read: Callable[[], Awaitable[dict[str, Value]]], expected: dict[str, Expected]
) -> dict[str, Value]:
    """Poll ``read`` until it shows every expected (value, source), ``...`` matching any
    value; fail with the last seen."""
    deadline = time.monotonic() + 15
    while True:
        seen = await read()
        if all(_shows(seen.get(k), v) for k, v in expected.items()):
            return seen
        if time.monotonic() > deadline:
            shown = {k: seen.get(k) for k in expected}
            raise AssertionError(f"Kafka shows {shown}, expected {expected}")
        await asyncio.sleep(0.1)


def _topic_reader(
    kafka_admin: AIOKafkaAdminClient, topic: str
) -> Callable[[], Awaitable[dict[str, Value]]]:
    return lambda: _kafka_configs(kafka_admin, ConfigResourceType.TOPIC, topic)


async def _error(resp: Any) -> tuple[int, dict[str, Any]]:
    return resp.status, await resp.json()


# --- topic configs: reads --------------------------------------------------------------------


async def test_list_and_get_topic_configs(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    topic = await new_topic(configs={"retention.ms": "3600000"})
    base = f"http://lb.example/v3/clusters/{cid}/topics/{topic}/configs"
    host = {"Host": "lb.example"}

    resp = await gateway.get(f"/v3/clusters/{cid}/topics/{topic}/configs", headers=host)
    assert resp.status == 200
    body = await resp.json()
    assert body["kind"] == "KafkaTopicConfigList"
    assert body["metadata"] == {"self": base, "next": None}
    names = [c["name"] for c in body["data"]]
    assert names == sorted(names)
    assert set(names) == set(await _topic_reader(kafka_admin, topic)())
    by_name = {c["name"]: c for c in body["data"]}
    assert by_name["retention.ms"] == {
        "kind": "KafkaTopicConfig",
        "metadata": {
            "self": f"{base}/retention.ms",
            "resource_name": f"crn:///kafka={cid}/topic={topic}/config=retention.ms",
        },
        "cluster_id": cid,
        "topic_name": topic,
        "name": "retention.ms",
        "value": "3600000",
        "is_default": False,
        "is_read_only": False,
        "is_sensitive": False,
        "source": "DYNAMIC_TOPIC_CONFIG",
        "synonyms": [
            {"name": "retention.ms", "value": "3600000", "source": "DYNAMIC_TOPIC_CONFIG"}
        ],
    }
    cleanup = by_name["cleanup.policy"]
    assert (cleanup["value"], cleanup["is_default"], cleanup["source"]) == (
        "delete",
        True,
        "DEFAULT_CONFIG",
    )
    assert {"name": "log.cleanup.policy", "value": "delete", "source": "DEFAULT_CONFIG"} in (
        cleanup["synonyms"]
    )

    resp = await gateway.get(
        f"/v3/clusters/{cid}/topics/{topic}/configs/retention.ms", headers=host
    )
    assert resp.status == 200
    assert await resp.json() == by_name["retention.ms"]

    resp = await gateway.get(f"/v3/clusters/{cid}/topics/{topic}/configs/no.such.config")
    assert await _error(resp) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})


async def test_all_topics_configs_lists_each_topic_sorted(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    first = await new_topic(configs={"cleanup.policy": "compact"})
    second = await new_topic()
    resp = await gateway.get(f"/v3/clusters/{cid}/topics/-/configs")
    assert resp.status == 200
    body = await resp.json()
    assert body["kind"] == "KafkaTopicConfigList"
    assert body["metadata"]["self"].endswith(f"/v3/clusters/{cid}/topics/-/configs")
    topics_in_order = list(dict.fromkeys(c["topic_name"] for c in body["data"]))
    assert topics_in_order == sorted(topics_in_order)
    assert {first, second} <= set(topics_in_order)
    assert not any(t.startswith("__") for t in topics_in_order)  # internal topics left out
    mine = [c for c in body["data"] if c["topic_name"] == first]
    assert [c["name"] for c in mine] == sorted(c["name"] for c in mine)
    assert len(mine) == len(await _topic_reader(kafka_admin, first)())
    [policy] = [c for c in mine if c["name"] == "cleanup.policy"]
    assert (policy["value"], policy["source"]) == ("compact", "DYNAMIC_TOPIC_CONFIG")
    assert policy["metadata"]["self"].endswith(f"/topics/{first}/configs/cleanup.policy")


# --- topic configs: writes -------------------------------------------------------------------


async def test_put_changes_one_config_and_keeps_the_others(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    topic = await new_topic(configs={"retention.ms": "3600000"})
    read = _topic_reader(kafka_admin, topic)

    resp = await gateway.put(
        f"/v3/clusters/{cid}/topics/{topic}/configs/cleanup.policy", json={"value": "compact"}
    )
    assert resp.status == 204
    assert await resp.read() == b""
    # Incremental: the earlier override of retention.ms survives the PUT of another config.
    await _until(
        read,
        {"cleanup.policy": ("compact", TOPIC_SOURCE), "retention.ms": ("3600000", TOPIC_SOURCE)},
    )

    resp = await gateway.delete(f"/v3/clusters/{cid}/topics/{topic}/configs/retention.ms")
    assert resp.status == 204
    await _until(
        read,
        {"retention.ms": (WEEK_MS, DEFAULT_SOURCE), "cleanup.policy": ("compact", TOPIC_SOURCE)},
    )
    # DELETE of a config that is already at its default is still fine.
    resp = await gateway.delete(f"/v3/clusters/{cid}/topics/{topic}/configs/retention.ms")
    assert resp.status == 204


async def test_alter_applies_every_operation_and_validate_only_changes_nothing(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    topic = await new_topic(configs={"retention.ms": "3600000"})
    read = _topic_reader(kafka_admin, topic)
    url = f"/v3/clusters/{cid}/topics/{topic}/configs:alter"

    dry = {
        "data": [
            {"name": "cleanup.policy", "value": "compact"},
            {"name": "retention.ms", "operation": "DELETE"},
        ],
        "validate_only": True,
    }
    resp = await gateway.post(url, json=dry)
    assert resp.status == 204
    # A dry run with a bad value is still refused: Kafka validated it.
    bad = {"data": [{"name": "retention.ms", "value": "soon"}], "validate_only": True}
    resp = await gateway.post(url, json=bad)
    assert resp.status == 400
    assert (await resp.json())["error_code"] == 40002

    resp = await gateway.post(url, json={**dry, "validate_only": False})
    assert resp.status == 204
    seen = await _until(
        read,
        {"cleanup.policy": ("compact", TOPIC_SOURCE), "retention.ms": (WEEK_MS, DEFAULT_SOURCE)},
    )
    assert seen["cleanup.policy"] == ("compact", TOPIC_SOURCE)


async def test_validate_only_leaves_the_topic_as_it_was(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    topic = await new_topic(configs={"retention.ms": "3600000"})
    read = _topic_reader(kafka_admin, topic)
    before = await read()
    resp = await gateway.post(
        f"/v3/clusters/{cid}/topics/{topic}/configs:alter",
        json={
            "data": [
                {"name": "retention.ms", "value": "1000"},
                {"name": "segment.ms", "value": "60000"},
            ],
            "validate_only": True,
        },
    )
    assert resp.status == 204
    # A real change made afterwards is visible, so the dry run had its chance to show too.
    resp = await gateway.put(
        f"/v3/clusters/{cid}/topics/{topic}/configs/cleanup.policy", json={"value": "compact"}
    )
    assert resp.status == 204
    after = await _until(read, {"cleanup.policy": ("compact", TOPIC_SOURCE)})
    assert after["retention.ms"] == before["retention.ms"] == ("3600000", TOPIC_SOURCE)
    assert after["segment.ms"] == before["segment.ms"]


async def test_alter_of_several_topics(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    a, b = await new_topic(), await new_topic()
    url = f"/v3/clusters/{cid}/topics/-/configs:alter"

    resp = await gateway.post(
        url,
        json={
            "data": [
                {"topic_name": a, "configs": [{"name": "cleanup.policy", "value": "compact"}]},
                {"topic_name": b, "configs": [{"name": "retention.ms", "value": "7200000"}]},
            ]
        },
    )
    assert resp.status == 204
    await _until(_topic_reader(kafka_admin, a), {"cleanup.policy": ("compact", TOPIC_SOURCE)})
    await _until(_topic_reader(kafka_admin, b), {"retention.ms": ("7200000", TOPIC_SOURCE)})

    # Kafka refuses one topic's change: 207 names it; the other topic's change is applied.
    resp = await gateway.post(
        url,
        json={
            "data": [
                {"topic_name": a, "configs": [{"name": "retention.ms", "value": "3600000"}]},
                {"topic_name": b, "configs": [{"name": "cleanup.policy", "value": "bogus"}]},
            ]
        },
    )
    assert resp.status == 207
    [failure] = (await resp.json())["failures"]
    assert failure["topic_name"] == b
    assert failure["error_code"] == 40002
    assert "bogus" in failure["message"]
    await _until(_topic_reader(kafka_admin, a), {"retention.ms": ("3600000", TOPIC_SOURCE)})

    # An unknown topic or config name: 404 for the whole call, nothing applied.
    for data, expected in [
        (
            [
                {
                    "topic_name": "no-such-topic-v3c",
                    "configs": [{"name": "retention.ms", "value": "1"}],
                }
            ],
            40403,
        ),
        ([{"topic_name": a, "configs": [{"name": "no.such", "value": "1"}]}], 404),
    ]:
        resp = await gateway.post(
            url,
            json={
                "data": [
                    {"topic_name": b, "configs": [{"name": "retention.ms", "value": "1000"}]},
                    *data,
                ]
            },
        )
        assert resp.status == 404
        assert (await resp.json())["error_code"] == expected
    seen = await _topic_reader(kafka_admin, b)()
    assert seen["retention.ms"] == ("7200000", TOPIC_SOURCE)


# --- topic configs: mistakes -----------------------------------------------------------------


async def test_topic_config_mistakes(
    gateway: Client, kafka_admin: AIOKafkaAdminClient, new_topic: NewTopicFn
) -> None:
    cid = await _cluster_id(kafka_admin)
    topic = await new_topic()
    configs = f"/v3/clusters/{cid}/topics/{topic}/configs"
    missing = f"/v3/clusters/{cid}/topics/no-such-topic-v3c/configs"
    unknown_topic = (
        404,
        {"error_code": 40403, "message": "This server does not host this topic-partition."},
    )

    assert await _error(await gateway.get(missing)) == unknown_topic
    assert await _error(await gateway.get(f"{missing}/retention.ms")) == unknown_topic
    put = await gateway.put(f"{missing}/retention.ms", json={"value": "1"})
    assert await _error(put) == unknown_topic
    assert await _error(await gateway.delete(f"{missing}/retention.ms")) == unknown_topic
    alter = await gateway.post(f"{missing}:alter", json={"data": []})
    assert await _error(alter) == unknown_topic

    no_config = {
        "error_code": 404,
        "message": f"Config no.such cannot be found for TOPIC {topic} in cluster {cid}.",
    }
    assert await _error(await gateway.put(f"{configs}/no.such", json={"value": "1"})) == (
        404,
        no_config,
    )
    assert await _error(await gateway.delete(f"{configs}/no.such")) == (404, no_config)
    resp = await gateway.post(
        f"{configs}:alter",
        json={"data": [{"name": "retention.ms", "value": "1"}, {"name": "no.such", "value": "1"}]},
    )
    assert await _error(resp) == (404, no_config)

    status, body = await _error(
        await gateway.put(f"{configs}/retention.ms", json={"value": "soon"})
    )
    assert (status, body["error_code"]) == (400, 40002)
    assert "soon" in body["message"]
    resp = await gateway.post(
        f"{configs}:alter", json={"data": [{"name": "cleanup.policy", "value": "x"}]}
    )
    assert (resp.status, (await resp.json())["error_code"]) == (400, 40002)

    resp = await gateway.put(f"{configs}/retention.ms")
    assert await _error(resp) == (
        422,
        {"error_code": 42206, "message": "Payload error. Null input provided. Data is required."},
    )
    resp = await gateway.post(f"{configs}:alter")
    assert (resp.status, (await resp.json())["error_code"]) == (422, 42206)
    resp = await gateway.put(f"{configs}/retention.ms", json={"value": "1", "valu": "2"})
    assert await _error(resp) == (422, {"error_code": 422, "message": "Unrecognized field: valu"})
    resp = await gateway.post(
        f"{configs}:alter", json={"data": [{"name": "a", "operation": "RESET"}]}
    )
    assert (resp.status, (await resp.json())["error_code"]) == (400, 400)
    resp = await gateway.put(
        f"{configs}/retention.ms", data="{", headers={"Content-Type": "application/json"}
    )
    assert (resp.status, (await resp.json())["error_code"]) == (400, 400)
    resp = await gateway.put(
        f"{configs}/retention.ms", data="value=1", headers={"Content-Type": "text/plain"}
    )
    assert await _error(resp) == (
        415,
        {"error_code": 415, "message": "HTTP 415 Unsupported Media Type"},
    )

    resp = await gateway.get(f"/v3/clusters/not-this-one/topics/{topic}/configs")
    assert await _error(resp) == (
        404,
        {"error_code": 404, "message": "Cluster not-this-one cannot be found."},
    )
    # Nothing of the above changed the topic.
    assert (await _topic_reader(kafka_admin, topic)())["retention.ms"] == (WEEK_MS, DEFAULT_SOURCE)


# --- cluster-wide broker defaults ------------------------------------------------------------


async def _broker_reader(
    kafka_admin: AIOKafkaAdminClient,
) -> Callable[[], Awaitable[dict[str, Value]]]:
    broker = (await kafka_admin.describe_cluster())["brokers"][0]["node_id"]
    return lambda: _kafka_configs(kafka_admin, ConfigResourceType.BROKER, str(broker))


async def test_cluster_wide_broker_defaults(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    cid = await _cluster_id(kafka_admin)
    base = f"/v3/clusters/{cid}/broker-configs"
    read = await _broker_reader(kafka_admin)
    threads, io_limit = "log.cleaner.threads", "log.cleaner.io.max.bytes.per.second"
    try:
        resp = await gateway.get(f"{base}/{threads}")
        assert await _error(resp) == (404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        resp = await gateway.delete(f"{base}/{threads}")  # nothing set: nothing to delete
        assert resp.status == 404

        # PUT creates the default (no existence check); every broker now inherits it.
        resp = await gateway.put(f"{base}/{threads}", json={"value": "2"})
        assert resp.status == 204
        await _until(read, {threads: ("2", CLUSTER_DEFAULT_SOURCE)})

        resp = await gateway.get(base, headers={"Host": "lb.example"})
        assert resp.status == 200
        body = await resp.json()
        assert body["kind"] == "KafkaClusterConfigList"
        assert body["metadata"] == {
            "self": f"http://lb.example/v3/clusters/{cid}/broker-configs",
            "next": None,
        }
        names = [c["name"] for c in body["data"]]
        assert names == sorted(names)
        assert all(c["source"] == "DYNAMIC_DEFAULT_BROKER_CONFIG" for c in body["data"])
        [listed] = [c for c in body["data"] if c["name"] == threads]
        assert listed == {
            "kind": "KafkaClusterConfig",
            "metadata": {
                "self": f"http://lb.example/v3/clusters/{cid}/broker-configs/{threads}",
                "resource_name": f"crn:///kafka={cid}/broker-config={threads}",
            },
            "cluster_id": cid,
            "config_type": "BROKER",
            "name": threads,
            "value": "2",
            "is_default": False,
            "is_read_only": False,
            "is_sensitive": False,
            "source": "DYNAMIC_DEFAULT_BROKER_CONFIG",
            "synonyms": [
                {"name": threads, "value": "2", "source": "DYNAMIC_DEFAULT_BROKER_CONFIG"}
            ],
        }
        resp = await gateway.get(f"{base}/{threads}", headers={"Host": "lb.example"})
        assert (resp.status, await resp.json()) == (200, listed)

        # :alter with two operations applies both (validate_only is ignored here).
        resp = await gateway.post(
            f"{base}:alter",
            json={
                "data": [
                    {"name": threads, "operation": "DELETE"},
                    {"name": io_limit, "value": "5000000.0"},
                ],
                "validate_only": True,
            },
        )
        assert resp.status == 204
        await _until(
            read, {threads: ("1", DEFAULT_SOURCE), io_limit: ("5000000.0", CLUSTER_DEFAULT_SOURCE)}
        )

        resp = await gateway.delete(f"{base}/{io_limit}")
        assert resp.status == 204
        await _until(read, {io_limit: (..., DEFAULT_SOURCE)})

        # Kafka refuses what it cannot set: a bad value, a config that is not dynamic.
        resp = await gateway.put(f"{base}/{threads}", json={"value": "many"})
        assert (resp.status, (await resp.json())["error_code"]) == (400, 40002)
        resp = await gateway.put(f"{base}/process.roles", json={"value": "broker"})
        assert (resp.status, (await resp.json())["error_code"]) == (400, 40002)
        resp = await gateway.put(f"{base}/{threads}", json={"value": "2", "x": 1})
        assert resp.status == 422
    finally:
        await gateway.post(
            f"{base}:alter",
            json={
                "data": [
                    {"name": threads, "operation": "DELETE"},
                    {"name": io_limit, "operation": "DELETE"},
                ]
            },
        )


# --- authorisation ---------------------------------------------------------------------------


async def test_rules_decide_who_reads_and_changes_configs(
    make_gateway: MakeGatewayFn,
    kafka_admin: AIOKafkaAdminClient,
    new_topic: NewTopicFn,
    tmp_path: Path,
) -> None:
    cid = await _cluster_id(kafka_admin)
    rid = "v3c" + uuid.uuid4().hex[:8]
    seen = await new_topic(name=f"{rid}-seen")
    hidden = await new_topic(name=f"{rid}-hidden")
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps({"rules": [{"principal": "*", "topic": f"{rid}-seen", "allow": ["describe"]}]})
    )
    client = await make_gateway({"authorization.rules.file": str(rules)})
    topics = f"/v3/clusters/{cid}/topics"

    resp = await client.get(f"{topics}/{seen}/configs")
    assert resp.status == 200
    for resp in (
        await client.get(f"{topics}/{hidden}/configs"),
        await client.get(f"{topics}/{hidden}/configs/retention.ms"),
        await client.put(f"{topics}/{seen}/configs/retention.ms", json={"value": "1000"}),
        await client.delete(f"{topics}/{seen}/configs/retention.ms"),
        await client.post(f"{topics}/{seen}/configs:alter", json={"data": []}),
        await client.post(
            f"{topics}/-/configs:alter", json={"data": [{"topic_name": hidden, "configs": []}]}
        ),
        await client.get(f"/v3/clusters/{cid}/broker-configs"),
        await client.put(f"/v3/clusters/{cid}/broker-configs/log.cleaner.threads", json={}),
        await client.get(f"/v3/clusters/{cid}/brokers/-/configs"),
        await client.get(f"/v3/clusters/{cid}/brokers"),
    ):
        assert resp.status == 403, resp.url
        assert (await resp.json())["error_code"] == 40301

    resp = await client.get(f"{topics}/-/configs")
    assert resp.status == 200
    listed = {c["topic_name"] for c in (await resp.json())["data"]}
    assert listed == {seen}
