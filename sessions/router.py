"""Where a request for a consumer instance runs: here, on its owner, or here after adopting it.

:class:`InstanceRouter` is the one thing the HTTP layer talks to about instances. Its
:meth:`~InstanceRouter.route` answers with a value, :class:`Local` (serve it with this
instance) or :class:`Forward` (send it to this URL, once); adoption of an orphaned instance
happens inside ``route`` and ends in ``Local``. It keeps the local registry and the
directory in step: the directory is written on create, on every subscription change, on
delete/expiry and on drain; it is read only when an instance is not local. When Redis is down,
instances this replica owns keep working (nothing on their path needs Redis) and the writes
they owe the directory are retried in the background.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiokafka import TopicPartition

from .directory import Directory, InstanceRecord
from .errors import (
    InstanceExists,
    InstanceNotFound,
    Moving,
    StoreUnavailable,
    TooManyInstances,
)
from .instance import ConsumerInstance, Handover, InstanceSpec
from .lease import NodeLease
from .local import LocalInstances

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Local:
    """Serve the request here, with this instance."""

    instance: ConsumerInstance


@dataclass(frozen=True, slots=True)
class Forward:
    """Another live replica owns the instance: send the request to ``url``, once."""

    url: str
    record: InstanceRecord


Route = Local | Forward


def _tp_key(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def _tp(key: str) -> TopicPartition:
    topic, _, partition = key.rpartition(":")
    return TopicPartition(topic, int(partition))


def _misrouted() -> Moving:
    return Moving("Consumer instance is moving between replicas; retry the request")


class InstanceRouter:
    """Explicit lifecycle: ``await start()`` ... ``await stop()`` (stop drains)."""

    def __init__(
        self,
        *,
        directory: Directory,
        factory: Callable[[InstanceSpec], ConsumerInstance],
        node_url: str,
        node_name: str | None = None,
        node_slot: str | None = None,
        instance_timeout_ms: int,
        lease_ms: int = 10_000,
        drain_timeout_ms: int = 15_000,
        max_instances: int = 1_000,
        max_cluster_instances: int = 0,
    ) -> None:
        self.directory = directory
        # Unique per process; ``node_name`` (a worker's, see gateway/workers) keeps siblings
        # recognisable to each other. ``node_slot`` is what a successor at the same place
        # takes over (the URL, or the URL and worker index when workers share it).
        name = node_name or node_url.split("://", 1)[-1]
        self.node_id = f"{name}:{uuid.uuid4().hex[:12]}"
        self.node_url = node_url
        self.lease = NodeLease(
            directory,
            node_id=self.node_id,
            node_url=node_url,
            slot=node_slot,
            lease_ms=lease_ms,
            on_lapsed=self._recheck_ownership,
        )
        self._timeout_ms = instance_timeout_ms
        # A record outlives the instance's idle timeout a little, so the owner's own expiry
        # (which also deletes the record) always comes first.
        self._record_ttl_ms = instance_timeout_ms + 5_000
        self.local = LocalInstances(factory, timeout_ms=instance_timeout_ms)
        self.local.on_expired.append(self._expired)
        self._adopting: dict[tuple[str, str], asyncio.Lock] = {}
        self._dirty: set[tuple[str, str]] = set()  # directory writes owed (Redis was down)
        self._tombstones: dict[tuple[str, str], tuple[str, int]] = {}  # deletes owed
        self._touched: set[tuple[str, str]] = set()
        self._sync_task: asyncio.Task[None] | None = None
        self._drain_timeout_s = drain_timeout_ms / 1000
        self._max_instances = max_instances
        self._max_cluster_instances = max_cluster_instances
        # How long closing an instance waits for an operation in progress before closing
        # anyway (it then leaves its group; the operation's client sees a retriable error).
        self._close_wait_s = 1.0
        # Creates and adoptions in progress; the drain waits for them (see stop()).
        self._in_flight = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self.lease.on_fenced = self._fenced
        self.draining = False
        self.ready = True  # readiness for load balancers; turned off first on shutdown
        # Lifecycle events by kind ("drain", "released", "adopted", "fenced", "lapsed", "lost"): plain
        # counts, because this layer knows no metrics library; /metrics reads them on scrape.
        self.events: collections.Counter[str] = collections.Counter()
        self._stopped = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.directory.start()
        await self.local.start()
        await self.lease.start()
        self._sync_task = asyncio.create_task(self._sync_loop())

    async def stop(self) -> None:
        """Drain: save each instance's delivered positions, close it, release ownership.

        Idempotent: the server drains explicitly on SIGTERM (before it stops listening), and
        the application's lifecycle calls this again on cleanup, when it does nothing.
        """
        limit_s = self._drain_timeout_s
        if self._stopped:
            return
        self._stopped = True
        self.ready = False
        self.draining = True
        self.events["drain"] += 1
        deadline = asyncio.get_running_loop().time() + limit_s
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        # Creates and adoptions already past the serving check finish first, so the
        # instances they make are drained with the others rather than left behind.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._settled.wait()
        # The lease stays alive (renewed in the background) until every instance is
        # released: a drain longer than the lease must not let another replica adopt an
        # instance whose positions are still being saved.
        instances = self.local.items()
        if instances:
            remaining = max(deadline - asyncio.get_running_loop().time(), 0.1)
            _, pending = await asyncio.wait(
                [asyncio.create_task(self._release(i)) for i in instances], timeout=remaining
            )
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=self._close_wait_s + 1)
        await self.local.stop(self._close_wait_s)
        await self.lease.stop()
        with contextlib.suppress(StoreUnavailable):
            await self._flush()
            await self.lease.drop()
        await self.directory.stop()

    async def _release(self, inst: ConsumerInstance) -> None:
        """Hand an instance back to the directory with its exact positions, then close it.

        Positions reach the directory before the consumer leaves its group, so the adopter
        always finds them; the consumer leaves its group whatever happens (Redis down, or the
        drain's time running out and this task being cancelled).
        """
        self.local.detach(*inst.key)
        try:
            # Waits for an in-flight read's write; Kafka gets a third of the drain at most.
            handover = await inst.prepare_handover(self._drain_timeout_s / 3)
            rec = self._record(inst)
            rec.positions = {_tp_key(tp): off for tp, off in handover.positions.items()}
            rec.baseline = {_tp_key(tp): off for tp, off in handover.baseline.items()}
            rec.owner = ""  # released: the next request anywhere adopts it without waiting
            self.events["released"] += 1
            try:
                await self.directory.update(
                    rec, self._record_ttl_ms, expect=(self.node_id, inst.epoch)
                )
            except StoreUnavailable as exc:
                log.warning("could not release %s/%s: %s", *inst.key, exc)
        finally:
            await inst.stop(commit=False, wait_s=self._close_wait_s)

    # --- operations --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        """Count a create or adoption in progress, so a drain can wait for it."""
        self._in_flight += 1
        self._settled.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._settled.set()

    async def create(self, spec: InstanceSpec) -> ConsumerInstance:
        self._check_serving()
        with self._tracked():
            return await self._create(spec)

    async def _create(self, spec: InstanceSpec) -> ConsumerInstance:
        key = (spec.group, spec.name)
        if key in self.local:
            raise InstanceExists()
        self._check_room()
        record = InstanceRecord(spec.group, spec.name, self.node_id, 1, spec.to_dict())
        try:
            if key in self._tombstones:
                # An earlier attempt timed out but may have landed: remove our own orphan.
                await self._flush_tombstone(key)
            if not await self.directory.create(
                record, self._record_ttl_ms, self._max_cluster_instances
            ):
                raise InstanceExists()
        except StoreUnavailable as exc:
            # The write may still land when Redis answers again; the sync loop then deletes
            # it (only if it is still ours at epoch 1), so a retry is not refused with 409.
            self._tombstones[key] = (self.node_id, 1)
            raise StoreUnavailable(
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

    async def route(
        self, group: str, name: str, *, forwarded: bool = False, principal: str | None = None
    ) -> Route:
        """Where a request for (group, name) runs; adopts the instance if it is orphaned.

        ``forwarded``: the request already took its one hop, so it is never forwarded again
        (a stale directory answer becomes a retriable 503; the caller re-reads).
        ``principal``: the caller (None: unauthenticated). An instance bound to another
        principal is not found, on every replica and before any hop or adoption: a caller
        must not even learn that someone else's instance exists.
        """
        self._check_serving()
        if self.local.find(group, name) is not None:
            await self.lease.confirm()
        inst = self.local.find(group, name)
        if inst is not None:
            if self.lease.fenced:
                raise StoreUnavailable(
                    "this replica cannot renew its lease, so it stopped serving its consumer "
                    "instances (another replica takes them over); retry the request"
                )
            if inst.spec.principal is not None and inst.spec.principal != principal:
                raise InstanceNotFound()
            self._touched.add(inst.key)
            return Local(inst)
        if (group, name) in self._tombstones:
            raise InstanceNotFound()
        try:
            rec = await self.directory.get(group, name)
            if rec is None:
                raise InstanceNotFound()
            bound = rec.spec.get("principal")
            if bound is not None and bound != principal:
                raise InstanceNotFound()
            if rec.owner and rec.owner != self.node_id:
                url = await self.lease.live_url(rec.owner)
                if url is not None:
                    if forwarded:
                        raise _misrouted()
                    return Forward(url, rec)
            return Local(await self._adopt(rec))
        except StoreUnavailable as exc:
            raise StoreUnavailable(
                f"cannot look up instances owned by other replicas ({exc}); retry the request"
            ) from exc

    async def delete(self, inst: ConsumerInstance) -> None:
        """Close the instance (it leaves its group) and remove its record everywhere."""
        self.local.detach(*inst.key)
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

    async def _adopt(self, rec: InstanceRecord) -> ConsumerInstance:
        with self._tracked():
            return await self._adopt_tracked(rec)

    async def _adopt_tracked(self, rec: InstanceRecord) -> ConsumerInstance:
        key = (rec.group, rec.name)
        lock = self._adopting.setdefault(key, asyncio.Lock())
        async with lock:
            inst = self.local.find(*key)
            if inst is not None:
                return inst
            self._check_room()  # a full replica leaves the adoption to another one
            claimed = await self.directory.claim(
                rec.group, rec.name, rec.owner, rec.epoch, self.node_id, self._record_ttl_ms
            )
            if claimed is None:
                raise _misrouted()  # someone else moved it first; the retry finds them
            spec = InstanceSpec.from_dict(claimed.spec)
            inst = await self.local.create(spec)
            inst.epoch = claimed.epoch
            handover = Handover(
                {_tp(key): off for key, off in claimed.positions.items()},
                {_tp(key): off for key, off in claimed.baseline.items()},
            )
            await inst.restore(claimed.subscription, handover)
            self.events["adopted"] += 1
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

    def _check_room(self) -> None:
        if len(self.local) >= self._max_instances:
            raise TooManyInstances(self._max_instances, "replica")

    def _check_serving(self) -> None:
        if self.draining:
            raise Moving("This replica is shutting down; retry the request")

    async def _fenced(self) -> None:
        """Our lease may expire unrenewed: leave the groups before anyone may adopt.

        Each instance commits what it delivered (with auto-commit) and leaves its group, so
        an adopter gets every partition at once and resumes after the delivered records.
        Records stay in the directory naming us: if Redis comes back before anyone adopted,
        the next request re-adopts here from those records.
        """
        self.events["fenced"] += 1
        instances = self.local.items()
        for inst in instances:
            self.local.detach(*inst.key)
        if instances:
            await asyncio.gather(
                *(inst.stop(commit=True, wait_s=self._close_wait_s) for inst in instances),
                return_exceptions=True,
            )

    async def _recheck_ownership(self) -> None:
        """Our lease lapsed: keep only instances whose records still name us at our epoch."""
        self.events["lapsed"] += 1
        for inst in self.local.items():
            rec = await self.directory.get(*inst.key)
            if rec is None or (rec.owner, rec.epoch) != (self.node_id, inst.epoch):
                await self._lost(inst)

    async def _lost(self, inst: ConsumerInstance) -> None:
        """Another replica owns this instance now: stop serving it, commit nothing."""
        if self.local.detach(*inst.key) is not None:
            self.events["lost"] += 1
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
        # The background sync and a delete may flush the same tombstone at once: whoever
        # comes second finds it gone, which is success, not a KeyError (a 500).
        tombstone = self._tombstones.get(key)
        if tombstone is None:
            return
        try:
            await self.directory.delete(*key, *tombstone)
        except StoreUnavailable:
            return
        if self._tombstones.get(key) == tombstone:
            del self._tombstones[key]

    def _expired(self, inst: ConsumerInstance) -> None:
        self._tombstones[inst.key] = (self.node_id, inst.epoch)  # deleted by the next sync

    def _record(self, inst: ConsumerInstance) -> InstanceRecord:
        return InstanceRecord(
            inst.spec.group,
            inst.spec.name,
            self.node_id,
            inst.epoch,
            inst.spec.to_dict(),
            inst.subscription_state(),
        )
