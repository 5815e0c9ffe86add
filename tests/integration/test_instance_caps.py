"""Caps on consumer instances and on requests waiting for one: clear answers, no exhaustion."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from tests.support.v2 import V2

pytestmark = pytest.mark.asyncio


def own_database(redis_url: str) -> str:
    """The session Redis, but a database of this test's own: the cluster cap counts every
    instance in the directory, and other tests' instances must not count here."""
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(path=f"/{random.randrange(5, 16)}"))


async def test_replica_and_cluster_instance_caps(make_gateway, redis_url):
    store = own_database(redis_url)
    client = aioredis.from_url(store)
    await client.flushdb()
    await client.aclose()
    props = {"session.store.url": store, "cluster.secret": "s"}
    gateway = await make_gateway(
        {**props, "consumer.instances.max": "2", "consumer.instances.cluster.max": "3"}
    )
    other = await make_gateway(
        {**props, "consumer.instances.max": "5", "consumer.instances.cluster.max": "3"}
    )
    api, api2 = V2(gateway), V2(other)
    group = "caps-" + uuid.uuid4().hex[:8]
    assert (await api.create(group, name="a"))[0] == 200
    assert (await api.create(group, name="b"))[0] == 200
    status, body, headers = await api.call("POST", f"/consumers/{group}", {"name": "c"})
    assert (status, body["error_code"]) == (503, 50303), body
    assert headers.get("Retry-After")
    # The other replica has room: the cluster now holds 3, its cap.
    assert (await api2.create(group, name="c"))[0] == 200
    status, body, headers = await api2.call("POST", f"/consumers/{group}", {"name": "d"})
    assert (status, body["error_code"]) == (429, 42901), body
    assert await api.delete(group, "a") == 204
    assert (await api.create(group, name="d"))[0] == 200


async def test_too_many_requests_waiting_for_one_instance(make_gateway, new_topic):
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = "busy-" + uuid.uuid4().hex[:8]
    status, _ = await api.create(
        group, name="c", **{"consumer.request.timeout.ms": 300, "auto.offset.reset": "earliest"}
    )
    assert status == 200
    assert await api.subscribe(group, "c", [topic]) == 204
    answers = await asyncio.gather(*(api.records(group, "c") for _ in range(40)))
    seen = Counter(status for status, _, _ in answers)
    assert seen[429] > 0 and seen[200] > 0, seen
    assert set(seen) <= {200, 429}, seen
    busy = next(body for status, body, _ in answers if status == 429)
    assert busy["error_code"] == 42902
