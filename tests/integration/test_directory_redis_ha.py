"""The Redis directory against real Sentinel and real Redis Cluster deployments.

Every Directory method on both, the Cluster key layout (one slot), ownership changes that wait
for a replica (and refuse to count as made when none confirms), and a primary SIGKILLed: every
change acknowledged before the kill is on the promoted replica, calls fail fast (503) during
the failover and work again by themselves afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from redis.crc import key_slot

from sessions.errors import StoreUnavailable, TooManyInstances
from sessions.record import InstanceRecord
from sessions.redis_store import NotDurable, RedisDirectory
from tests.harness import process
from tests.harness.redis_ha import Node, RedisClusterSet, RedisSentinelSet

T = TypeVar("T")

KINDS = ["sentinel", "cluster"]


@pytest.fixture(scope="module")
def sentinel_set() -> Iterator[RedisSentinelSet]:
    with RedisSentinelSet() as deployment:
        yield deployment


@pytest.fixture(scope="module")
def cluster_set() -> Iterator[RedisClusterSet]:
    with RedisClusterSet() as deployment:
        yield deployment


@pytest.fixture(params=KINDS)
def store_url(request: pytest.FixtureRequest) -> str:
    deployment = request.getfixturevalue(f"{request.param}_set")
    return str(deployment.url)


@pytest.fixture
async def directory(store_url: str) -> AsyncIterator[RedisDirectory]:
    d = RedisDirectory(store_url, prefix=f"t-{uuid.uuid4().hex[:8]}:", timeout_s=2.0)
    await d.start()
    yield d
    await d.stop()


def rec(owner: str = "n1", epoch: int = 1, name: str = "c") -> InstanceRecord:
    return InstanceRecord(
        "g:1", name, owner, epoch, {"group": "g:1", "name": name}, {"topics": ["t"]}
    )


async def test_every_directory_method(directory: RedisDirectory) -> None:
    assert await directory.wait_replicas() == 1  # both deployments replicate
    assert await directory.create(rec(), 10_000)
    assert not await directory.create(rec("n2"), 10_000)
    assert await directory.get("g:1", "c") == rec()
    assert await directory.get("g:1", "other") is None
    assert await directory.claim("g:1", "c", "n1", 0, "n2", 10_000) is None
    won = await directory.claim("g:1", "c", "n1", 1, "n2", 10_000)
    assert won is not None and (won.owner, won.epoch, won.subscription) == (
        "n2",
        2,
        {"topics": ["t"]},
    )
    assert not await directory.update(rec("n1", 1), 10_000)
    moved = rec("n2", 2)
    moved.subscription = {"pattern": "x.*"}
    assert await directory.update(moved, 10_000)
    assert await directory.update(rec("", 2), 10_000, expect=("n2", 2))  # released
    again = await directory.claim("g:1", "c", "", 2, "n3", 10_000)
    assert again is not None and (again.owner, again.epoch) == ("n3", 3)
    assert not await directory.delete("g:1", "c", "n2", 2)
    assert await directory.delete("g:1", "c", "n3", 3)
    assert await directory.get("g:1", "c") is None

    assert await directory.create(rec(name="t"), 400)
    for _ in range(3):
        await asyncio.sleep(0.2)
        await directory.touch([("g:1", "t"), ("g:1", "gone")], 400)
    assert await directory.get("g:1", "t") is not None  # kept alive by touches

    assert not await directory.renew_lease("n1", "http://a:1", 5_000, slot="http://a:1#w0")
    assert await directory.renew_lease("n1", "http://a:1", 5_000, slot="http://a:1#w0")
    assert await directory.lease("n1") == "http://a:1"
    assert await directory.take_over_url("http://a:1#w0", "n1", 5_000) is None  # itself
    assert await directory.take_over_url("http://a:1#w0", "n9", 5_000) == "n1"
    assert await directory.lease("n1") is None  # the predecessor's lease was retired
    await directory.renew_lease("n9", "http://a:1", 300)
    await directory.drop_lease("n9")
    assert await directory.lease("n9") is None


async def test_concurrent_claims_have_one_winner(directory: RedisDirectory) -> None:
    await directory.create(rec(), 10_000)
    results = await asyncio.gather(
        *(directory.claim("g:1", "c", "n1", 1, f"n{i}", 10_000) for i in range(2, 12))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].epoch == 2


async def test_census_caps_creates(directory: RedisDirectory) -> None:
    assert await directory.create(rec(name="a"), 10_000, limit=2)
    assert await directory.create(rec(name="b"), 400, limit=2)
    with pytest.raises(TooManyInstances):
        await directory.create(rec(name="c"), 10_000, limit=2)
    await asyncio.sleep(0.5)  # "b" expired: it no longer counts
    assert await directory.create(rec(name="c"), 10_000, limit=2)
    assert await directory.delete("g:1", "a", "n1", 1)
    assert await directory.create(rec(name="d"), 10_000, limit=2)


async def test_cluster_keys_live_in_one_slot(cluster_set: RedisClusterSet) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    d = RedisDirectory(cluster_set.url, prefix=prefix)
    await d.start()
    try:
        for i in range(5):
            await d.create(rec(name=f"c{i}"), 10_000, limit=100)
        await d.renew_lease("n1", "http://a:1", 5_000)
        node = cluster_set.nodes[0]
        keys: list[bytes] = []
        for n in cluster_set.nodes:
            if n.query("ROLE")[0] == b"master":
                keys += n.query("KEYS", f"{prefix}*")
        assert len(keys) == 5 + 1 + 2  # records, census, lease and URL slot
        assert len({key_slot(k) for k in keys}) == 1, keys
        assert int(node.query("CLUSTER", "KEYSLOT", d.prefix)) == key_slot(keys[0])
    finally:
        await d.stop()


async def test_health_probe_reads_the_census_on_every_form(store_url: str) -> None:
    from gateway.observability.health import HealthProbe

    d = RedisDirectory(store_url)  # the gateway's own prefix: the census /metrics reads
    await d.start()
    probe = HealthProbe(
        kafka=None,  # type: ignore[arg-type]
        sessions=None,  # type: ignore[arg-type]
        store_url=store_url,
        registry=None,
        timeout_s=2.0,
    )
    name = uuid.uuid4().hex
    try:
        before = await probe.census()
        assert before is not None
        assert await d.create(rec(name=name), 10_000)
        assert await probe.census() == before + 1
        await probe._ping_redis()
    finally:
        await d.delete("g:1", name, "n1", 1)
        await probe.stop()
        await d.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_change_no_replica_confirms_is_not_durable(kind: str) -> None:
    """Replicas frozen: the primary applies the change but nobody confirms it, so the call
    fails (503) instead of being acted upon; once a replica answers again, it works."""
    deployment: RedisSentinelSet | RedisClusterSet
    deployment = RedisSentinelSet() if kind == "sentinel" else RedisClusterSet()
    deployment.start()
    d = RedisDirectory(deployment.url, prefix="nd:", timeout_s=2.0)
    frozen = []
    try:
        await d.start()
        assert await d.create(rec(), 10_000)
        if isinstance(deployment, RedisSentinelSet):
            primary = deployment.primary_port()
            replicas = [n for n in deployment.servers if n.port != primary]
        else:
            owner = deployment.owner_port(d.prefix)
            replicas = [n for n in deployment.nodes if _replica_of(n, owner)]
        assert replicas
        for n in replicas:
            assert n.process is not None
            process.freeze(n.process)
            frozen.append(n)
        started = time.monotonic()
        with pytest.raises(NotDurable):
            await d.claim("g:1", "c", "n1", 1, "n2", 10_000)
        with pytest.raises(StoreUnavailable):
            await d.renew_lease("n2", "http://a:1", 5_000)
        assert time.monotonic() - started < 4.0  # bounded: WAIT's own timeout, twice
        for n in frozen:
            _resume(n)
        frozen = []
        got = await _eventually(lambda: d.claim("g:1", "c", "n2", 2, "n3", 10_000))
        # The refused claim had landed on the primary: it names n2 at epoch 2, and a claim
        # from there (what the router's retry does) succeeds once a replica confirms again.
        assert got is not None and (got.owner, got.epoch) == ("n3", 3)
    finally:
        for n in frozen:
            _resume(n)
        await d.stop()
        deployment.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_primary_killed_acknowledged_changes_survive(kind: str) -> None:
    # Two replicas per primary on both: after the failover the new primary still has one,
    # so ownership changes are confirmed again (with one, they wait for a replica to return).
    deployment: RedisSentinelSet | RedisClusterSet
    deployment = RedisSentinelSet() if kind == "sentinel" else RedisClusterSet(replicas=2)
    deployment.start()
    d = RedisDirectory(deployment.url, prefix="fo:", timeout_s=1.0)
    try:
        await d.start()
        # Acknowledged just before the kill, with no pause: only WAIT makes them safe.
        for i in range(50):
            assert await d.create(rec(name=f"c{i}"), 60_000)
            assert await d.claim("g:1", f"c{i}", "n1", 1, "n2", 60_000) is not None
        assert await d.renew_lease("n2", "http://a:1", 60_000) is False
        if isinstance(deployment, RedisSentinelSet):
            old = deployment.kill_primary().port
        else:
            old = deployment.kill_owner(d.prefix).port
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await d.get("g:1", "c0")  # fails fast, no hang
        assert time.monotonic() - started < 3.0
        if isinstance(deployment, RedisSentinelSet):
            deployment.wait_failover(old)
        else:
            deployment.wait_failover(d.prefix, old)
        # Recovers by itself (the client re-discovers the primary / re-reads the slot map).
        first = await _eventually(lambda: d.get("g:1", "c0"), timeout=30)
        recovered = time.monotonic() - started
        assert first is not None and (first.owner, first.epoch) == ("n2", 2), first
        for i in range(50):
            got = await d.get("g:1", f"c{i}")
            assert got is not None and (got.owner, got.epoch) == ("n2", 2), (i, got)
        assert await d.lease("n2") == "http://a:1"
        assert await d.claim("g:1", "c0", "n2", 2, "n3", 60_000) is not None
        # Scripts run by digest reload themselves on the new primary (its cache is empty).
        await d.touch([("g:1", "c1")], 90_000)
        assert await d.renew_lease("n2", "http://a:1", 60_000)
        print(f"{kind}: directory answered again {recovered:.1f} s after the kill")
    finally:
        await d.stop()
        deployment.stop()


def _replica_of(node: Node, primary_port: int) -> bool:
    if not node.running:
        return False
    role = node.query("ROLE")
    return bool(role[0] == b"slave" and int(role[2]) == primary_port)


def _resume(node: Node) -> None:
    if node.process is not None and node.process.poll() is None:
        os.kill(node.process.pid, signal.SIGCONT)


async def _eventually(call: Callable[[], Awaitable[T]], timeout: float = 20.0) -> T:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_sentinel_with_a_password() -> None:
    """The URL's password reaches the Redis servers found through the sentinels; a wrong one
    is a clear StoreUnavailable, not a hang."""
    with RedisSentinelSet(password="s3cret") as deployment:
        assert ":s3cret@" in deployment.url
        d = RedisDirectory(deployment.url, prefix="pw:")
        wrong = RedisDirectory(deployment.url.replace("s3cret", "wrong"), prefix="pw:")
        try:
            await d.start()
            assert await d.create(rec(), 10_000)
            assert await d.get("g:1", "c") == rec()
            with pytest.raises(StoreUnavailable):
                await wrong.get("g:1", "c")
        finally:
            await d.stop()
            await wrong.stop()
