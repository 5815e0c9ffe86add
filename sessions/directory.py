"""Who owns consumer instance (group, name): the cluster-wide directory, Redis or in-memory.

A record is one JSON document per instance: owner node id, epoch, the spec it was created
with, its subscription or assignment, and positions saved on drain. Every ownership change is
a compare-and-set on (owner, epoch) done in a short Lua script, so two replicas can never both
believe they own an instance. Records expire after ``consumer.instance.timeout.ms`` without a
refresh, the same clock as local idle expiry. Node leases say which replicas are alive and
where they are reachable; a record never carries a URL, so a forged record cannot make a
replica forward anywhere but to a live registered node.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from .errors import StoreUnavailable, TooManyInstances

__all__ = [
    "Directory",
    "InstanceRecord",
    "MemoryDirectory",
    "RedisDirectory",
    "StoreUnavailable",
    "open_directory",
]


@dataclass
class InstanceRecord:
    """The directory's document for one instance (JSON in Redis, one key per instance)."""

    group: str
    name: str
    owner: str  # node id; "" when released (anyone may adopt at once)
    epoch: int
    spec: dict[str, Any]
    # {"topics": [...]} | {"pattern": "..."} | {"partitions": [[t, p], ...]} | {}
    subscription: dict[str, Any] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> offset
    # The group's committed offset of each saved position at drain time (see Handover).
    baseline: dict[str, int] = field(default_factory=dict)
    # Fields written by a newer version of the gateway: kept and written back untouched, so
    # two versions can share one directory during a rolling upgrade.
    extra: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> bytes:
        doc = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return orjson.dumps({**self.extra, **doc})

    @classmethod
    def loads(cls, raw: bytes | str) -> InstanceRecord:
        doc = orjson.loads(raw)
        known = {k: doc.pop(k) for k in _FIELDS if k in doc}
        return cls(**known, extra=doc)


_FIELDS = ("group", "name", "owner", "epoch", "spec", "subscription", "positions", "baseline")


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


def record_key(prefix: str, group: str, name: str) -> str:
    # Length-prefixed so that no (group, name) pair can collide with another.
    return f"{prefix}inst:{len(group)}:{group}:{name}"


def lease_key(prefix: str, node_id: str) -> str:
    return f"{prefix}node:{node_id}"


def url_key(prefix: str, url: str) -> str:
    # Which node last registered this address: a node restarted in place (same node.url,
    # new node id) finds its dead predecessor here.
    return f"{prefix}url:{url}"


# --- Redis ----------------------------------------------------------------------------------

# The census of live instances is a sorted set: member = record key, score = when the record
# expires (server time, ms). Expired members are dropped before counting, so a crashed
# replica's instances stop counting when their records expire. Scores follow create and
# touch (every served request); an instance only ever claimed or updated since may drop out
# of the census a little before its record expires, which only makes the cap softer.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Create unless the name is taken (0) or the cluster holds ``limit`` instances already (-1).
_CREATE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
return 1
"""
)

# Refresh the TTL of each record that still exists (KEYS[#KEYS] is the census).
_TOUCH = (
    _NOW
    + """
local census = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  if redis.call('PEXPIRE', KEYS[i], ARGV[1]) == 1 then
    redis.call('ZADD', census, 'XX', now + tonumber(ARGV[1]), KEYS[i])
  end
end
return 1
"""
)

# Replace the record only while (owner, epoch) still match.
_UPDATE = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local rec = cjson.decode(cur)
if rec['owner'] ~= ARGV[1] or tonumber(rec['epoch']) ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
"""

# Take ownership: (owner, epoch) must match what the caller saw; the epoch is bumped.
_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if not cur then return false end
local rec = cjson.decode(cur)
if rec['owner'] ~= ARGV[1] or tonumber(rec['epoch']) ~= tonumber(ARGV[2]) then return false end
rec['owner'] = ARGV[3]
rec['epoch'] = tonumber(rec['epoch']) + 1
local out = cjson.encode(rec)
redis.call('SET', KEYS[1], out, 'PX', ARGV[4])
return out
"""

_DELETE = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local rec = cjson.decode(cur)
if rec['owner'] ~= ARGV[1] or tonumber(rec['epoch']) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], KEYS[1])
return redis.call('DEL', KEYS[1])
"""


# Connections one replica opens to Redis at most.
MAX_CONNECTIONS = 64


