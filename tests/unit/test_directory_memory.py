"""Ownership semantics of the directory, on the in-memory implementation (pure logic).

The Redis implementation runs the same operations in Lua; it is exercised against a real Redis
in tests/integration/test_directory_redis.py.
"""

from __future__ import annotations

import asyncio

from sessions.directory import InstanceRecord, MemoryDirectory


def rec(owner: str = "n1", epoch: int = 1) -> InstanceRecord:
    return InstanceRecord("g", "c", owner, epoch, {"group": "g", "name": "c"})


async def test_create_is_unique_and_expires() -> None:
    d = MemoryDirectory()
    assert await d.create(rec(), 200)
    assert not await d.create(rec("n2"), 200)
    await asyncio.sleep(0.25)
    assert await d.get("g", "c") is None
    assert await d.create(rec("n2"), 200)


async def test_claim_is_compare_and_set_and_bumps_epoch() -> None:
    d = MemoryDirectory()
    await d.create(rec(), 10_000)
    assert await d.claim("g", "c", "n1", 2, "n2", 10_000) is None  # stale epoch
    won = await d.claim("g", "c", "n1", 1, "n2", 10_000)
    assert (won.owner, won.epoch) == ("n2", 2)
    assert await d.claim("g", "c", "n1", 1, "n3", 10_000) is None  # n1's view is stale now
    assert not await d.update(rec("n1", 1), 10_000)  # the old owner can no longer write
    assert not await d.delete("g", "c", "n1", 1)
    assert await d.delete("g", "c", "n2", 2)


async def test_leases() -> None:
    d = MemoryDirectory()
    assert not await d.renew_lease("n1", "http://a", 100)  # first renewal: nothing lapsed yet
    assert await d.renew_lease("n1", "http://a", 100)
    assert await d.lease("n1") == "http://a"
    await asyncio.sleep(0.15)
    assert await d.lease("n1") is None
    assert not await d.renew_lease("n1", "http://a", 100)  # it had lapsed
