"""The Redis directory against a real redis-server: Lua compare-and-set, TTLs, leases, outages."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from sessions.directory import InstanceRecord, RedisDirectory, StoreUnavailable


def rec(owner: str = "n1", epoch: int = 1, name: str = "c") -> InstanceRecord:
    return InstanceRecord(
        "g:1", name, owner, epoch, {"group": "g:1", "name": name}, {"topics": ["t"]}
    )


@pytest.fixture
async def directory(redis_url: str):
    d = RedisDirectory(redis_url, prefix=f"test-{uuid.uuid4().hex[:8]}:", timeout_s=1.0)
    await d.start()
    yield d
    await d.stop()


async def test_create_unique_get_roundtrip(directory: RedisDirectory) -> None:
    assert await directory.create(rec(), 10_000)
    assert not await directory.create(rec("n2"), 10_000)
    got = await directory.get("g:1", "c")
    assert got == rec()
    assert await directory.get("g:1", "other") is None


async def test_group_and_name_cannot_collide(directory: RedisDirectory) -> None:
    a = InstanceRecord("a:b", "c", "n1", 1, {})
    b = InstanceRecord("a", "b:c", "n1", 1, {})
    assert await directory.create(a, 10_000)
    assert await directory.create(b, 10_000)


async def test_cas_ownership(directory: RedisDirectory) -> None:
    await directory.create(rec(), 10_000)
    assert await directory.claim("g:1", "c", "n1", 0, "n2", 10_000) is None
    won = await directory.claim("g:1", "c", "n1", 1, "n2", 10_000)
    assert (won.owner, won.epoch, won.subscription) == ("n2", 2, {"topics": ["t"]})
    assert not await directory.update(rec("n1", 1), 10_000)
    new = rec("n2", 2)
    new.subscription = {"pattern": "x.*"}
    assert await directory.update(new, 10_000)
    released = rec("", 2)
    assert await directory.update(released, 10_000, expect=("n2", 2))
    again = await directory.claim("g:1", "c", "", 2, "n3", 10_000)
    assert (again.owner, again.epoch) == ("n3", 3)
    assert not await directory.delete("g:1", "c", "n2", 2)
    assert await directory.delete("g:1", "c", "n3", 3)
    assert await directory.get("g:1", "c") is None


async def test_concurrent_claims_have_one_winner(directory: RedisDirectory) -> None:
    await directory.create(rec(), 10_000)
    results = await asyncio.gather(
        *(directory.claim("g:1", "c", "n1", 1, f"n{i}", 10_000) for i in range(2, 12))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].epoch == 2


async def test_ttl_touch_and_leases(directory: RedisDirectory) -> None:
    await directory.create(rec(), 300)
    for _ in range(4):
        await asyncio.sleep(0.15)
        await directory.touch([("g:1", "c")], 300)
    assert await directory.get("g:1", "c") is not None  # kept alive by touches
    await asyncio.sleep(0.4)
    assert await directory.get("g:1", "c") is None
    assert not await directory.renew_lease("n1", "http://a:1", 300)
    assert await directory.renew_lease("n1", "http://a:1", 300)
    assert await directory.lease("n1") == "http://a:1"
    await asyncio.sleep(0.4)
    assert await directory.lease("n1") is None
    assert not await directory.renew_lease("n1", "http://a:1", 300)


async def test_outage_is_a_bounded_store_unavailable(redis_server) -> None:
    d = RedisDirectory(redis_server.url, timeout_s=0.5)
    await d.start()
    try:
        assert await d.create(rec(), 10_000)
        redis_server.pause()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await d.get("g:1", "c")
        assert time.monotonic() - started < 2.0
        redis_server.resume()
        for _ in range(20):  # recovers by itself
            try:
                assert await d.get("g:1", "c") == rec()
                break
            except StoreUnavailable:
                await asyncio.sleep(0.2)
        else:
            pytest.fail("directory did not recover after Redis resumed")
    finally:
        redis_server.resume()
        await d.stop()


async def test_cluster_census_caps_creates_and_forgets_expired_and_deleted(
    directory: RedisDirectory,
) -> None:
    from sessions.errors import TooManyInstances

    assert await directory.create(rec(name="a"), 10_000, limit=2)
    assert await directory.create(rec(name="b"), 400, limit=2)
    with pytest.raises(TooManyInstances):
        await directory.create(rec(name="c"), 10_000, limit=2)
    assert await directory.get("g:1", "c") is None  # refused means not written
    await asyncio.sleep(0.5)  # "b" expired: it no longer counts
    assert await directory.create(rec(name="c"), 10_000, limit=2)
    assert await directory.delete("g:1", "a", "n1", 1)
    assert await directory.create(rec(name="d"), 10_000, limit=2)
    await directory.touch([("g:1", "c"), ("g:1", "gone")], 10_000)  # touching keeps counting
    with pytest.raises(TooManyInstances):
        await directory.create(rec(name="e"), 10_000, limit=2)
    assert await directory.create(rec(name="e"), 10_000)  # 0: no limit


async def test_unknown_record_fields_survive_a_round_trip(directory: RedisDirectory) -> None:
    """A newer version's fields are kept, so two versions can share the directory."""
    import orjson

    raw = orjson.loads(rec().dumps())
    raw["future_field"] = {"x": 1}
    loaded = InstanceRecord.loads(orjson.dumps(raw))
    assert loaded.extra == {"future_field": {"x": 1}}
    assert await directory.create(loaded, 10_000)
    got = await directory.get("g:1", "c")
    assert got is not None and got.extra == {"future_field": {"x": 1}}
    claimed = await directory.claim("g:1", "c", "n1", 1, "n2", 10_000)
    assert claimed is not None and claimed.extra == {"future_field": {"x": 1}}
