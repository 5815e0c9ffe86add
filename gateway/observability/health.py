"""``GET /healthz`` (alive) and ``GET /readyz`` (should get traffic), both JSON.

Readiness is read by load balancers every second or so, and by every replica's balancer at
once: it must be cheap and it must not hang when Kafka does. So nothing on the request path
talks to Kafka or Redis; :class:`HealthProbe` (a lifecycle component) probes them in the
background every :data:`PROBE_INTERVAL_S` and /readyz reads its cached verdicts. A probe that
has not answered within :data:`STALL_S` counts as failed *while it is still waiting*, so a
broker that stops answering (paused, partitioned: the connection stays open, nothing comes
back) turns readiness off within ``PROBE_INTERVAL_S + STALL_S`` (under a second), long before
any Kafka timeout would fire. Draining is read live from the router: it flips at once.

Liveness says only that the event loop answers: restarting a replica because Kafka is down
would not bring Kafka back, and would drop every consumer instance it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sessions import kafka_internals
from sessions.redis_connect import StoreClient, census_key, connect, parse_store_url
from sessions.router import InstanceRouter

from ..config import redact
from ..kafka import KafkaClients
from ..registry.builtin import RegistryService

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.25
# A probe still unanswered after this is a failure: a healthy broker or Redis answers a
# metadata request or a PING in milliseconds.
STALL_S = 0.5

Probe = Callable[[], Awaitable[None]]


@dataclass
class Check:
    """One dependency's latest verdict, and the probe in flight (if any)."""

    name: str
    ok: bool = False
    detail: str = "not probed yet"
    pending_since: float | None = None  # monotonic start of the unanswered probe

    def verdict(self, now: float) -> tuple[bool, str]:
        if self.pending_since is not None and now - self.pending_since > STALL_S:
            return False, f"no answer for {now - self.pending_since:.1f} s"
        return self.ok, self.detail


class HealthProbe:
    """Background probes of Kafka, Redis (when configured) and the built-in registry."""

    def __init__(
        self,
        *,
        kafka: KafkaClients,
        sessions: InstanceRouter,
        store_url: str,
        registry: RegistryService | None,
        timeout_s: float,
        interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._kafka = kafka
        self._sessions = sessions
        self._registry = registry
        self._timeout_s = timeout_s
        self._interval_s = interval_s
        self.checks: dict[str, tuple[Check, Probe]] = {"kafka": (Check("kafka"), self._ping_kafka)}
        self._redis: Any = None
        self._store_client: StoreClient | None = None
        if store_url != "memory://":
            # Its own small client: a probe must not queue behind the directory's traffic,
            # and the census count for /metrics rides on it too. Any URL form: behind
            # Sentinel it follows the primary, on a Cluster the census key's shard.
            address = parse_store_url(store_url)
            self._store_client = connect(address, timeout_s=timeout_s, max_connections=4)
            self._redis = self._store_client.redis
            self._census_key = census_key(address)
            self.checks["redis"] = (Check("redis"), self._ping_redis)
            self._store = redact(store_url)
        if registry is not None:
            self.checks["registry"] = (Check("registry"), self._load_registry)
        self._registry_loaded = False
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="health-probe")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._probes) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        if self._store_client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._store_client.close(), self._timeout_s)

    # --- the verdict ---------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        draining = self._sessions.draining or not self._sessions.ready
        checks: dict[str, dict[str, Any]] = {
            "draining": {
                "ok": not draining,
                "detail": "this replica is shutting down" if draining else "no",
            }
        }
        for name, (check, _) in self.checks.items():
            ok, detail = check.verdict(now)
            checks[name] = {"ok": ok, "detail": detail}
        problems = [f"{name}: {c['detail']}" for name, c in checks.items() if not c["ok"]]
        status = "draining" if draining else ("unavailable" if problems else "ready")
        return not problems, {"status": status, "problems": problems, "checks": checks}

    async def census(self) -> int | None:
        """Live consumer instances cluster-wide (the directory's census sorted set)."""
        if self._redis is None:
            return None
        return int(await self._redis.eval(_CENSUS, 1, self._census_key))

    # --- probing -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            for check, probe in self.checks.values():
                if check.pending_since is None:
                    self._launch(check, probe)
            await asyncio.sleep(self._interval_s)

    def _launch(self, check: Check, probe: Probe) -> None:
        check.pending_since = time.monotonic()
        task = asyncio.create_task(self._probe(check, probe), name=f"health-probe:{check.name}")
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _probe(self, check: Check, probe: Probe) -> None:
        try:
            await asyncio.wait_for(probe(), self._timeout_s)
        except TimeoutError:
            check.ok, check.detail = False, f"no answer within {self._timeout_s:g} s"
        except Exception as exc:
            check.ok, check.detail = False, _describe(exc)
        else:
            check.ok, check.detail = True, "ok"
        finally:
            check.pending_since = None

    async def _ping_kafka(self) -> None:
        # A metadata round trip over the shared producer's connections: the same path a
        # produce takes, so "ready" means a produce would find the cluster.
        producer = await self._kafka.producer()
        await kafka_internals.ping_brokers(producer.client)

    async def _ping_redis(self) -> None:
        try:
            await self._redis.ping()
        except Exception as exc:
            raise ConnectionError(f"session store {self._store}: {_describe(exc)}") from None

    async def _load_registry(self) -> None:
        # Loaded once is loaded: afterwards the Kafka check says whether it can keep up.
        if not self._registry_loaded and self._registry is not None:
            await self._registry.log.catch_up()
            self._registry_loaded = True


# The directory's census (sessions/redis_store.py; its key: sessions.redis_connect.census_key):
# member = record key, score = its expiry in Redis server time (ms). Only live members count;
# expired ones are left for the directory's own scripts to remove (a read-only probe writes
# nothing).
_CENSUS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(text)[:300]


HEALTH = web.AppKey("health", HealthProbe)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers. Deliberately checks nothing else (see the module)."""
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    ready, body = request.app[HEALTH].readiness()
    return web.json_response(body, status=200 if ready else 503)
