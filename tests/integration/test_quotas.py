"""Per-principal quotas on a real gateway: 429 with Retry-After and a Confluent body under a
quota, nothing charged on probe paths, and recovery once the window has passed."""

from __future__ import annotations

import asyncio

from gateway.security.quotas import PRODUCE_BYTES_CODE, REQUEST_RATE_CODE, TokenBuckets
from tests.support.v2 import BINARY


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate_and_allows_debt():
    clock = Clock()
    buckets = TokenBuckets(10, clock=clock)
    for _ in range(10):
        assert buckets.wait_s("a", 1) == 0
        buckets.take("a", 1)
    assert buckets.wait_s("a", 1) == 0.1  # one token comes back every 0.1 s
    assert buckets.wait_s("b", 1) == 0  # another principal has its own bucket
    clock.now += 0.5
    assert buckets.wait_s("a", 1) == 0
    buckets.take("a", 25)  # a large request passes once and leaves debt
    assert buckets.wait_s("a", 1e-9) > 2


def test_bucket_memory_is_bounded_and_keeps_the_limited():
    clock = Clock()
    buckets = TokenBuckets(5, clock=clock, capacity=3)
    buckets.take("limited", 5)
    for name in ("x", "y", "z", "w"):
        buckets.wait_s(name, 1)
    assert buckets.wait_s("limited", 1) > 0  # evicting idle (full) buckets kept this one


async def test_request_rate_quota_answers_429_then_recovers(make_gateway):
    gateway = await make_gateway({"quota.requests.per.second": "5"})
    statuses = []
    refused = None
    for _ in range(12):
        async with gateway.get("/topics") as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                refused = (await resp.json(), resp.headers.get("Retry-After"))
    assert statuses[:5] == [200] * 5  # the burst is one second's worth
    assert 429 in statuses
    assert refused is not None
    body, retry_after = refused
    assert body["error_code"] == REQUEST_RATE_CODE and "quota" in body["message"].lower()
    assert retry_after is not None and int(retry_after) >= 1
    # Probes and scrapes are never charged nor refused.
    for path in ("/healthz", "/readyz", "/metrics"):
        async with gateway.get(path) as resp:
            assert resp.status != 429, path
    await asyncio.sleep(int(retry_after))
    async with gateway.get("/topics") as resp:
        assert resp.status == 200


async def test_produce_byte_quota_answers_429_then_recovers(make_gateway, new_topic):
    topic = await new_topic()
    gateway = await make_gateway({"quota.produce.bytes.per.second": "2000"})
    body = {"records": [{"value": "eA" * 400}]}  # ~820 bytes of JSON

    async def produce() -> tuple[int, dict, str | None]:
        async with gateway.post(
            f"/topics/{topic}", json=body, headers={"Content-Type": BINARY}
        ) as resp:
            return resp.status, await resp.json(), resp.headers.get("Retry-After")

    results = [await produce() for _ in range(5)]
    statuses = [r[0] for r in results]
    assert statuses[:2] == [200, 200] and 429 in statuses, statuses
    status, error, retry_after = next(r for r in results if r[0] == 429)
    assert error["error_code"] == PRODUCE_BYTES_CODE
    assert retry_after is not None and int(retry_after) >= 1
    # Other requests of the principal are not limited by its produce bytes.
    async with gateway.get("/topics") as resp:
        assert resp.status == 200
    await asyncio.sleep(int(retry_after))
    status, ok, _ = await produce()
    assert status == 200 and ok["offsets"][0]["error_code"] is None
