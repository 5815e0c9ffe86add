"""The shared directory in Redis: one server, a Sentinel-monitored primary, or a Redis Cluster.

Every ownership change is a short Lua script (compare-and-set on owner and epoch) on the
primary; see :mod:`sessions.directory` for the model. What this module adds is *durability*:

**An ownership change is acted upon only once a replica has it.** Redis replicates
asynchronously, so a change the primary acknowledged can vanish if the primary dies before
passing it on and a replica is promoted. A vanished claim would let the previous owner (or a
later claimer) serve the instance while this replica serves it too; a vanished lease renewal
would let the lease expire on the new primary while this replica believes it renewed, so
another replica could adopt its instances while it still serves them. So each change
(create, claim, update, delete, lease renewal, URL take-over, lease drop) is sent together with
``WAIT n timeout`` on the same connection (WAIT counts the replicas that acknowledged
everything that connection wrote). Fewer than ``n`` in time raises :class:`NotDurable` (a
:class:`~sessions.errors.StoreUnavailable`: the request answers 503 + Retry-After and is
retried): the change may or may not survive, so it is treated as not made. A renewal that is
not durable does not reset the fence clock of :mod:`sessions.lease`, so a replica whose
renewals stop reaching a replica fences itself before its lease could expire anywhere.

Sentinel promotes the most up-to-date reachable replica (at equal ``replica-priority``) and a
Cluster shard's replicas are ranked by replication offset, so a change one replica confirmed
is on the promoted replica after the primary fails. Record TTL refreshes (``touch``) are not
waited for: losing one costs a second of a TTL that has ``consumer.instance.timeout.ms`` to go.
Reads are never waited for: acting on a read means a compare-and-set, which is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .errors import StoreUnavailable, TooManyInstances
from .record import InstanceRecord, lease_key, record_key, url_key
from .redis_connect import StoreClient, connect, key_prefix, parse_store_url

# Connections one replica opens to Redis at most (per Cluster node).
MAX_CONNECTIONS = 64

# Replicas that must confirm an ownership change (``session.store.wait.replicas``): -1 is
# "auto": 1 behind Sentinel and on a Cluster with replicas, 0 for a lone Redis (plain URL;
# set 1 for a replicated primary behind one endpoint, e.g. a managed service).
WAIT_REPLICAS = -1
# How long WAIT waits for them (bounded further by the directory's own timeout). A healthy
# replica confirms within milliseconds; one that takes longer is as good as absent.
WAIT_TIMEOUT_MS = 500


class NotDurable(StoreUnavailable):
    """The primary applied a change but too few replicas confirmed it in time."""


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


# Renew a node's lease and the slot it sits at; 1 if the lease still existed (not lapsed).
_RENEW = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return existed
"""

# Register at a slot; the previous holder's node id (or nil).
_TAKE_SLOT = """
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return previous
"""

_DROP = """
return redis.call('DEL', KEYS[1])
"""


