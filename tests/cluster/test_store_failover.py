"""The session store fails over under load: Redis behind Sentinel, and Redis Cluster.

Three gateway replicas behind HAProxy share a replicated store; consumers read numbered
records through the load balancer (retrying 503s, committing what they got), one more reads
only from its owner replica, and a churn of create + delete keeps ownership changes flowing.
Then the store's primary is SIGKILLed. What must hold, in counted figures:

- no record lost; the instance read from its owner sees only 200s (a replica keeps serving
  what it owns while its lease is valid, store or no store);
- ownership never goes back: every instance's (owner, epoch) history, polled from the store
  throughout, has epochs that only grow and one owner per epoch, so no acknowledged claim was
  rolled back (which is what would let two replicas serve one instance);
- operations that need the store answer 503 (never 500, 404 or 409) and work again by
  themselves once a replica is promoted; recovery time is printed in the failure table.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import pytest

from sessions.errors import StoreUnavailable
from sessions.redis_connect import census_key, parse_store_url
from sessions.redis_store import RedisDirectory
from tests.cluster.test_failover import create_subscribed, produce_numbers
from tests.harness.api import MakeClusterFn, NewTopicFn
from tests.harness.cluster import GatewayCluster
from tests.harness.redis_ha import RedisClusterSet, RedisSentinelSet
from tests.support import figures
from tests.support.tally import BINARY, V2, Tally

pytestmark = pytest.mark.asyncio

TOTAL = 1200
# A lease far longer than a failover (about 2-3 s here): replicas ride it out without fencing
# themselves (sessions/lease.py: up to ~43% of the lease, 8 s here), so owned instances are
# served throughout. Kafka sessions at the broker's minimum.
PROPS = {
    "node.lease.ms": "20000",
    "consumer.session.timeout.ms": "6000",
    "consumer.heartbeat.interval.ms": "1000",
}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class OwnerHistory:
    """Polls each instance's (owner, epoch) from the store, as any replica would read it."""

    def __init__(self, url: str, keys: list[tuple[str, str]]) -> None:
        self.directory = RedisDirectory(url, timeout_s=1.0)
        self.keys = keys
        self.seen: dict[tuple[str, str], list[tuple[str, int]]] = {k: [] for k in keys}
        self.reads = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.directory.stop()

    async def _run(self) -> None:
        while True:
            for key in self.keys:
                try:
                    rec = await self.directory.get(*key)
                except StoreUnavailable:
                    continue
                self.reads += 1
                if rec is not None and (
                    not self.seen[key] or self.seen[key][-1] != (rec.owner, rec.epoch)
                ):
                    self.seen[key].append((rec.owner, rec.epoch))
            await asyncio.sleep(0.05)

    def assert_never_rolled_back(self) -> None:
        assert self.reads > 0
        for key, history in self.seen.items():
            assert history, key
            epochs = [e for _, e in history]
            assert epochs == sorted(epochs), (key, history)  # an epoch never comes back
            owners: dict[int, set[str]] = collections.defaultdict(set)
            for owner, epoch in history:
                owners[epoch].add(owner)
            assert all(len(o) == 1 for o in owners.values()), (key, history)


async def consume(
    session: aiohttp.ClientSession,
    base: Callable[[int], str],
    group: str,
    name: str,
    tally: Tally,
    *,
    deadline_s: float,
    on_progress: Callable[[Tally], object],
) -> Tally:
    """``tests.support.tally.consume``, but a 503 may come from HAProxy itself (an HTML page,
    while every replica is out of the LB): only the status is counted."""
    path = f"/consumers/{group}/instances/{name}"
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and len(set(tally.delivered)) < tally.produced:
        url = base(tally.requests) + path
        tally.requests += 1
        try:
            async with session.get(
                url + "/records",
                params={"timeout": "1000", "max_bytes": "60"},  # ~8 records a read
                headers={"Accept": BINARY},
            ) as resp:
                body = await resp.read()
                tally.statuses[resp.status] += 1
                if resp.status != 200:
                    tally.note_failure()
                    await asyncio.sleep(0.2)
                    continue
        except (aiohttp.ClientError, TimeoutError):
            tally.statuses[0] += 1
            tally.note_failure()
            await asyncio.sleep(0.2)
            continue
        records = orjson.loads(body)
        tally.delivered.extend(int(base64.b64decode(r["value"])) for r in records)
        tally.note_success(bool(records))
        on_progress(tally)
        await asyncio.sleep(0.05)  # a client that processes what it read
        if records:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(
                    base(tally.requests) + path + "/offsets", headers={"Content-Type": V2}
                ) as resp:
                    await resp.read()  # a lost commit is covered by the next one
    return tally


