"""Any replica serves any consumer instance: real processes, real HAProxy, real HTTP.

Every request here crosses a socket. "Direct" tests rotate their requests over the replicas'
own addresses, so most requests land on a replica that does not own the instance and must be
forwarded one hop; "HAProxy" tests go through a plain round-robin balancer, the way clients
do in production. Records are written with an independent aiokafka producer and committed
offsets checked with an independent admin client, so the gateway is never its own witness.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from tests.harness.api import MakeClusterFn, NewTopicFn
from tests.support.bridge import produce_ten, run_bridge_flow
from tests.support.kafka import committed_offsets
from tests.support.v2 import V2

pytestmark = pytest.mark.asyncio

EARLIEST = {"auto.offset.reset": "earliest", "fetch.min.bytes": 1}


class RoundRobin:
    """An aiohttp-like client whose every request goes to the next replica in turn.

    Handed to :class:`V2` in place of a ClientSession, it makes "every request to a different
    replica" a property of the client rather than something each test has to remember.
    """

    def __init__(self, http: aiohttp.ClientSession, urls: list[str]) -> None:
        self.http = http
        self.urls = urls
        self._next = itertools.cycle(range(len(urls)))
        self.served: list[int] = []  # replica index of every request, in order

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        i = next(self._next)
        self.served.append(i)
        return self.http.request(method, self.urls[i] + path, **kwargs)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def group_name() -> str:
    return "g-" + uuid.uuid4().hex[:10]


def decoded(records: list[dict]) -> list[tuple[int, int, bytes]]:
    return sorted((r["partition"], r["offset"], base64.b64decode(r["value"])) for r in records)


async def assigned(api: V2, group: str, name: str) -> set[int]:
    status, body, _ = await api.call("GET", api.inst(group, name) + "/assignments")
    assert status == 200, body
    return {p["partition"] for p in body["partitions"]}


# --- the whole lifecycle, every request on another replica -------------------------------------


@pytest.mark.both_worker_modes
@pytest.mark.parametrize("route", ["each-replica-in-turn", "haproxy"])
async def test_consumer_lifecycle_across_replicas(
    route: str,
    make_cluster: MakeClusterFn,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
    kafka_bootstrap: str,
) -> None:
    cluster = await make_cluster(n=3)
    rr = RoundRobin(http, cluster.urls)
    api = V2(rr) if route == "each-replica-in-turn" else V2(http, prefix=cluster.lb_url)
    topic = await new_topic(partitions=2)
    group = group_name()
    inst = api.inst(group, "c1")

    status, body = await api.create(group, name="c1", **EARLIEST)
    assert status == 200, body
    assert body == {"instance_id": "c1", "base_uri": cluster.lb_url + inst}
    assert await api.subscribe(group, "c1", [topic]) == 204
    status, body, _ = await api.call("GET", inst + "/subscription")
    assert (status, body) == (200, {"topics": [topic]})

    expected = []
    for i in range(10):
        meta = await producer.send_and_wait(topic, f"v{i}".encode(), partition=i % 2)
        expected.append((meta.partition, meta.offset, f"v{i}".encode()))
    got = await api.drain(group, "c1", 10)
    assert decoded(got) == sorted(expected)

    # Explicit commit of the last processed offsets (the proxy adds +1), with metadata.
    status, body, _ = await api.call(
        "POST",
        inst + "/offsets",
        {
            "offsets": [
                {"topic": topic, "partition": 0, "offset": 2, "metadata": "m0"},
                {"topic": topic, "partition": 1, "offset": 4, "metadata": "m1"},
            ]
        },
    )
    assert (status, body) == (200, [])
    status, body, _ = await api.call(
        "GET",
        inst + "/offsets",
        {"partitions": [{"topic": topic, "partition": 0}, {"topic": topic, "partition": 1}]},
    )
    assert (status, body) == (
        200,
        {
            "offsets": [
                {"topic": topic, "partition": 0, "offset": 3, "metadata": "m0"},
                {"topic": topic, "partition": 1, "offset": 5, "metadata": "m1"},
            ]
        },
    )
    assert await committed_offsets(kafka_bootstrap, group) == {(topic, 0): 3, (topic, 1): 5}

    status, body, _ = await api.call("GET", inst + "/assignments")
    assert (status, body) == (
        200,
        {"partitions": [{"topic": topic, "partition": 0}, {"topic": topic, "partition": 1}]},
    )

    # Seek: partition 0 back to offset 1, partition 1 to its beginning.
    status, body, _ = await api.call(
        "POST", inst + "/positions", {"offsets": [{"topic": topic, "partition": 0, "offset": 1}]}
    )
    assert status == 204, body
    status, body, _ = await api.call(
        "POST", inst + "/positions/beginning", {"partitions": [{"topic": topic, "partition": 1}]}
    )
    assert status == 204, body
    again = await api.drain(group, "c1", 9)
    assert decoded(again) == sorted(e for e in expected if e[:2] != (0, 0))

    # Empty-body commit: everything delivered, wherever the request lands.
    status, body, _ = await api.call("POST", inst + "/offsets", None)
    assert (status, body) == (200, [])
    assert await committed_offsets(kafka_bootstrap, group) == {(topic, 0): 5, (topic, 1): 5}

    assert await api.delete(group, "c1") == 204
    assert await api.delete(group, "c1") == 404
    status, body, _ = await api.records(group, "c1")
    assert (status, body["error_code"]) == (404, 40403)
    if route == "each-replica-in-turn":
        # Most requests were served by a replica that does not own the instance.
        owner = rr.served[0]
        assert sum(i != owner for i in rr.served) >= len(rr.served) // 2


# --- names are unique per group across the cluster --------------------------------------------


async def test_same_name_in_one_group_on_two_replicas_conflicts(
    make_cluster: MakeClusterFn, http: aiohttp.ClientSession
) -> None:
    cluster = await make_cluster(n=3)
    a, b, c = (V2(http, prefix=url) for url in cluster.urls)
    lb = V2(http, prefix=cluster.lb_url)
    group = group_name()

    assert (await a.create(group, name="dup"))[0] == 200
    for api in (b, c, a, lb):
        status, body = await api.create(group, name="dup")
        assert (status, body["error_code"]) == (409, 40902), body
    # The losers built nothing: the name still serves the first instance, from anywhere.
    status, body, _ = await c.call("GET", c.inst(group, "dup") + "/subscription")
    assert (status, body) == (200, {"topics": []})
    # The same name in another group is another instance.
    assert (await b.create(group + "-other", name="dup"))[0] == 200
    assert await c.delete(group + "-other", "dup") == 204
    # Once deleted (through a non-owner), the name is free again on any replica.
    assert await b.delete(group, "dup") == 204
    assert (await c.create(group, name="dup"))[0] == 200
    assert await a.delete(group, "dup") == 204

    # A race: the same name created on every replica at once has exactly one winner.
    results = await asyncio.gather(*(api.create(group, name="race") for api in (a, b, c)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409, 409], results
    assert all(body["error_code"] == 40902 for status, body in results if status == 409)
    assert await lb.delete(group, "race") == 204


# --- many groups at once through the load balancer -------------------------------------------


@pytest.mark.both_worker_modes
async def test_four_groups_of_three_each_receive_every_record_exactly_once(
    make_cluster: MakeClusterFn,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
) -> None:
    cluster = await make_cluster(n=3)
    api = V2(http, prefix=cluster.lb_url)
    topic = await new_topic(partitions=4)
    groups = [group_name() for _ in range(4)]
    names = ["m0", "m1", "m2"]

    async def join(group: str) -> dict[str, set[int]]:
        for name in names:
            status, body = await api.create(group, name=name, **EARLIEST)
            assert status == 200, body
            assert await api.subscribe(group, name, [topic]) == 204
        # Settled: every member has partitions, together all four, each once; seen twice in
        # a row so a rebalance still under way does not pass for the final state.
        stable = 0
        for _ in range(200):
            await asyncio.gather(*(api.records(group, n, timeout=100) for n in names))
            parts = await asyncio.gather(*(assigned(api, group, n) for n in names))
            union = set().union(*parts)
            if all(parts) and union == {0, 1, 2, 3} and sum(map(len, parts)) == 4:
                stable += 1
                if stable == 2:
                    return dict(zip(names, parts, strict=True))
            else:
                stable = 0
            await asyncio.sleep(0.1)
        pytest.fail(f"group {group} did not settle: {parts}")

    assignments = dict(zip(groups, await asyncio.gather(*map(join, groups)), strict=True))

    total = 200
    futures = [await producer.send(topic, f"v{i}".encode(), partition=i % 4) for i in range(total)]
    expected = {(m.partition, m.offset) for m in await asyncio.gather(*futures)}
    assert len(expected) == total

    seen: dict[str, dict[str, list[tuple[int, int]]]] = {g: {n: [] for n in names} for g in groups}

    async def consume(group: str, name: str) -> None:
        mine = seen[group][name]
        deadline = time.monotonic() + 60
        while sum(map(len, seen[group].values())) < total and time.monotonic() < deadline:
            status, body, _ = await api.records(group, name, timeout=500)
            assert status == 200, body
            mine.extend((r["partition"], r["offset"]) for r in body)
        # One more read each: a duplicate arriving late must show up, not go unnoticed.
        status, body, _ = await api.records(group, name, timeout=300)
        assert status == 200, body
        mine.extend((r["partition"], r["offset"]) for r in body)

    await asyncio.gather(*(consume(g, n) for g in groups for n in names))

    for group in groups:
        everything = [rec for recs in seen[group].values() for rec in recs]
        counts = {n: len(recs) for n, recs in seen[group].items()}
        assert len(everything) == total, (group, counts)
        assert set(everything) == expected, group  # none missing, no duplicates
        for name, recs in seen[group].items():
            assert {p for p, _ in recs} <= assignments[group][name], (group, name)
    await asyncio.gather(*(api.delete(g, n) for g in groups for n in names))


# --- a long-poll across a forwarding hop ------------------------------------------------------


@pytest.mark.both_worker_modes
async def test_long_poll_via_a_non_owner_returns_when_a_record_arrives(
    make_cluster: MakeClusterFn,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
) -> None:
    cluster = await make_cluster(n=3)
    owner, other = V2(http, prefix=cluster.urls[0]), V2(http, prefix=cluster.urls[1])
    topic = await new_topic(partitions=1)
    group = group_name()
    status, body = await owner.create(
        group, name="lp", **EARLIEST, **{"consumer.request.timeout.ms": 10_000}
    )
    assert status == 200, body
    status, body, _ = await other.call(
        "POST",
        other.inst(group, "lp") + "/assignments",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 204, body
    # Warm up (the first fetch finds the partition leader), bounded by ?timeout.
    status, body, _ = await other.records(group, "lp", timeout=200)
    assert (status, body) == (200, [])

    async def produce_later() -> None:
        await asyncio.sleep(1.0)
        await producer.send_and_wait(topic, b"wake up", partition=0)

    began = time.monotonic()
    sender = asyncio.create_task(produce_later())
    status, body, _ = await other.records(group, "lp")  # waits up to 10 s for data
    elapsed = time.monotonic() - began
    print(f"long-poll through a non-owner answered after {elapsed:.3f} s")
    await sender
    assert status == 200, body
    assert [base64.b64decode(r["value"]) for r in body] == [b"wake up"]
    assert 0.9 <= elapsed < 4.0, f"read returned after {elapsed:.2f} s"
    assert await other.delete(group, "lp") == 204


# --- a third-party client through the load balancer ------------------------------------------


async def test_kafka_bridge_client_through_haproxy(
    make_cluster: MakeClusterFn,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    http: aiohttp.ClientSession,
    kafka_bootstrap: str,
) -> None:
    """A v2 client from PyPI runs its whole flow unchanged against the balanced cluster."""
    cluster = await make_cluster(n=3)
    topic = await new_topic(partitions=2)
    values = await produce_ten(producer, topic)
    group = group_name()
    got = await run_bridge_flow(cluster.lb_url, topic, group, len(values))
    assert got["values"] == sorted(values)
    assert await committed_offsets(kafka_bootstrap, group) == got["ends"]
    # The client deleted its instance on exit: gone on every replica.
    for url in cluster.urls:
        status, _, _ = await V2(http, prefix=url).call(
            "GET", f"/consumers/{group}/instances/kbc/subscription"
        )
        assert status == 404


# --- the address clients are told to use -----------------------------------------------------


async def test_base_uri_is_the_load_balancer_address(
    make_cluster: MakeClusterFn, http: aiohttp.ClientSession
) -> None:
    cluster = await make_cluster(n=3)
    group = group_name()
    bases = [*cluster.urls, cluster.lb_url]
    for i, base in enumerate(bases):
        status, body = await V2(http, prefix=base).create(group, name=f"b{i}")
        assert status == 200, body
        assert body["base_uri"] == f"{cluster.lb_url}/consumers/{group}/instances/b{i}"
        # And it works: the advertised address reaches the instance.
        async with http.get(body["base_uri"] + "/subscription") as resp:
            assert resp.status == 200
        async with http.delete(body["base_uri"]) as resp:
            assert resp.status == 204


async def test_idle_expiry_is_cluster_wide(
    make_cluster: MakeClusterFn, http: aiohttp.ClientSession
):
    """An instance used only through other replicas stays alive; once idle, it is gone
    everywhere (404 40403 from every replica, and its name can be created again)."""
    cluster = await make_cluster(n=3, props={"consumer.instance.timeout.ms": "3000"})
    owner, others = cluster.urls[0], cluster.urls[1:]
    group = group_name()
    api = V2(http, prefix=owner)
    status, _ = await api.create(group, name="e")
    assert status == 200
    path = f"/consumers/{group}/instances/e/subscription"
    for i in range(10):  # 5 s of use, only through the two non-owners
        async with http.get(others[i % 2] + path) as resp:
            assert resp.status == 200, await resp.text()
        await asyncio.sleep(0.5)
    await asyncio.sleep(3.0 + 1.5)  # timeout plus the sweep and the directory delete
    for url in cluster.urls:
        async with http.get(url + path) as resp:
            body = await resp.json(content_type=None)
            assert (resp.status, body["error_code"]) == (404, 40403)
    status, _ = await V2(http, prefix=others[0]).create(group, name="e")
    assert status == 200