class RedisDirectory:
    """The shared directory. Every call is bounded by ``timeout_s``; failures raise
    :class:`StoreUnavailable` so callers can answer 503 instead of hanging."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "eg:",
        timeout_s: float = 2.0,
        wait_replicas: int | None = None,
    ) -> None:
        address = parse_store_url(url)
        self._client: StoreClient = connect(
            address, timeout_s=timeout_s, max_connections=MAX_CONNECTIONS
        )
        self._redis: Any = self._client.redis
        self._prefix = key_prefix(address, prefix)
        self._timeout = timeout_s
        # Past MAX_CONNECTIONS calls wait (inside their bound) rather than fail: a drain
        # releasing hundreds of instances at once must not meet "Too many connections".
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        setting = WAIT_REPLICAS if wait_replicas is None else wait_replicas
        self._wait: int | None = setting if setting >= 0 else _auto(address.has_replicas)
        self._wait_ms = max(1, min(WAIT_TIMEOUT_MS, int(timeout_s * 1000 / 2)))
        self._scripts = {
            text: self._redis.register_script(text)
            for text in (_UPDATE, _CLAIM, _DELETE, _CREATE, _TOUCH, _RENEW, _TAKE_SLOT, _DROP)
        }
        self._census = f"{self._prefix}census"

    @property
    def prefix(self) -> str:
        """The key prefix in use (with the hash tag in Cluster mode)."""
        return self._prefix

    async def wait_replicas(self) -> int:
        """Replicas each ownership change waits for (resolved on first use in Cluster mode)."""
        if self._wait is None:
            self._wait = 1 if await self._call(self._shard_replicas()) else 0
        return self._wait

    async def _shard_replicas(self) -> int:
        # The replicas of the shard that holds every key of ours (one hash tag): what the
        # primary itself reports (CLUSTER SLOTS leaves out replicas that have not synced).
        await self._redis.initialize()
        node = self._redis.get_node_from_key(self._census)
        role = await self._redis.execute_command("ROLE", target_nodes=node)
        return len(role[2]) if role and role[0] in (b"master", "master") else 0

    async def start(self) -> None:
        try:
            await self._call(self._redis.ping())
            await self.wait_replicas()
        except StoreUnavailable:
            pass  # the gateway starts without Redis and recovers when it returns

    async def stop(self) -> None:
        await self._client.close()

    async def _call(self, coro: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._slots:
                    return await coro
        except (TimeoutError, OSError) as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        except StoreUnavailable:
            raise
        except Exception as exc:
            import redis.exceptions as rex

            # RedisClusterException is no RedisError: "no reachable node" mid-failover is one.
            if isinstance(exc, (rex.RedisError, rex.RedisClusterException)):
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
            raise
        finally:
            if asyncio.iscoroutine(coro):
                coro.close()  # never awaited (timed out waiting for a slot): no warning

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script that needs no durability (reads, TTL refreshes)."""
        return await self._call(self._scripts[script](keys=keys, args=args))

    async def _change(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run an ownership change; return its result once enough replicas confirmed it."""
        wanted = await self.wait_replicas()
        if not wanted:
            return await self._run(script, keys, args)
        return await self._call(self._durably(script, keys, args, wanted))

    async def _durably(self, script: str, keys: list[str], args: list[Any], wanted: int) -> Any:
        # One pipeline is one connection: WAIT then counts replicas that have this write.
        pipe = self._redis.pipeline(transaction=False)
        pipe.eval(script, len(keys), *keys, *args)
        node = None
        if self._client.cluster:
            if self._redis._initialize:  # a slot map refresh is due (after a failure)
                await self._redis.initialize()
            node = self._redis.get_node_from_key(keys[0])
            pipe.execute_command("WAIT", wanted, self._wait_ms, target_nodes=node)
        else:
            pipe.execute_command("WAIT", wanted, self._wait_ms)
        result, acked = await pipe.execute()
        if node is not None and self._redis.get_node_from_key(keys[0]).name != node.name:
            # The slot moved while the pipeline ran (a MOVED redirected the script): the WAIT
            # went to the old primary and says nothing about the write.
            raise NotDurable("the session store's primary changed during the write; retry")
        if int(acked) < wanted:
            raise NotDurable(
                f"the session store did not confirm the change on {wanted} replica(s) within "
                f"{self._wait_ms} ms (it may be failing over); retry the request"
            )
        return result

    def _key(self, group: str, name: str) -> str:
        return record_key(self._prefix, group, name)

    async def create(self, record: InstanceRecord, ttl_ms: int, limit: int = 0) -> bool:
        """False if the name is taken; :class:`TooManyInstances` if the cluster holds
        ``limit`` live instances already (0: no limit)."""
        key = self._key(record.group, record.name)
        args: list[Any] = [record.dumps(), ttl_ms, limit]
        done = await self._change(_CREATE, [key, self._census], args)
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
        args: list[Any] = [owner, epoch, record.dumps(), ttl_ms]
        return bool(await self._change(_UPDATE, [key], args))

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
        out = await self._change(_CLAIM, [key], [expect_owner, expect_epoch, new_owner, ttl_ms])
        return InstanceRecord.loads(out) if out else None

    async def delete(self, group: str, name: str, owner: str, epoch: int) -> bool:
        key = self._key(group, name)
        return bool(await self._change(_DELETE, [key, self._census], [owner, epoch]))

    async def touch(self, keys: list[tuple[str, str]], ttl_ms: int) -> None:
        if not keys:
            return
        records = [self._key(group, name) for group, name in keys]
        await self._run(_TOUCH, [*records, self._census], [ttl_ms])

    async def renew_lease(
        self, node_id: str, url: str, ttl_ms: int, *, slot: str | None = None
    ) -> bool:
        """Renew; returns False when the lease had lapsed (others may have adopted since).

        ``url`` is where the node is reached, ``slot`` (default: the URL) where it sits:
        the key :meth:`take_over_url` looks at when the node's successor starts. Raises
        :class:`StoreUnavailable` (also when no replica confirmed it): not renewed.
        """
        keys = [lease_key(self._prefix, node_id), url_key(self._prefix, slot or url)]
        return bool(await self._change(_RENEW, keys, [url, node_id, ttl_ms]))

    async def take_over_url(self, slot: str, node_id: str, ttl_ms: int) -> str | None:
        """Register ``node_id`` at ``slot``; drop the lease of the node that had it before.

        Only one process can hold a slot (listen on an address, or be worker i of the
        replica there), so a previous holder is dead: its lease goes now, and its instances
        are adopted at once instead of after the lease expires.
        """
        previous = await self._change(_TAKE_SLOT, [url_key(self._prefix, slot)], [node_id, ttl_ms])
        if isinstance(previous, bytes):
            previous = previous.decode()
        if not previous or previous == node_id:
            return None
        await self.drop_lease(previous)
        return str(previous)

    async def drop_lease(self, node_id: str) -> None:
        await self._change(_DROP, [lease_key(self._prefix, node_id)], [])

    async def lease(self, node_id: str) -> str | None:
        raw = await self._call(self._redis.get(lease_key(self._prefix, node_id)))
        return raw.decode() if isinstance(raw, bytes) else raw


def _auto(has_replicas: bool | None) -> int | None:
    return None if has_replicas is None else int(has_replicas)
