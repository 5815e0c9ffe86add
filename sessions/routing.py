"""Serve an instance locally, name the owner to forward to, or adopt an orphaned instance.

The ``Sessions`` object is the one thing handlers talk to. It keeps the local registry and the
directory in step: the directory is written on create, on every subscription change, on
delete/expiry and on drain; it is read only when an instance is not local. When Redis is down,
instances this replica owns keep working (nothing on their path needs Redis) and the writes
they owe the directory are retried in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import TopicPartition

from gateway.errors import (
    GatewayError,
    instance_exists,
    instance_not_found,
    session_store_unavailable,
)

from .directory import Directory, Record, StoreUnavailable
from .instance import ConsumerInstance, InstanceSpec
from .local import LocalInstances

log = logging.getLogger(__name__)


@dataclass
class ForwardTo(Exception):
    """The instance lives on another replica: forward the request there, once."""

    url: str
    record: Record


def _misrouted() -> GatewayError:
    return GatewayError(
        503,
        50301,
        "Consumer instance is moving between replicas; retry the request",
        retry_after=1,
    )


class Sessions:
    """Explicit lifecycle: ``await start()`` ... ``await stop()`` (stop drains)."""

    def __init__(
        self,
        *,
        directory: Directory,
        factory: Callable[[InstanceSpec], ConsumerInstance],
        node_url: str,
        instance_timeout_ms: int,
        lease_ms: int = 10_000,
    ) -> None:
        self.directory = directory
        self.node_id = f"{node_url.split('://', 1)[-1]}:{uuid.uuid4().hex[:12]}"
        self.node_url = node_url
        self._timeout_ms = instance_timeout_ms
        # A record outlives the instance's idle timeout a little, so the owner's own expiry
        # (which also deletes the record) always comes first.
        self._record_ttl_ms = instance_timeout_ms + 5_000
        self._lease_ms = lease_ms
        self.local = LocalInstances(factory, timeout_ms=instance_timeout_ms)
        self.local.on_expired.append(self._expired)
        self._adopting: dict[tuple[str, str], asyncio.Lock] = {}
        self._dirty: set[tuple[str, str]] = set()  # directory writes owed (Redis was down)
        self._tombstones: dict[tuple[str, str], tuple[str, int]] = {}  # deletes owed
        self._touched: set[tuple[str, str]] = set()
        self._last_renewal = 0.0
        self._store_failed_at = 0.0
        self._lease_cache: dict[str, tuple[str, float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.draining = False
        self.ready = True  # readiness for load balancers; turned off first on shutdown
        self._stopped = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.directory.start()
        await self.local.start()
        with contextlib.suppress(StoreUnavailable):
            await self._renew()
        self._tasks = [
            asyncio.create_task(self._lease_loop()),
            asyncio.create_task(self._sync_loop()),
        ]

    async def stop(self, limit_s: float = 15.0) -> None:
        """Drain: save each instance's delivered positions, close it, release ownership."""
        if self._stopped:
            return
        self._stopped = True
        self.ready = False
        self.draining = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        instances = self.local.items()
        if instances:
            _, pending = await asyncio.wait(
                [asyncio.create_task(self._release(i)) for i in instances], timeout=limit_s
            )
            for t in pending:
                t.cancel()
        await self.local.stop(limit_s)
        with contextlib.suppress(StoreUnavailable):
            await self._flush()
            await self.directory.drop_lease(self.node_id)
        await self.directory.stop()

    async def _release(self, inst: ConsumerInstance) -> None:
        """Hand an instance back to the directory with its exact positions, then close it."""
        self.local.detach(*inst.key)
        positions = await inst.close_for_handover()  # waits for an in-flight read
        rec = self._record(inst)
        rec.positions = {f"{tp.topic}:{tp.partition}": off for tp, off in positions.items()}
        rec.owner = ""  # released: the next request anywhere adopts it without waiting
        try:
            await self.directory.update(rec, self._record_ttl_ms, expect=(self.node_id, inst.epoch))
        except StoreUnavailable as exc:
            log.warning("could not release %s/%s: %s", *inst.key, exc)

    # --- operations --------------------------------------------------------------------------

    async def create(self, spec: InstanceSpec) -> ConsumerInstance:
        self._check_serving()
        key = (spec.group, spec.name)
        if key in self.local:
            raise instance_exists()
        record = Record(spec.group, spec.name, self.node_id, 1, spec.to_dict())
        try:
            if key in self._tombstones:
                # An earlier attempt timed out but may have landed: remove our own orphan.
                await self._flush_tombstone(key)
            if not await self.directory.create(record, self._record_ttl_ms):
                raise instance_exists()
        except StoreUnavailable as exc:
            # The write may still land when Redis answers again; the sync loop then deletes
            # it (only if it is still ours at epoch 1), so a retry is not refused with 409.
            self._tombstones[key] = (self.node_id, 1)
            raise session_store_unavailable(
                f"cannot register the new instance ({exc}); retry the request"
            ) from exc
        try:
            inst = await self.local.create(spec)
        except BaseException:
            with contextlib.suppress(StoreUnavailable):
                await self.directory.delete(spec.group, spec.name, self.node_id, 1)
            raise
        inst.epoch = 1
        return inst

    async def resolve(self, group: str, name: str, *, forwarded: bool = False) -> ConsumerInstance:
        """The local instance, adopting it if orphaned; raises ForwardTo when another owns it."""
        self._check_serving()
        if self.local.find(group, name) is not None:
            await self._confirm_lease()
        inst = self.local.find(group, name)
        if inst is not None:
            self._touched.add(inst.key)
            return inst
        if (group, name) in self._tombstones:
            raise instance_not_found()
        try:
            rec = await self.directory.get(group, name)
            if rec is None:
                raise instance_not_found()
            if rec.owner and rec.owner != self.node_id:
                url = await self._live_url(rec.owner)
                if url is not None:
                    if forwarded:
                        raise _misrouted()  # never forward twice: the caller re-reads
                    raise ForwardTo(url, rec)
            return await self._adopt(rec)
        except StoreUnavailable as exc:
            raise session_store_unavailable(
                f"cannot look up instances owned by other replicas ({exc}); retry the request"
            ) from exc

    async def _live_url(self, node_id: str) -> str | None:
        """A live node's URL, remembered for a second: a forwarded request then costs one
        Redis round trip, not two. Only live leases are remembered, so an expired lease is
        seen (and its instances adopted) at most a second late; a dead owner in between
        answers a retriable 503, as it would while its lease lives anyway."""
        now = time.monotonic()
        hit = self._lease_cache.get(node_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        url = await self.directory.lease(node_id)
        if url is None:
            self._lease_cache.pop(node_id, None)
        else:
            self._lease_cache[node_id] = (url, now + 1.0)
        return url

    async def delete(self, group: str, name: str, *, forwarded: bool = False) -> None:
        inst = await self.resolve(group, name, forwarded=forwarded)
        self.local.detach(group, name)
        self._tombstones[inst.key] = (self.node_id, inst.epoch)
        await inst.stop()
        await self._flush_tombstone(inst.key)

    async def saved(self, inst: ConsumerInstance) -> None:
        """Record a subscription / assignment change so an adopter can rebuild it."""
        try:
            ok = await self.directory.update(self._record(inst), self._record_ttl_ms)
        except StoreUnavailable:
            self._dirty.add(inst.key)
            return
        if not ok:
            await self._lost(inst)

    # --- adoption ----------------------------------------------------------------------------

    async def _adopt(self, rec: Record) -> ConsumerInstance:
        key = (rec.group, rec.name)
        lock = self._adopting.setdefault(key, asyncio.Lock())
        async with lock:
            inst = self.local.find(*key)
            if inst is not None:
                return inst
            claimed = await self.directory.claim(
                rec.group, rec.name, rec.owner, rec.epoch, self.node_id, self._record_ttl_ms
            )
            if claimed is None:
                raise _misrouted()  # someone else moved it first; the retry finds them
            spec = InstanceSpec.from_dict(claimed.spec)
            inst = await self.local.create(spec)
            inst.epoch = claimed.epoch
            positions = {
                TopicPartition(t, int(p)): off
                for tp, off in claimed.positions.items()
                for t, _, p in [tp.rpartition(":")]
            }
            await inst.restore(claimed.subscription, positions)
            log.info(
                "adopted consumer instance %s/%s (epoch %d) from %s",
                *key,
                claimed.epoch,
                rec.owner or "a released owner",
            )
            if claimed.positions:
                # Positions are single-use: clear them so a later crash resumes from commits.
                await self.saved(inst)
            self._adopting.pop(key, None)
            return inst

    # --- background --------------------------------------------------------------------------

    def _check_serving(self) -> None:
        if self.draining:
            raise GatewayError(
                503, 50301, "This replica is shutting down; retry the request", retry_after=1
            )

    async def _confirm_lease(self) -> None:
        """Before serving a local instance on a stale lease (we were paused, or the loop was
        starved), renew now: if it had lapsed, instances adopted elsewhere are dropped first,
        so a zombie never serves them. If Redis is down nobody can adopt, so we keep serving."""
        now = time.monotonic()
        if now - self._last_renewal < self._lease_ms / 1000 * 0.8:
            return
        if now - self._store_failed_at < 1.0:
            return  # Redis is down: do not make every request wait for it
        try:
            await self._renew()
        except StoreUnavailable:
            self._store_failed_at = time.monotonic()

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                await self._renew()
            except StoreUnavailable as exc:
                self._store_failed_at = time.monotonic()
                log.warning("node lease renewal failed: %s", exc)
            except Exception:
                log.exception("node lease renewal failed")

    async def _renew(self) -> None:
        existed = await self.directory.renew_lease(self.node_id, self.node_url, self._lease_ms)
        lapsed = self._last_renewal and not existed
        self._last_renewal = time.monotonic()
        if lapsed:
            # We were gone past our lease (paused, partitioned): others may have adopted our
            # instances. Keep only those whose records still name us at the same epoch.
            log.warning("node lease had lapsed; re-checking ownership of local instances")
            for inst in self.local.items():
                rec = await self.directory.get(*inst.key)
                if rec is None or (rec.owner, rec.epoch) != (self.node_id, inst.epoch):
                    await self._lost(inst)

    async def _lost(self, inst: ConsumerInstance) -> None:
        """Another replica owns this instance now: stop serving it, commit nothing."""
        if self.local.detach(*inst.key) is not None:
            log.warning("consumer instance %s/%s was taken over; closing the local copy", *inst.key)
            await inst.stop(commit=False)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._flush()
            except StoreUnavailable:
                pass
            except Exception:
                log.exception("session directory sync failed")

    async def _flush(self) -> None:
        touched, self._touched = self._touched, set()
        try:
            await self.directory.touch(sorted(touched), self._record_ttl_ms)
        except StoreUnavailable:
            self._touched |= touched
            raise
        for key in list(self._dirty):
            inst = self.local.find(*key)
            self._dirty.discard(key)
            if inst is not None:
                await self.saved(inst)
        for key in list(self._tombstones):
            await self._flush_tombstone(key)

    async def _flush_tombstone(self, key: tuple[str, str]) -> None:
        owner, epoch = self._tombstones[key]
        try:
            await self.directory.delete(*key, owner, epoch)
        except StoreUnavailable:
            return
        self._tombstones.pop(key, None)

    def _expired(self, inst: ConsumerInstance) -> None:
        self._tombstones[inst.key] = (self.node_id, inst.epoch)  # deleted by the next sync

    def _record(self, inst: ConsumerInstance) -> Record:
        return Record(
            inst.spec.group,
            inst.spec.name,
            self.node_id,
            inst.epoch,
            inst.spec.to_dict(),
            inst.subscription_state(),
        )
