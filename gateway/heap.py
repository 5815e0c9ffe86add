"""Short garbage-collection pauses for a replica that holds many consumer instances.

CPython's full (generation 2) collection walks every tracked object, and a consumer instance
is a few hundred of them (the aiokafka consumer, its coordinator, fetcher, connections). At a
thousand instances a full collection pauses the event loop for 200-300 ms, and they come
often while instances are being created (one each time the heap grew by a quarter): every
request in flight then waits, which is what the create p99 and the read-latency tail of the
``idle`` benchmark showed.

Instances live for minutes, so their objects are moved out of the collector's sight
(``gc.freeze()``) shortly after they appear; full collections then walk only what is young.
The price is that cyclic garbage frozen with them (a deleted instance's objects) is not
reclaimed until the frozen set is thawed: that happens once instances were removed in number
(a quarter of those frozen, at least :data:`MIN_REMOVED`) or every :data:`THAW_EVERY_S`,
with one full collection then, the pause the process would otherwise have had many times.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Collection

log = logging.getLogger(__name__)

CHECK_S = 2.0
MIN_REMOVED = 16
THAW_EVERY_S = 600.0


class HeapGuard:
    """Explicit lifecycle: ``await start()`` ... ``await stop()``.

    ``instances`` returns the objects whose arrival and removal drive freezing and thawing
    (the router's local instances).
    """

    def __init__(self, instances: Callable[[], Collection[object]]) -> None:
        self._instances = instances
        self._known: set[int] = set()
        self._frozen_instances = 0
        self._removed = 0  # since the last thaw
        self._thawed_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self.freezes = 0
        self.thaws = 0

    async def start(self) -> None:
        # Everything imported and built at start-up lives as long as the process.
        gc.collect()
        gc.freeze()
        self._thawed_at = time.monotonic()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        gc.unfreeze()  # the process may go on (tests): leave the collector as it was

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_S)
            try:
                self.check()
            except Exception:  # never let housekeeping take the loop down
                log.exception("heap check failed")

    def check(self) -> None:
        current = {id(i) for i in self._instances()}
        arrived = len(current - self._known)
        self._removed += len(self._known - current)
        self._known = current
        now = time.monotonic()
        if self._removed >= max(MIN_REMOVED, self._frozen_instances // 4) or (
            self._removed and now - self._thawed_at > THAW_EVERY_S
        ):
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.thaws += 1
            self._removed = 0
            self._thawed_at = now
            self._frozen_instances = len(current)
            log.debug("heap thawed and collected in %.0f ms", (time.perf_counter() - started) * 1e3)
        elif arrived:
            gc.collect(1)  # young garbage only (cheap): what is frozen should be alive
            gc.freeze()
            self.freezes += 1
            self._frozen_instances = len(current)
