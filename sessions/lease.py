"""This node's lease in the directory: proof to the other replicas that it is alive.

A node that stops renewing (crashed, paused, cut off) loses its lease after ``lease_ms``; the
other replicas then adopt its instances. The lease is renewed in the background every sixth of
its lifetime, and once more before serving a local instance when the last renewal is old (the
loop may have been starved or the process paused), so a paused node notices that its lease
lapsed before it serves anything: ``on_lapsed`` then re-checks which instances it still owns.

A node that cannot renew (cut off from Redis while the others are not) *fences itself*: once
:data:`FENCE_FRACTION` of the lease has passed since the last renewal was sent, it is
:attr:`~NodeLease.fenced` (serves none of its instances) and ``on_fenced`` runs (the instances
leave their groups), all before the lease can expire and another replica adopt them. Two
replicas therefore never serve one instance at once, whichever of them Redis can see.

A node restarted in place (same ``node.url``, and same worker index) retires its dead predecessor's lease at start,
so the predecessor's instances are adopted at once instead of after the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from .directory import Directory
from .errors import StoreUnavailable

log = logging.getLogger(__name__)

# A live node's URL is remembered this long, so a forwarded request costs one Redis round
# trip, not two; an expired lease is then seen (and its instances adopted) at most this late.
URL_CACHE_S = 1.0
# While Redis is failing, requests do not each wait for it: at most one try per this period.
STORE_RETRY_S = 1.0
# Share of the lease after the last renewal was sent at which a node stops serving. The rest
# is the time its instances have to leave their groups before others may adopt them.
FENCE_FRACTION = 0.6
# Renewals per lease. A store outage (a Redis failover) is ridden out, instances served
# throughout, wherever it falls between renewals, when it ends within
# ``lease * (FENCE_FRACTION - 1 / RENEWALS_PER_LEASE)`` minus a retry: about 43% of the lease
# with 6 (27% with 3), so a 10 s lease outlasts a failover of some 3.5 s.
RENEWALS_PER_LEASE = 6
# After a failed renewal, the next try comes this much sooner (at most): every renewal that
# lands resets the fence clock, so the first moment the store answers again must be used.
RETRY_AFTER_FAILURE_S = 0.5


class NodeLease:
    """Explicit lifecycle: ``await start()`` ... ``await stop()`` (stop drops the lease)."""

    def __init__(
        self,
        directory: Directory,
        *,
        node_id: str,
        node_url: str,
        lease_ms: int,
        on_lapsed: Callable[[], Awaitable[None]],
        slot: str | None = None,
    ) -> None:
        self._directory = directory
        self.node_id = node_id
        self.node_url = node_url
        # Where this node sits: one process per slot, so a new holder's predecessor is dead.
        self.slot = slot or node_url
        self._lease_ms = lease_ms
        self._on_lapsed = on_lapsed
        self._last_renewal = 0.0
        self._recheck_pending = False  # a lapse was seen and its re-check has not completed
        self._store_failed_at = 0.0
        self._urls: dict[str, tuple[str, float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._fence_ran = False
        # Runs once each time the node fences itself (set by the owner of the instances).
        self.on_fenced: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        try:
            previous = await self._directory.take_over_url(self.slot, self.node_id, self._lease_ms)
            if previous:
                log.info(
                    "retired the lease of %s, this node's predecessor at %s",
                    previous,
                    self.slot,
                )
            await self.renew()
        except StoreUnavailable as exc:
            log.warning("node lease not registered at start (%s); retrying", exc)
        self._tasks = [
            asyncio.create_task(self._loop()),
            asyncio.create_task(self._watchdog()),
        ]

    async def stop(self) -> None:
        """Stop renewing (the caller drops the lease once its instances are released)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def fenced(self) -> bool:
        """True while the lease may be about to expire unrenewed: serve no instance."""
        if not self._last_renewal:
            return False
        return time.monotonic() - self._last_renewal > self._lease_ms / 1000 * FENCE_FRACTION

    async def drop(self) -> None:
        await self._directory.drop_lease(self.node_id)

    async def renew(self) -> None:
        sent = time.monotonic()  # the lease's TTL runs from (about) now, not from the answer
        existed = await self._directory.renew_lease(
            self.node_id, self.node_url, self._lease_ms, slot=self.slot
        )
        self._fence_ran = False
        if self._last_renewal and not existed:
            # We were gone past our lease (paused, partitioned): others may have adopted our
            # instances since. Remembered until the re-check completes: the lease is live
            # again from now on, so a re-check that fails (Redis blips) must not be forgotten.
            log.warning("node lease had lapsed; re-checking ownership of local instances")
            self._recheck_pending = True
        self._last_renewal = sent
        if self._recheck_pending:
            await self._on_lapsed()
            self._recheck_pending = False

    async def confirm(self) -> None:
        """Before serving a local instance on a stale lease, renew now.

        If it had lapsed, instances adopted elsewhere are dropped first (``on_lapsed``), so a
        zombie never serves them. If Redis is down nobody can adopt, so we keep serving.
        """
        now = time.monotonic()
        if now - self._last_renewal < self._lease_ms / 1000 * 0.8 and not self._recheck_pending:
            return
        if now - self._store_failed_at < STORE_RETRY_S:
            return
        try:
            await self.renew()
        except StoreUnavailable:
            self._store_failed_at = time.monotonic()

    async def live_url(self, node_id: str) -> str | None:
        """The URL of a node whose lease is live, or None (it is dead: adopt its instances).

        Only live leases are remembered, so a dead owner answers a retriable 503 for at most
        :data:`URL_CACHE_S`, as it would while its lease lives anyway.
        """
        now = time.monotonic()
        hit = self._urls.get(node_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        url = await self._directory.lease(node_id)
        if url is None:
            self._urls.pop(node_id, None)
        else:
            self._urls[node_id] = (url, now + URL_CACHE_S)
        return url

    async def _loop(self) -> None:
        failing = False
        while True:
            # After a failure, retry sooner: every renewal that lands resets the fence clock.
            every_s = self._lease_ms / 1000 / RENEWALS_PER_LEASE
            await asyncio.sleep(min(every_s, RETRY_AFTER_FAILURE_S) if failing else every_s)
            try:
                await self.renew()
                failing = False
            except StoreUnavailable as exc:
                failing = True
                self._store_failed_at = time.monotonic()
                log.warning("node lease renewal failed: %s", exc)
            except Exception:
                failing = True
                log.exception("node lease renewal failed")

    async def _watchdog(self) -> None:
        """Fence on time, not on a failed call: a renewal stuck in a hung connection must
        not delay the fence past the lease's expiry."""
        while True:
            if not self._last_renewal:
                await asyncio.sleep(self._lease_ms / 10_000)
                continue
            due = self._last_renewal + self._lease_ms / 1000 * FENCE_FRACTION
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            if not self._fence_ran and self.on_fenced is not None:
                self._fence_ran = True
                log.warning(
                    "node lease not renewed for %.1f s: this replica stops serving its "
                    "consumer instances until the session store answers again",
                    time.monotonic() - self._last_renewal,
                )
                try:
                    await self.on_fenced()
                except Exception:
                    log.exception("fencing failed")
            await asyncio.sleep(self._lease_ms / 10_000)