async def post(session: aiohttp.ClientSession, url: str, body: object) -> int:
    """POST a v2 body; the status (a body may be HAProxy's HTML 503 page)."""
    async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": V2}) as resp:
        await resp.read()
        return resp.status


async def churn(
    session: aiohttp.ClientSession, lb: str, statuses: collections.Counter[int], stop: asyncio.Event
) -> None:
    """Create and delete instances through the LB: ownership changes during the failover."""
    group = uid("churn")
    i = 0
    while not stop.is_set():
        i += 1
        try:
            status = await post(session, f"{lb}/consumers/{group}", {"name": f"c{i}"})
            statuses[status] += 1
            if status == 200:
                for _ in range(100):  # delete what was created, whatever it takes
                    async with session.delete(
                        f"{lb}/consumers/{group}/instances/c{i}",
                        headers={"Content-Type": V2},
                    ) as resp:
                        statuses[resp.status] += 1
                        if resp.status != 503:
                            break
                    await asyncio.sleep(0.2)
        except (aiohttp.ClientError, TimeoutError):
            statuses[0] += 1
        await asyncio.sleep(0.1)


async def run_store_failover(
    cluster: GatewayCluster,
    store_url: str,
    kafka_bootstrap: str,
    topic: str,
    kill: Callable[[], int],
    wait_failover: Callable[[int], object],
    scenario: str,
) -> None:
    await produce_numbers(kafka_bootstrap, topic, TOTAL)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # One instance owned by each replica, read through the LB; one more read from its owner.
        via_lb = [(uid("sf"), "c") for _ in range(3)]
        for i, (group, name) in enumerate(via_lb):
            await create_subscribed(session, cluster.urls[i], group, name, topic)
        direct = (uid("sfd"), "d")
        await create_subscribed(session, cluster.urls[1], *direct, topic)
        history = OwnerHistory(store_url, [*via_lb, direct])
        await history.start()
        tallies = [Tally(TOTAL) for _ in via_lb]
        direct_tally = Tally(TOTAL)
        churned: collections.Counter[int] = collections.Counter()
        stop_churn = asyncio.Event()
        reached = asyncio.Event()

        def progress(t: Tally) -> None:
            if len(set(t.delivered)) >= TOTAL // 3:
                reached.set()

        def reader(t: Tally, group: str, name: str, base: Callable[[int], str]) -> Awaitable[Tally]:
            return consume(session, base, group, name, t, deadline_s=100, on_progress=progress)

        lb = cluster.lb_url
        tasks = [
            asyncio.create_task(reader(t, g, n, lambda _: lb))
            for t, (g, n) in zip(tallies, via_lb, strict=True)
        ]
        tasks.append(asyncio.create_task(reader(direct_tally, *direct, lambda _: cluster.urls[1])))
        churner = asyncio.create_task(churn(session, lb, churned, stop_churn))
        try:
            await asyncio.wait_for(reached.wait(), 60)
            killed_at = time.monotonic()
            old = kill()
            await asyncio.to_thread(wait_failover, old)
            failover_s = time.monotonic() - killed_at
            # The store needs to answer again for this: a create through the LB.
            recovered_s = None
            for _ in range(300):
                status = await post(session, f"{lb}/consumers/{uid('after')}", {"name": "x"})
                if status == 200:
                    recovered_s = time.monotonic() - killed_at
                    break
                assert status == 503, status
                await asyncio.sleep(0.2)
            assert recovered_s is not None, "creates did not recover after the failover"
            await asyncio.gather(*tasks)
        finally:
            stop_churn.set()
            await asyncio.gather(churner, return_exceptions=True)
            for t in tasks:
                t.cancel()
            await history.stop()

    statuses: collections.Counter[int] = collections.Counter()
    for t in tallies:
        statuses.update(t.statuses)
    lb_recovery = [t.recovery_s for t in tallies if t.recovery_s is not None]
    figures.record(
        {
            "scenario": scenario,
            "produced": TOTAL * len(tallies),
            "delivered": sum(len(t.delivered) for t in tallies),
            "duplicates": sum(t.duplicates for t in tallies),
            "lost": sum(t.lost for t in tallies),
            "recovery_s": round(max([recovered_s, *lb_recovery]), 2),
            "statuses": {
                **{f"lb {k}": v for k, v in sorted(statuses.items())},
                "owner direct": dict(direct_tally.statuses),
                "churn": dict(sorted(churned.items())),
                "failover_s": round(failover_s, 2),
            },
        }
    )
    print(f"{scenario}: store failover {failover_s:.1f} s, creates back after {recovered_s:.1f} s")
    for t in [*tallies, direct_tally]:
        assert t.lost == 0, (t.figures(scenario), cluster.logs(30))
    assert set(direct_tally.statuses) == {200}, direct_tally.statuses  # served throughout
    assert direct_tally.duplicates == 0
    # Through the LB: retriable 503s while every replica is out of the LB (readiness follows
    # the store), never a 404 (the instance was never lost) nor a 5xx other than 503.
    assert set(statuses) <= {200, 503}, statuses
    assert set(churned) <= {200, 204, 503, 0}, churned
    assert churned[200] > 0 and churned[204] > 0, churned
    history.assert_never_rolled_back()
    # Nobody adopted anything: leases outlived the failover, so each instance kept its owner,
    # and with one consumer throughout nothing was delivered twice.
    for key, seen in history.seen.items():
        assert len(seen) == 1, (key, seen, cluster.logs(60))
    assert all(t.duplicates == 0 for t in tallies), (
        [t.duplicates for t in tallies],
        cluster.logs(60),
    )


