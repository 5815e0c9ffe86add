"""The consumer instances this process owns: create, look up, idle expiry, close on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from .errors import InstanceExists
from .instance import ConsumerInstance, InstanceSpec

log = logging.getLogger(__name__)

InstanceFactory = Callable[[InstanceSpec], ConsumerInstance]


class LocalInstances:
    """Registry keyed by (group, name). Explicit ``start()`` / ``stop()``.

    ``timeout_ms`` is ``consumer.instance.timeout.ms``: an instance untouched that long is
    closed by a sweep that runs at least every second.
    """

    def __init__(self, factory: InstanceFactory, *, timeout_ms: int) -> None:
        self._factory = factory
        self._timeout = timeout_ms / 1000
        self._instances: dict[tuple[str, str], ConsumerInstance] = {}
        self._pending: set[tuple[str, str]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.on_expired: list[Callable[[ConsumerInstance], object]] = []

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def stop(self, limit_s: float = 10.0) -> None:
        """Close every instance (consumers leave their groups), concurrently and bounded."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        instances = list(self._instances.values())
        self._instances.clear()
        tasks = [asyncio.create_task(i.stop()) for i in instances] + list(self._closing)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=limit_s)
            for t in pending:
                t.cancel()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._instances or key in self._pending

    def __len__(self) -> int:
        return len(self._instances)

    def items(self) -> list[ConsumerInstance]:
        return list(self._instances.values())

    async def create(self, spec: InstanceSpec) -> ConsumerInstance:
        key = (spec.group, spec.name)
        if key in self:
            raise InstanceExists()
        self._pending.add(key)  # reserve the name while the consumer starts
        try:
            inst = self._factory(spec)
            await inst.start()
            self._instances[key] = inst
            return inst
        finally:
            self._pending.discard(key)

    def find(self, group: str, name: str) -> ConsumerInstance | None:
        inst = self._instances.get((group, name))
        if inst is not None:
            inst.touch()
        return inst

    def detach(self, group: str, name: str) -> ConsumerInstance | None:
        """Remove without closing (the caller closes it, e.g. a drain that saves positions)."""
        return self._instances.pop((group, name), None)

    async def _sweep_loop(self) -> None:
        interval = min(1.0, max(self._timeout / 4, 0.05))
        while True:
            await asyncio.sleep(interval)
            try:
                self.expire(time.monotonic())
            except Exception:  # the sweeper must survive anything
                log.exception("idle sweep failed")

    def expire(self, now: float) -> list[InstanceSpec]:
        expired = []
        for key, inst in list(self._instances.items()):
            if now - inst.last_used >= self._timeout and not inst.busy:
                del self._instances[key]
                expired.append(inst.spec)
                task = asyncio.create_task(inst.stop())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                log.info("consumer instance %s/%s expired after %.1fs idle", *key, self._timeout)
                for cb in self.on_expired:
                    cb(inst)
        return expired
