"""Who owns consumer instance (group, name): the cluster-wide directory, Redis or in-memory.

A record is one JSON document per instance: owner node id, epoch, the spec it was created
with, its subscription or assignment, and positions saved on drain. Every ownership change is
a compare-and-set on (owner, epoch) done in a short Lua script, so two replicas can never both
believe they own an instance. Records expire after ``consumer.instance.timeout.ms`` without a
refresh, the same clock as local idle expiry. Node leases say which replicas are alive and
where they are reachable; a record never carries a URL, so a forged record cannot make a
replica forward anywhere but to a live registered node.

The Redis store (one server, Sentinel or Cluster) is :mod:`sessions.redis_store`; this module
is the protocol, the in-memory store and :func:`open_directory`, which picks one by URL.
"""

from __future__ import annotations

import time
from typing import Protocol

from .errors import StoreUnavailable, TooManyInstances
from .record import InstanceRecord, lease_key, record_key, url_key
from .redis_store import MAX_CONNECTIONS, WAIT_REPLICAS, RedisDirectory

__all__ = [
    "MAX_CONNECTIONS",
    "WAIT_REPLICAS",
    "Directory",
    "InstanceRecord",
    "MemoryDirectory",
    "RedisDirectory",
    "StoreUnavailable",
    "lease_key",
    "open_directory",
    "record_key",
    "url_key",
]


class Directory(Protocol):
    """The operations routing and the local registry need; both stores implement it."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def create(self, record: InstanceRecord, ttl_ms: int, limit: int = 0) -> bool: ...
    async def get(self, group: str, name: str) -> InstanceRecord | None: ...
    async def update(
        self, record: InstanceRecord, ttl_ms: int, expect: tuple[str, int] | None = None
    ) -> bool: ...
    async def claim(
        self,
        group: str,
        name: str,
        expect_owner: str,
        expect_epoch: int,
        new_owner: str,
        ttl_ms: int,
    ) -> InstanceRecord | None: ...
    async def delete(self, group: str, name: str, owner: str, epoch: int) -> bool: ...
    async def touch(self, keys: list[tuple[str, str]], ttl_ms: int) -> None: ...
    async def renew_lease(
        self, node_id: str, url: str, ttl_ms: int, *, slot: str | None = None
    ) -> bool: ...
    async def take_over_url(self, slot: str, node_id: str, ttl_ms: int) -> str | None: ...
    async def drop_lease(self, node_id: str) -> None: ...
    async def lease(self, node_id: str) -> str | None: ...


# --- in memory (one replica) -----------------------------------------------------------------


class MemoryDirectory:
    """Single-replica directory with the same semantics (TTLs included), for ``memory://``."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], tuple[bytes, float]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._urls: dict[str, str] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def _live(self, key: tuple[str, str]) -> InstanceRecord | None:
        item = self._records.get(key)
        if item is None:
            return None
        raw, deadline = item
        if time.monotonic() >= deadline:
            del self._records[key]
            return None
        return InstanceRecord.loads(raw)

    def _put(self, record: InstanceRecord, ttl_ms: int) -> None:
        self._records[(record.group, record.name)] = (
            record.dumps(),
            time.monotonic() + ttl_ms / 1000,
        )

    async def create(self, record: InstanceRecord, ttl_ms: int, limit: int = 0) -> bool:
        if self._live((record.group, record.name)) is not None:
            return False
        if limit > 0 and sum(self._live(k) is not None for k in list(self._records)) >= limit:
            raise TooManyInstances(limit, "cluster")
        self._put(record, ttl_ms)
        return True

    async def get(self, group: str, name: str) -> InstanceRecord | None:
        return self._live((group, name))

    async def update(
        self, record: InstanceRecord, ttl_ms: int, expect: tuple[str, int] | None = None
    ) -> bool:
        cur = self._live((record.group, record.name))
        if cur is None or (cur.owner, cur.epoch) != (expect or (record.owner, record.epoch)):
            return False
        self._put(record, ttl_ms)
        return True

    async def claim(
        self,
        group: str,
        name: str,
        expect_owner: str,
        expect_epoch: int,
        new_owner: str,
        ttl_ms: int,
    ) -> InstanceRecord | None:
        cur = self._live((group, name))
        if cur is None or (cur.owner, cur.epoch) != (expect_owner, expect_epoch):
            return None
        cur.owner, cur.epoch = new_owner, cur.epoch + 1
        self._put(cur, ttl_ms)
        return cur

    async def delete(self, group: str, name: str, owner: str, epoch: int) -> bool:
        cur = self._live((group, name))
        if cur is None or (cur.owner, cur.epoch) != (owner, epoch):
            return False
        del self._records[(group, name)]
        return True

    async def touch(self, keys: list[tuple[str, str]], ttl_ms: int) -> None:
        for key in keys:
            cur = self._live(key)
            if cur is not None:
                self._put(cur, ttl_ms)

    async def renew_lease(
        self, node_id: str, url: str, ttl_ms: int, *, slot: str | None = None
    ) -> bool:
        existed = self._leases.get(node_id, ("", 0.0))[1] > time.monotonic()
        self._leases[node_id] = (url, time.monotonic() + ttl_ms / 1000)
        self._urls[slot or url] = node_id
        return existed

    async def take_over_url(self, slot: str, node_id: str, ttl_ms: int) -> str | None:
        previous = self._urls.get(slot)
        self._urls[slot] = node_id
        if previous is None or previous == node_id:
            return None
        self._leases.pop(previous, None)
        return previous

    async def drop_lease(self, node_id: str) -> None:
        self._leases.pop(node_id, None)

    async def lease(self, node_id: str) -> str | None:
        item = self._leases.get(node_id)
        if item is None or item[1] <= time.monotonic():
            return None
        return item[0]


def open_directory(
    url: str, *, timeout_s: float = 2.0, wait_replicas: int | None = None
) -> Directory:
    """``memory://`` or any Redis form :func:`sessions.redis_connect.parse_store_url` takes.

    ``wait_replicas``: replicas of the store that must confirm each ownership change before
    it is acted on (None: :data:`~sessions.redis_store.WAIT_REPLICAS`, whose -1 means 1 when
    the store replicates and 0 for a lone Redis).
    """
    if url == "memory://":
        return MemoryDirectory()
    return RedisDirectory(url, timeout_s=timeout_s, wait_replicas=wait_replicas)