async def test_sentinel_primary_killed_under_load(
    make_cluster: MakeClusterFn, kafka_bootstrap: str, new_topic: NewTopicFn
) -> None:
    store = RedisSentinelSet()
    store.start()
    cluster = None
    try:
        cluster = await make_cluster(n=3, props={**PROPS, "session.store.url": store.url})
        topic = await new_topic(partitions=4)

        def kill() -> int:
            return store.kill_primary().port

        await run_store_failover(
            cluster,
            store.url,
            kafka_bootstrap,
            topic,
            kill,
            store.wait_failover,
            "Redis primary SIGKILL behind Sentinel (3 replicas, via LB)",
        )
    finally:
        if cluster is not None:
            await cluster.stop()  # the replicas drain while the store still answers
        store.stop()


async def test_cluster_primary_killed_under_load(
    make_cluster: MakeClusterFn, kafka_bootstrap: str, new_topic: NewTopicFn
) -> None:
    # Two replicas per primary: after the failover the shard still has one to confirm
    # ownership changes (with one, they answer 503 until a replica is back: README).
    store = RedisClusterSet(replicas=2)
    store.start()
    census = census_key(parse_store_url(store.url))  # on the shard holding every gateway key
    try:
        cluster = await make_cluster(n=3, props={**PROPS, "session.store.url": store.url})
        topic = await new_topic(partitions=4)

        def kill() -> int:
            return store.kill_owner(census).port

        await run_store_failover(
            cluster,
            store.url,
            kafka_bootstrap,
            topic,
            kill,
            lambda old: store.wait_failover(census, old),
            "Redis Cluster primary SIGKILL (3 replicas, via LB)",
        )
    finally:
        if cluster is not None:
            await cluster.stop()  # the replicas drain while the store still answers
        store.stop()
