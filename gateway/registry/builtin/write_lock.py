"""Cluster-wide serialization of registry writes, so two replicas never allocate one id.

With a Redis session store the lock is a Redis key taken with ``SET NX PX`` and a random
token, released only by its holder (compare-and-delete in Lua). Its TTL bounds how long a
crashed holder blocks the others; every step a holder takes is itself bounded well inside it.
Requests of one replica queue on a local lock first, so only one of them polls Redis.
In ``memory://`` mode (a single node by definition) the local lock is all there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from .errors import no_writer_lock, timed_out

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WriteLock(Protocol):
    def hold(self, wait_s: float) -> contextlib.AbstractAsyncContextManager[None]: ...
    async def close(self) -> None: ...


class LocalWriteLock:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def hold(self, wait_s: float) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(wait_s):
                await self._lock.acquire()
        except TimeoutError:
            raise timed_out("waiting for other schema registry writes") from None
        try:
            yield
        finally:
            self._lock.release()

    async def close(self) -> None:
        return None


class RedisWriteLock:
    def __init__(self, url: str, key: str, ttl_ms: int, io_timeout_s: float = 2.0) -> None:
        from sessions.redis_connect import connect_url

        # Every session.store.url form (one server, Sentinel, Cluster): the lock is one key,
        # so it lives on one primary whatever the deployment.
        self._client = connect_url(url, timeout_s=io_timeout_s)
        self._redis: Any = self._client.redis
        self._key = key
        self._ttl_ms = ttl_ms
        self._local = LocalWriteLock()
        self._release = self._redis.register_script(_RELEASE)

    @asynccontextmanager
    async def hold(self, wait_s: float) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        async with self._local.hold(wait_s):
            token = uuid.uuid4().hex
            await self._acquire(token, deadline)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await self._release(keys=[self._key], args=[token])

    async def _acquire(self, token: str, deadline: float) -> None:
        import redis.exceptions as rex

        loop = asyncio.get_running_loop()
        while True:
            try:
                if await self._redis.set(self._key, token, nx=True, px=self._ttl_ms):
                    return
            except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
                raise no_writer_lock(f"session store unavailable ({exc})") from exc
            if loop.time() >= deadline:
                raise timed_out("waiting for another replica's schema registry write")
            await asyncio.sleep(random.uniform(0.002, 0.02))

    async def close(self) -> None:
        await self._client.close()


def open_write_lock(store_url: str, topic: str, ttl_ms: int) -> WriteLock:
    """Replicas share a lock per registry topic: distinct registries never contend."""
    if store_url == "memory://":
        return LocalWriteLock()
    return RedisWriteLock(store_url, f"eg:schema-registry:lock:{topic}", ttl_ms)
