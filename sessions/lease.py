"""This node's lease in the directory: proof to the other replicas that it is alive.

A node that stops renewing (crashed, paused, cut off) loses its lease after ``lease_ms``; the
other replicas then adopt its instances. The lease is renewed in the background every third of
its lifetime, and once more before serving a local instance when the last renewal is old (the
loop may have been starved or the process paused), so a paused node notices that its lease
lapsed before it serves anything: ``on_lapsed`` then re-checks which instances it still owns.
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
    ) -> None:
        self._directory = directory
        self.node_id = node_id
        self.node_url = node_url
        self._lease_ms = lease_ms
        self._on_lapsed = on_lapsed
        self._last_renewal = 0.0
        self._recheck_pending = False  # a lapse was seen and its re-check has not completed
        self._store_failed_at = 0.0
        self._urls: dict[str, tuple[str, float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.renew()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop renewing (the caller drops the lease once its instances are released)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drop(self) -> None:
        await self._directory.drop_lease(self.node_id)

    async def renew(self) -> None:
        existed = await self._directory.renew_lease(self.node_id, self.node_url, self._lease_ms)
        if self._last_renewal and not existed:
            # We were gone past our lease (paused, partitioned): others may have adopted our
            # instances since. Remembered until the re-check completes: the lease is live
            # again from now on, so a re-check that fails (Redis blips) must not be forgotten.
            log.warning("node lease had lapsed; re-checking ownership of local instances")
            self._recheck_pending = True
        self._last_renewal = time.monotonic()
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
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                await self.renew()
            except StoreUnavailable as exc:
                self._store_failed_at = time.monotonic()
                log.warning("node lease renewal failed: %s", exc)
            except Exception:
                log.exception("node lease renewal failed")