class RedisDirectory:
    """The shared directory. Every call is bounded by ``timeout_s``; failures raise
    :class:`StoreUnavailable` so callers can answer 503 instead of hanging."""

    def __init__(self, url: str, *, prefix: str = "eg:", timeout_s: float = 2.0) -> None:
        import redis.asyncio as aioredis

        # A blocking pool: past its size, callers wait (bounded by ``timeout_s``) for a free
        # connection instead of failing at once with "Too many connections", which a drain
        # releasing hundreds of instances together would otherwise meet.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            health_check_interval=10,
        )
        self._pool = pool
        self._redis = aioredis.Redis(connection_pool=pool)
        self._prefix = prefix
        self._timeout = timeout_s
        self._update = self._redis.register_script(_UPDATE)
        self._claim = self._redis.register_script(_CLAIM)
        self._delete = self._redis.register_script(_DELETE)
        self._create = self._redis.register_script(_CREATE)
        self._touch = self._redis.register_script(_TOUCH)
        self._census = f"{prefix}census"

    async def start(self) -> None:
        try:
            await self._call(self._redis.ping())
        except StoreUnavailable:
            pass  # the gateway starts without Redis and recovers when it returns

    async def stop(self) -> None:
        await self._redis.aclose()
        await self._pool.disconnect()  # a pool passed in is not closed with the client

    async def _call(self, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, self._timeout)
        except (TimeoutError, OSError) as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        except Exception as exc:
            import redis.exceptions as rex

            if isinstance(exc, rex.RedisError):
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
            raise

    def _key(self, group: str, name: str) -> str:
        return record_key(self._prefix, group, name)

    async def create(self, record: InstanceRecord, ttl_ms: int, limit: int = 0) -> bool:
        """False if the name is taken; :class:`TooManyInstances` if the cluster holds
        ``limit`` live instances already (0: no limit)."""
        key = self._key(record.group, record.name)
        args: list[str | int | bytes] = [record.dumps(), ttl_ms, limit]
        done = await self._call(self._create(keys=[key, self._census], args=args))
        if done == -1:
            raise TooManyInstances(limit, "cluster")
        return bool(done)

    async def get(self, group: str, name: str) -> InstanceRecord | None:
        raw = await self._call(self._redis.get(self._key(group, name)))
        return InstanceRecord.loads(raw) if raw else None

    async def update(
        self, record: InstanceRecord, ttl_ms: int, expect: tuple[str, int] | None = None
    ) -> bool:
        """Write ``record`` if the stored (owner, epoch) is ``expect`` (default: the record's)."""
        key = self._key(record.group, record.name)
        owner, epoch = expect or (record.owner, record.epoch)
        args: list[str | int | bytes] = [owner, epoch, record.dumps(), ttl_ms]
        return bool(await self._call(self._update(keys=[key], args=args)))

    async def claim(
        self,
        group: str,
        name: str,
        expect_owner: str,
        expect_epoch: int,
        new_owner: str,
        ttl_ms: int,
    ) -> InstanceRecord | None:
        key = self._key(group, name)
        out = await self._call(
            self._claim(keys=[key], args=[expect_owner, expect_epoch, new_owner, ttl_ms])
        )
        return InstanceRecord.loads(out) if out else None

    async def delete(self, group: str, name: str, owner: str, epoch: int) -> bool:
        key = self._key(group, name)
        return bool(await self._call(self._delete(keys=[key, self._census], args=[owner, epoch])))

    async def touch(self, keys: list[tuple[str, str]], ttl_ms: int) -> None:
        if not keys:
            return
        records = [self._key(group, name) for group, name in keys]
        await self._call(self._touch(keys=[*records, self._census], args=[ttl_ms]))

    async def renew_lease(
        self, node_id: str, url: str, ttl_ms: int, *, slot: str | None = None
    ) -> bool:
        """Renew; returns False when the lease had lapsed (others may have adopted since).

        ``url`` is where the node is reached, ``slot`` (default: the URL) where it sits:
        the key :meth:`take_over_url` looks at when the node's successor starts.
        """
        key = lease_key(self._prefix, node_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.exists(key)
        pipe.set(key, url, px=ttl_ms)
        pipe.set(url_key(self._prefix, slot or url), node_id, px=ttl_ms)
        existed, _, _ = await self._call(pipe.execute())
        return bool(existed)

    async def take_over_url(self, slot: str, node_id: str, ttl_ms: int) -> str | None:
        """Register ``node_id`` at ``slot``; drop the lease of the node that had it before.

        Only one process can hold a slot (listen on an address, or be worker i of the
        replica there), so a previous holder is dead: its lease goes now, and its instances
        are adopted at once instead of after the lease expires.
        """
        previous = await self._call(
            self._redis.set(url_key(self._prefix, slot), node_id, px=ttl_ms, get=True)
        )
        if isinstance(previous, bytes):
            previous = previous.decode()
        if not previous or previous == node_id:
            return None
        await self.drop_lease(previous)
        return str(previous)

    async def drop_lease(self, node_id: str) -> None:
        await self._call(self._redis.delete(lease_key(self._prefix, node_id)))

    async def lease(self, node_id: str) -> str | None:
        raw = await self._call(self._redis.get(lease_key(self._prefix, node_id)))
        return raw.decode() if isinstance(raw, bytes) else raw


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


def open_directory(url: str, *, timeout_s: float = 2.0) -> Directory:
    if url == "memory://":
        return MemoryDirectory()
    return RedisDirectory(url, timeout_s=timeout_s)
