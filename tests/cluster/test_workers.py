"""``workers=2``: two processes per replica on one listener, each a node of its own.

Real replica processes (a parent and its workers) behind HAProxy, real Kafka and Redis. What a
client must not notice: which worker accepted its connection. What an operator relies on: a
worker that dies is replaced at once and its instances carry on without loss, SIGTERM drains
every worker, and one scrape of ``/metrics`` covers the whole replica.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time

import aiohttp
import orjson

from sessions.directory import RedisDirectory
from tests.cluster.test_failover import FAST, create_subscribed, post, produce_numbers, uid
from tests.harness.cluster import GatewayCluster

BINARY = "application/vnd.kafka.binary.v2+json"
WORKERS = {**FAST, "workers": "2"}


async def owners(redis_url: str, group: str, names: list[str]) -> dict[str, str]:
    directory = RedisDirectory(redis_url)
    await directory.start()
    try:
        found = {}
        for name in names:
            rec = await directory.get(group, name)
            assert rec is not None, name
            found[name] = rec.owner
        return found
    finally:
        await directory.stop()


async def read_all(
    session: aiohttp.ClientSession,
    base: str,
    group: str,
    name: str,
    want: int,
    deadline_s: float,
    already: list[int] = (),  # type: ignore[assignment]
) -> tuple[list[int], dict[int, int]]:
    """Read records of ``name`` through ``base`` until ``want`` distinct ones, counting
    ``already`` read (or the deadline), retrying 503s as a client does; returns the values
    read and the statuses."""
    got: list[int] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + deadline_s
    # A few records a read, so that reading spans what the test does in between.
    url = f"{base}/consumers/{group}/instances/{name}/records?timeout=500&max_bytes=100"
    while len(set(got) | set(already)) < want and time.monotonic() < deadline:
        async with session.get(url, headers={"Accept": BINARY}) as resp:
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            if resp.status == 200:
                for rec in orjson.loads(await resp.read()):
                    got.append(int(base64.b64decode(rec["value"])))
                await post(
                    session, f"{base}/consumers/{group}/instances/{name}/offsets", {}
                )  # commit what was delivered
            else:
                await resp.read()
                await asyncio.sleep(0.2)
    return got, statuses


async def test_instances_land_on_both_workers_and_are_served_through_any(
    make_cluster, kafka_bootstrap, redis_url, new_topic
):
    """Instances created through one replica spread over its two workers; every request for
    any of them, sent to either replica, reaches the owning worker (a sibling's over its Unix
    socket, another replica's worker through that replica's shared listener)."""
    cluster = await make_cluster(n=2, props=WORKERS)
    assert len(cluster.worker_pids(0)) == 2 and len(cluster.worker_pids(1)) == 2
    topic = await new_topic(partitions=12)
    await produce_numbers(kafka_bootstrap, topic, total=400)
    group = uid("wk")
    names = [f"c{i}" for i in range(12)]
    async with aiohttp.ClientSession() as session:
        for name in names:
            # A connection each, as separate clients would: the kernel spreads connections
            # (not requests) over the workers, so 12 of them miss one worker 1 time in 2^11.
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)
            ) as fresh:
                await create_subscribed(fresh, cluster.urls[0], group, name, topic)
        owner = await owners(redis_url, group, names)
        port0 = cluster.urls[0].rsplit(":", 1)[1]
        assert all(o.startswith(f"127.0.0.1:{port0}:") for o in owner.values()), owner
        workers_used = {o.split(":")[2].split(".")[1] for o in owner.values()}
        assert workers_used == {"w0", "w1"}, owner

        # Read every instance through replica 1 (a cross-replica hop to a worker of replica 0
        # that may land on its sibling), until all 400 records are read exactly once.
        delivered: list[int] = []
        statuses: dict[int, int] = {}
        deadline = time.monotonic() + 90
        while len(set(delivered)) < 400 and time.monotonic() < deadline:
            for name in names:
                url = f"{cluster.urls[1]}/consumers/{group}/instances/{name}/records?timeout=200"
                async with session.get(url, headers={"Accept": BINARY}) as resp:
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    body = await resp.read()
                    if resp.status == 200:
                        delivered += [int(base64.b64decode(r["value"])) for r in orjson.loads(body)]
        # Members joining one by one move partitions (nothing is committed here), so a few
        # records may come twice; none may be missing.
        assert set(delivered) == set(range(400)), (len(set(delivered)), statuses)
        assert set(statuses) == {200}, statuses

        # The replica's own listener, hit repeatedly, reaches both workers: each answers for
        # every instance (half of those requests are sibling hops).
        for name in names:
            for _ in range(4):
                url = f"{cluster.urls[0]}/consumers/{group}/instances/{name}/subscription"
                async with session.get(url) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json()) == {"topics": [topic]}


async def test_killed_worker_is_replaced_and_its_instance_goes_on_without_loss(
    make_cluster, kafka_bootstrap, redis_url, new_topic
):
    """SIGKILL one worker: the parent starts a new one at once, which retires the dead node's
    lease, so the instance is adopted on its next request, long before the lease would have
    run out, and resumes at the committed position: nothing lost."""
    cluster = await make_cluster(n=1, props={**WORKERS, "node.lease.ms": "60000"})
    topic = await new_topic(partitions=2)
    await produce_numbers(kafka_bootstrap, topic, total=200)
    group = uid("wkill")
    async with aiohttp.ClientSession() as session:
        await create_subscribed(session, cluster.lb_url, group, "k", topic)
        first, _ = await read_all(session, cluster.lb_url, group, "k", 50, 30)
        assert len(set(first)) >= 50

        owner = (await owners(redis_url, group, ["k"]))["k"]
        index = int(owner.split(":")[2].split(".w")[1])
        pids_before = cluster.worker_pids(0)
        victim = _worker_pid(pids_before, index)
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()

        rest, statuses = await read_all(session, cluster.lb_url, group, "k", 200, 40, first)
        recovered_s = time.monotonic() - started
        delivered = set(first) | set(rest)
        assert delivered == set(range(200)), (len(delivered), statuses)
        assert recovered_s < 30, recovered_s  # the 60 s lease was not waited out
        pids_after = cluster.worker_pids(0)
        assert len(pids_after) == 2 and victim not in pids_after, (
            victim,
            pids_before,
            pids_after,
            recovered_s,
            statuses,
        )
        new_owner = (await owners(redis_url, group, ["k"]))["k"]
        assert new_owner != owner


def _worker_pid(pids: list[int], index: int) -> int:
    """The pid of worker ``index`` among a replica's workers (from its environment)."""
    for pid in pids:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        if env.get(b"EVGW_WORKER", b"").split(b"/")[0] == str(index).encode():
            return pid
    raise AssertionError(f"no worker {index} among {pids}")


