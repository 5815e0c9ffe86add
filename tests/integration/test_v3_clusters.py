"""v3 clusters against a real broker: the id is Kafka's, links are absolute, others are 404."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness.api import MakeGatewayFn

Client = TestClient[web.Request, web.Application]


async def test_list_and_get_cluster(gateway: Client, kafka_admin: AIOKafkaAdminClient) -> None:
    expected = (await kafka_admin.describe_cluster())["cluster_id"]
    resp = await gateway.get("/v3/clusters", headers={"Host": "lb.example:8082"})
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["kind"] == "KafkaClusterList"
    assert body["metadata"] == {"self": "http://lb.example:8082/v3/clusters", "next": None}
    [cluster] = body["data"]
    assert cluster["cluster_id"] == expected
    base = f"http://lb.example:8082/v3/clusters/{expected}"
    assert cluster["metadata"] == {"self": base, "resource_name": f"crn:///kafka={expected}"}
    assert cluster["topics"] == {"related": f"{base}/topics"}
    assert cluster["controller"]["related"].startswith(f"{base}/brokers/")

    resp = await gateway.get(f"/v3/clusters/{expected}", headers={"Host": "lb.example:8082"})
    assert resp.status == 200
    assert await resp.json() == cluster


async def test_unknown_cluster_is_404(gateway: Client) -> None:
    resp = await gateway.get("/v3/clusters/not-this-one")
    assert resp.status == 404
    assert await resp.json() == {"error_code": 404, "message": "HTTP 404 Not Found"}


async def test_advertised_listener_names_the_links(make_gateway: MakeGatewayFn) -> None:
    client = await make_gateway({"advertised.listeners": "http://public.example:443"})
    body = await (await client.get("/v3/clusters")).json()
    assert body["metadata"]["self"] == "http://public.example:443/v3/clusters"
