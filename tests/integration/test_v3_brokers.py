"""v3 brokers and per-broker configs against a real broker.

Writes are read back with an independent admin client (``describe_configs`` of the broker),
polled, since under KRaft the controller applies a change and the broker sees it a moment
later. Every override a test sets is removed at its end.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

Client = TestClient[web.Request, web.Application]
Value = tuple[str | None, int]  # (value, Kafka's source id)

DEFAULT_SOURCE, BROKER_SOURCE = 5, 2
NOT_FOUND = {"error_code": 404, "message": "HTTP 404 Not Found"}


async def _cluster(kafka_admin: AIOKafkaAdminClient) -> tuple[str, dict[str, Any]]:
    """The cluster id and the (first) broker, as Kafka describes them."""
    described = await kafka_admin.describe_cluster()
    return str(described["cluster_id"]), described["brokers"][0]


async def _broker_configs(kafka_admin: AIOKafkaAdminClient, broker_id: int) -> dict[str, Value]:
    resource = ConfigResource(ConfigResourceType.BROKER, str(broker_id))
    [response] = await kafka_admin.describe_configs([resource], True)
    [answer] = response.to_object()["resources"]
    assert answer["error_code"] == 0, answer
    return {
        e["config_names"]: (e["config_value"], e["config_source"]) for e in answer["config_entries"]
    }


async def _until(
    kafka_admin: AIOKafkaAdminClient, broker_id: int, expected: dict[str, Value]
) -> None:
    deadline = time.monotonic() + 15
    while True:
        seen = await _broker_configs(kafka_admin, broker_id)
        if all(seen.get(k) == v for k, v in expected.items()):
            return
        if time.monotonic() > deadline:
            shown = {k: seen.get(k) for k in expected}
            raise AssertionError(f"Kafka shows {shown}, expected {expected}")
        await asyncio.sleep(0.1)


async def _error(resp: Any) -> tuple[int, Any]:
    return resp.status, await resp.json()


# --- brokers ---------------------------------------------------------------------------------


async def test_list_and_get_brokers(gateway: Client, kafka_admin: AIOKafkaAdminClient) -> None:
    cid, broker = await _cluster(kafka_admin)
    bid = broker["node_id"]
    base = f"http://lb.example/v3/clusters/{cid}/brokers"
    resp = await gateway.get(f"/v3/clusters/{cid}/brokers", headers={"Host": "lb.example"})
    assert resp.status == 200
    body = await resp.json()
    assert body["kind"] == "KafkaBrokerList"
    assert body["metadata"] == {"self": base, "next": None}
    expected = {
        "kind": "KafkaBroker",
        "metadata": {"self": f"{base}/{bid}", "resource_name": f"crn:///kafka={cid}/broker={bid}"},
        "cluster_id": cid,
        "broker_id": bid,
        "host": broker["host"],
        "port": broker["port"],
        "rack": None,  # the test broker has no broker.rack
        "configs": {"related": f"{base}/{bid}/configs"},
        "partition_replicas": {"related": f"{base}/{bid}/partition-replicas"},
    }
    assert body["data"] == [expected]

    resp = await gateway.get(f"/v3/clusters/{cid}/brokers/{bid}", headers={"Host": "lb.example"})
    assert (resp.status, await resp.json()) == (200, expected)


async def test_unknown_or_malformed_broker_is_404(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    cid, _ = await _cluster(kafka_admin)
    for broker in ("4242", "abc", "-", "1.5", str(2**31), "-2147483649"):
        for suffix in ("", "/configs", "/configs/log.cleaner.threads"):
            if broker == "-" and suffix == "/configs":
                continue  # brokers/-/configs is every broker's configs
            resp = await gateway.get(f"/v3/clusters/{cid}/brokers/{broker}{suffix}")
            assert await _error(resp) == (404, NOT_FOUND), (broker, suffix)
    resp = await gateway.put(f"/v3/clusters/{cid}/brokers/4242/configs/x", json={"value": "1"})
    assert await _error(resp) == (404, NOT_FOUND)
    resp = await gateway.post(f"/v3/clusters/{cid}/brokers/-/configs:alter", json={"data": []})
    assert await _error(resp) == (404, NOT_FOUND)
    resp = await gateway.get("/v3/clusters/not-this-one/brokers")
    assert await _error(resp) == (
        404,
        {"error_code": 404, "message": "Cluster not-this-one cannot be found."},
    )


# --- broker configs: reads -------------------------------------------------------------------


async def test_broker_configs_list_get_and_all_brokers(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    cid, broker = await _cluster(kafka_admin)
    bid = broker["node_id"]
    base = f"http://lb.example/v3/clusters/{cid}/brokers/{bid}/configs"
    host = {"Host": "lb.example"}

    resp = await gateway.get(f"/v3/clusters/{cid}/brokers/{bid}/configs", headers=host)
    assert resp.status == 200
    body = await resp.json()
    assert body["kind"] == "KafkaBrokerConfigList"
    assert body["metadata"] == {"self": base, "next": None}
    names = [c["name"] for c in body["data"]]
    assert names == sorted(names)
    assert set(names) == set(await _broker_configs(kafka_admin, bid))
    [backoff] = [c for c in body["data"] if c["name"] == "log.cleaner.backoff.ms"]
    assert backoff == {
        "kind": "KafkaBrokerConfig",
        "metadata": {
            "self": f"{base}/log.cleaner.backoff.ms",
            "resource_name": f"crn:///kafka={cid}/broker={bid}/config=log.cleaner.backoff.ms",
        },
        "cluster_id": cid,
        "broker_id": bid,
        "name": "log.cleaner.backoff.ms",
        "value": "15000",
        "is_default": True,
        "is_read_only": False,
        "is_sensitive": False,
        "source": "DEFAULT_CONFIG",
        "synonyms": [
            {"name": "log.cleaner.backoff.ms", "value": "15000", "source": "DEFAULT_CONFIG"}
        ],
    }
    # Static settings of the test broker (server.properties) say so.
    [listeners] = [c for c in body["data"] if c["name"] == "listeners"]
    assert listeners["source"] == "STATIC_BROKER_CONFIG"
    assert listeners["is_default"] is False

    resp = await gateway.get(
        f"/v3/clusters/{cid}/brokers/{bid}/configs/log.cleaner.backoff.ms", headers=host
    )
    assert (resp.status, await resp.json()) == (200, backoff)
    resp = await gateway.get(f"/v3/clusters/{cid}/brokers/{bid}/configs/no.such.config")
    assert await _error(resp) == (404, NOT_FOUND)

    resp = await gateway.get(f"/v3/clusters/{cid}/brokers/-/configs", headers=host)
    assert resp.status == 200
    every = await resp.json()
    assert every["kind"] == "KafkaBrokerConfigList"
    assert every["metadata"] == {
        "self": f"http://lb.example/v3/clusters/{cid}/brokers/-/configs",
        "next": None,
    }
    assert every["data"] == body["data"]  # one broker: the same list


# --- broker configs: writes ------------------------------------------------------------------


async def test_broker_config_put_delete_and_alter(
    gateway: Client, kafka_admin: AIOKafkaAdminClient
) -> None:
    cid, broker = await _cluster(kafka_admin)
    bid = broker["node_id"]
    configs = f"/v3/clusters/{cid}/brokers/{bid}/configs"
    backoff, connections = "log.cleaner.backoff.ms", "max.connections"
    try:
        resp = await gateway.put(f"{configs}/{backoff}", json={"value": "20000"})
        assert resp.status == 204
        await _until(kafka_admin, bid, {backoff: ("20000", BROKER_SOURCE)})
        resp = await gateway.get(f"{configs}/{backoff}")
        shown = await resp.json()
        assert (shown["value"], shown["source"], shown["is_default"]) == (
            "20000",
            "DYNAMIC_BROKER_CONFIG",
            False,
        )
        assert shown["synonyms"] == [
            {"name": backoff, "value": "20000", "source": "DYNAMIC_BROKER_CONFIG"},
            {"name": backoff, "value": "15000", "source": "DEFAULT_CONFIG"},
        ]

        # Two operations in one :alter; validate_only is accepted and ignored, as Confluent.
        resp = await gateway.post(
            f"{configs}:alter",
            json={
                "data": [
                    {"name": backoff, "operation": "DELETE"},
                    {"name": connections, "value": "1000000"},
                ],
                "validate_only": True,
            },
        )
        assert resp.status == 204
        await _until(
            kafka_admin,
            bid,
            {backoff: ("15000", DEFAULT_SOURCE), connections: ("1000000", BROKER_SOURCE)},
        )

        resp = await gateway.delete(f"{configs}/{connections}")
        assert resp.status == 204
        await _until(kafka_admin, bid, {connections: ("2147483647", DEFAULT_SOURCE)})
    finally:
        await gateway.post(
            f"{configs}:alter",
            json={
                "data": [
                    {"name": backoff, "operation": "DELETE"},
                    {"name": connections, "operation": "DELETE"},
                ]
            },
        )


async def test_broker_config_mistakes(gateway: Client, kafka_admin: AIOKafkaAdminClient) -> None:
    cid, broker = await _cluster(kafka_admin)
    bid = broker["node_id"]
    configs = f"/v3/clusters/{cid}/brokers/{bid}/configs"
    no_config = {
        "error_code": 404,
        "message": f"Config no.such cannot be found for BROKER {bid} in cluster {cid}.",
    }
    resp = await gateway.put(f"{configs}/no.such", json={"value": "1"})
    assert await _error(resp) == (404, no_config)
    assert await _error(await gateway.delete(f"{configs}/no.such")) == (404, no_config)
    resp = await gateway.post(
        f"{configs}:alter",
        json={"data": [{"name": "max.connections", "value": "5"}, {"name": "no.such"}]},
    )
    assert await _error(resp) == (404, no_config)

    # Kafka refuses a bad value and a config that cannot change while the broker runs.
    resp = await gateway.put(f"{configs}/log.cleaner.backoff.ms", json={"value": "later"})
    status, body = await _error(resp)
    assert (status, body["error_code"]) == (400, 40002)
    resp = await gateway.put(f"{configs}/node.id", json={"value": "7"})
    assert (resp.status, (await resp.json())["error_code"]) == (400, 40002)

    resp = await gateway.put(f"{configs}/max.connections")
    assert (resp.status, (await resp.json())["error_code"]) == (422, 42206)
    resp = await gateway.post(f"{configs}:alter", json={"data": [], "dry_run": True})
    assert await _error(resp) == (
        422,
        {"error_code": 422, "message": "Unrecognized field: dry_run"},
    )

    # None of it changed anything.
    seen = await _broker_configs(kafka_admin, bid)
    assert seen["max.connections"] == ("2147483647", DEFAULT_SOURCE)
    assert seen["log.cleaner.backoff.ms"] == ("15000", DEFAULT_SOURCE)