async def test_metrics_cover_every_worker(make_cluster):
    """One scrape of a replica: each worker's samples, labelled, each family declared once."""
    cluster = await make_cluster(n=1, props=WORKERS)
    async with aiohttp.ClientSession() as session:
        for _ in range(6):  # some traffic on both workers
            async with session.get(f"{cluster.urls[0]}/topics") as resp:
                await resp.read()
        # The cluster is ready once one worker is: the other may still be opening its socket.
        deadline = time.monotonic() + 20
        while True:
            async with session.get(f"{cluster.urls[0]}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            if ('worker="1"' in text and 'worker="0"' in text) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)), "a family declared twice"
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert any('worker="0"' in s for s in samples) and any('worker="1"' in s for s in samples)
    assert "event_gateway_workers 2" in samples and "event_gateway_workers_answering 2" in samples
    assert all("worker=" in s for s in samples if not s.startswith("event_gateway_workers"))


async def test_sigterm_drains_every_worker(kafka_bootstrap, redis_url, new_topic):
    """SIGTERM to the parent: both workers drain (instances released with their positions,
    owner ""), the parent exits 0, and another replica resumes where reads stopped."""
    topic = await new_topic(partitions=2)
    await produce_numbers(kafka_bootstrap, topic, total=100)
    cluster = GatewayCluster(
        2,
        bootstrap_servers=kafka_bootstrap,
        redis_url=redis_url,
        props={**WORKERS, "shutdown.readiness.delay.ms": "500"},
    )
    await cluster.start()
    groups = [uid("wterm") for _ in range(10)]  # one instance each: every one reads it all
    try:
        async with aiohttp.ClientSession() as session:
            for group in groups:
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True)
                ) as fresh:
                    await create_subscribed(fresh, cluster.urls[0], group, "d", topic)
            owned = {g: (await owners(redis_url, g, ["d"]))["d"] for g in groups}
            assert {o.split(":")[2].split(".")[1] for o in owned.values()} == {"w0", "w1"}
            first = {}
            for group in groups:
                first[group], _ = await read_all(session, cluster.urls[0], group, "d", 30, 30)
            assert await cluster.terminate(0) == 0
            for group in groups:
                owner = (await owners(redis_url, group, ["d"]))["d"]
                assert owner == "", owner  # released by its worker, not left to expire
            for group in groups:
                rest, statuses = await read_all(
                    session, cluster.urls[1], group, "d", 100, 40, first[group]
                )
                seen = first[group] + rest
                assert set(seen) == set(range(100)), (group, statuses)
                assert len(seen) == 100, (group, len(seen))  # resumed exactly: no duplicates
    finally:
        await cluster.stop()


async def test_parent_reports_a_taken_port_like_a_single_process(kafka_bootstrap, redis_url):
    """Workers bind with SO_REUSEPORT, which could silently share a port with a leftover
    process; the parent checks first and fails as a single process would."""
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--set",
            f"bootstrap.servers={kafka_bootstrap}",
            "--set",
            f"session.store.url={redis_url}",
            "--set",
            "cluster.secret=s",
            "--set",
            "workers=2",
            "--set",
            f"listeners=http://127.0.0.1:{port}",
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert b"cannot serve on" in err, err
