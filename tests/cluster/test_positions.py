"""Positions are exact across every move, and partial failures lose nothing.

Real replicas behind a real HAProxy, real Kafka and Redis. Each scenario produces numbered
records with an independent producer, reads them the way a v2 client would, and records
produced / delivered / lost / duplicates in the failure table CI prints:

* seek, then drain: the next owner resumes at the seek target (back or forward), not at the
  position from before the seek;
* a client that hangs up mid-poll (directly, through HAProxy, through a forwarding replica):
  the records collected for it are not lost, and an empty-body commit does not commit them;
* one replica cut off from Redis (only it): it stops serving and leaves the group before its
  lease can expire, another replica adopts, no record is lost;
* a replica restarted in place (same ``node.url``): it takes its dead predecessor's
  instances at once instead of answering 503 until the old lease expires.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.cluster.test_failover import FAST, create_subscribed, post, produce_numbers, uid
from tests.harness.cluster import GatewayCluster
from tests.harness.tcp_proxy import TcpProxy
from tests.support import figures
from tests.support.kafka import committed_offsets
from tests.support.tally import Tally, consume

BINARY = "application/vnd.kafka.binary.v2+json"
V2 = "application/vnd.kafka.v2+json"


async def read_batch(session: aiohttp.ClientSession, url: str, **params: str) -> list[int]:
    async with session.get(
        url + "/records",
        params={"timeout": "1000", **params},
        headers={"Accept": BINARY},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as resp:
        body = await resp.read()
        assert resp.status == 200, body
        return [int(base64.b64decode(r["value"])) for r in orjson.loads(body)]


def offsets_of(records: list[int]) -> list[int]:
    # One partition, values 0..N-1 produced in order: a record's value is its offset.
    return records


@pytest.mark.both_worker_modes
@pytest.mark.parametrize("direction", ["back", "forward"])
async def test_seek_then_drain_resumes_at_the_seek_target(
    make_cluster, kafka_bootstrap, new_topic, direction
):
    total, target = 200, (10 if direction == "back" else 150)
    topic = await new_topic(partitions=1)
    await produce_numbers(kafka_bootstrap, topic, total)
    cluster = await make_cluster(3, props=FAST)
    owner, other = cluster.urls[0], cluster.urls[1]
    group, name = uid("seek"), "c"
    inst = f"/consumers/{group}/instances/{name}"
    async with aiohttp.ClientSession() as session:
        await create_subscribed(session, owner, group, name, topic)
        before: list[int] = []
        while len(before) < 40:
            before += await read_batch(session, owner + inst, max_bytes="60")
        assert before[:40] == list(range(40))
        status, body = await post(
            session,
            owner + inst + "/positions",
            {"offsets": [{"topic": topic, "partition": 0, "offset": target}]},
        )
        assert status == 204, body

        assert await cluster.terminate(0) == 0  # drain: saves positions, releases ownership

        after: list[int] = []
        deadline = time.monotonic() + 60
        while len(after) < total - target and time.monotonic() < deadline:
            async with session.get(
                other + inst + "/records",
                params={"timeout": "1000"},
                headers={"Accept": BINARY},
            ) as resp:
                body = await resp.read()
                if resp.status == 503:
                    await asyncio.sleep(0.2)
                    continue
                assert resp.status == 200, body
                after += [int(base64.b64decode(r["value"])) for r in orjson.loads(body)]
    expected = list(range(target, total))
    figures.record(
        {
            "scenario": f"seek {direction} after reads, then SIGTERM drain of the owner",
            "produced": total,
            "delivered": len(after),
            "duplicates": len(after) - len(set(after)),
            "lost": len(set(expected) - set(after)),
            "recovery_s": None,
            "statuses": {"first record": after[0] if after else None, "target": target},
        }
    )
    assert after and after[0] == target, (after[:5], target)
    assert after == expected


async def _hang_up_mid_poll(
    session: aiohttp.ClientSession, url: str, kafka_bootstrap: str, topic: str, values: range
) -> None:
    """A long poll the client abandons after 1 s while records arrive during it."""
    poll = asyncio.create_task(
        session.get(
            url + "/records",
            headers={"Accept": BINARY},
            timeout=aiohttp.ClientTimeout(total=1.0),
        )
    )
    await asyncio.sleep(0.3)
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, str(v).encode(), partition=0)
    finally:
        await producer.stop()
    with pytest.raises(asyncio.TimeoutError):
        await poll
    await asyncio.sleep(4.5)  # the owner's 4 s poll ends and writes to nobody


@pytest.mark.both_worker_modes
@pytest.mark.parametrize("via", ["owner", "load balancer", "forwarding replica"])
async def test_client_gone_mid_poll_loses_nothing(make_cluster, kafka_bootstrap, new_topic, via):
    topic = await new_topic(partitions=1)
    cluster = await make_cluster(3, props=FAST)
    owner = cluster.urls[0]
    entry = {"owner": owner, "load balancer": cluster.lb_url, "forwarding replica": None}[via]
    entry = entry or cluster.urls[1]
    group, name = uid("gone"), "c"
    inst = f"/consumers/{group}/instances/{name}"
    async with aiohttp.ClientSession() as session:
        status, body = await post(
            session,
            f"{owner}/consumers/{group}",
            {
                "name": name,
                "auto.offset.reset": "earliest",
                "consumer.request.timeout.ms": 4000,  # fetch.min.bytes -1: waits it all
            },
        )
        assert status == 200, body
        status, body = await post(session, owner + inst + "/subscription", {"topics": [topic]})
        assert status == 204, body
        assert await read_batch(session, owner + inst) == []  # joined the group

        async with aiohttp.ClientSession() as impatient:
            await _hang_up_mid_poll(impatient, entry + inst, kafka_bootstrap, topic, range(5))

        status, body = await post(session, owner + inst + "/offsets", None)
        assert status == 200, body
        committed = (await committed_offsets(kafka_bootstrap, group)).get((topic, 0))
        got: list[int] = []
        for _ in range(10):
            got += await read_batch(session, entry + inst)
            if len(got) >= 5:
                break
    figures.record(
        {
            "scenario": f"client hangs up mid-poll (via {via}), then empty commit, then reads",
            "produced": 5,
            "delivered": len(got),
            "duplicates": len(got) - len(set(got)),
            "lost": len(set(range(5)) - set(got)),
            "recovery_s": None,
            "statuses": {"committed before the re-read": committed},
        }
    )
    assert committed in (None, 0)  # nothing was delivered, so nothing was committed
    assert got == [0, 1, 2, 3, 4]


def _log_time(line: str) -> float:
    stamp = line.split(" ", 2)
    return datetime.strptime(f"{stamp[0]} {stamp[1]}", "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def test_replica_cut_off_from_redis_stops_serving_before_anyone_adopts(
    kafka_bootstrap, new_topic, redis_url
):
    total = 600
    topic = await new_topic(partitions=3)
    await produce_numbers(kafka_bootstrap, topic, total)
    redis = urlsplit(redis_url)
    proxy = TcpProxy(redis.hostname or "127.0.0.1", redis.port or 6379)
    await proxy.start()
    via_proxy = redis_url.replace(f"{redis.hostname}:{redis.port}", proxy.address, 1)
    cluster = GatewayCluster(
        3,
        bootstrap_servers=kafka_bootstrap,
        redis_url=redis_url,
        props={"kafka.timeout.ms": "5000", "producer.max.block.ms": "3000", **FAST},
        replica_props={0: {"session.store.url": via_proxy}},
    )
    group, name = uid("cut"), "c"
    tally = Tally(total)
    try:
        await cluster.start()
        async with aiohttp.ClientSession() as session:
            await create_subscribed(session, cluster.urls[0], group, name, topic)
            reached = asyncio.Event()

            def progress(t: Tally) -> None:
                if len(set(t.delivered)) >= 150:
                    reached.set()

            reader = asyncio.create_task(
                consume(
                    session,
                    lambda _: cluster.lb_url,
                    group,
                    name,
                    tally,
                    deadline_s=120,
                    on_progress=progress,
                    max_bytes=60,
                    pause_s=0.05,
                )
            )
            await reached.wait()
            cut_at = time.time()
            delivered_at_cut = len(set(tally.delivered))
            proxy.cut()  # replica 0 (the owner) loses Redis; the others do not
            await asyncio.sleep(6.0)  # past the 3 s lease: another replica adopts
            proxy.heal()
            await reader
    finally:
        proxy.heal()
        logs = cluster.logs(400) if cluster.workdir else ""
        await cluster.stop()
        await proxy.stop()
    figures.record(tally.figures("one replica cut off from Redis (others not), 6 s"))
    assert tally.lost == 0, cluster.logs(80)
    assert delivered_at_cut < total  # the cut really happened mid-consumption
    # The owner fenced itself (stopped serving, left the group) before another replica
    # adopted the instance: no partition was read by two replicas at once.
    fences = [
        _log_time(line)
        for line in logs.splitlines()
        if "stops serving its consumer instances" in line and re.match(r"\d{4}-", line)
    ]
    adoptions = [
        _log_time(line)
        for line in logs.splitlines()
        if f"adopted consumer instance {group}/{name}" in line and re.match(r"\d{4}-", line)
    ]
    assert fences and adoptions, logs[-4000:]
    assert cut_at < min(fences) < min(adoptions), (fences, adoptions, cut_at)


@pytest.mark.both_worker_modes
async def test_replica_restarted_in_place_takes_its_instances_at_once(
    make_cluster, kafka_bootstrap, new_topic
):
    total = 600
    topic = await new_topic(partitions=1)
    await produce_numbers(kafka_bootstrap, topic, total)
    # A long lease: without the take-over, requests would answer 503 for 20 s.
    cluster = await make_cluster(3, props={**FAST, "node.lease.ms": "20000"})
    owner = cluster.urls[0]
    group, name = uid("inplace"), "c"
    tally = Tally(total)
    async with aiohttp.ClientSession() as session:
        await create_subscribed(session, owner, group, name, topic)
        await consume(session, lambda _: owner, group, name, tally, deadline_s=30, until=100)
        cluster.kill(0)
        killed_at = time.monotonic()
        await cluster.restart(0)
        await consume(session, lambda _: cluster.lb_url, group, name, tally, deadline_s=60)
        recovered_after = time.monotonic() - killed_at
    figures.record(
        {
            **tally.figures("owner SIGKILL, restarted in place at once (lease 20 s)"),
            "recovery_s": round(recovered_after, 2),
        }
    )
    assert tally.lost == 0
    assert recovered_after < 20, "waited out the predecessor's lease"
    assert "retired the lease" in cluster.logs(200)
