"""Scenario ``mixed``: producers and a 50-member consumer group at once, through HAProxy.

The other scenarios measure one thing at a time against one gateway process. Production looks
different: replicas behind a load balancer that sends every request to the next replica, so
about two thirds of the instance requests are forwarded to the owner, while producers and
consumers share the same processes. Here, for a fixed duration:

* 8 producer clients, each POSTing 100-record JSON requests (value ``{"t": <send time>}``,
  about 23 bytes) in a loop, one request in flight per client;
* 50 json consumer instances in ONE group, subscribed to the same topic (3 partitions by
  default: only 3 members get records, the other 47 long-poll empty, as an over-provisioned
  group does in production). Each loops ``GET records`` (``timeout=1000``, instances created
  with ``fetch.min.bytes=1`` so a read returns as soon as a record arrives) and commits
  (``POST offsets``, empty body: everything delivered) after every read that returned records;

all through HAProxy in front of three replicas sharing Redis (tests/harness/cluster.py, the
same topology as the cluster tests). The window opens once the group has assigned every
partition, and closes after ``duration_s``; only requests that completed inside it count.

The direct side does the same in the driver process with aiokafka: 8 producer tasks filling
``create_batch()`` with 100 records and ``send_batch``-ing it to a random partition (the
gateway's keyless records of a request also go to one partition), awaiting each batch; and 50
``AIOKafkaConsumer``s in one group (``getmany(timeout_ms=1000)``, then ``commit()`` after a
non-empty batch). 50 consumers are sane on 2 cores: idle ones cost heartbeats and empty
fetches only (the ``idle`` scenario measured 1,000 at 0.65 cores).

Reported per side: produce and consume records/s and MB/s (value bytes), p50/p99 of produce
requests (gateway: the POST; direct: one batch until acknowledged), of reads that returned
records (gateway: the GET; direct: the ``getmany``), of the end-to-end age of each record when
read (value's send time to the read's end), and of commits; errors by status; CPU of every
process (the three replicas summed, with their child processes if any, HAProxy and Redis apart).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer

from tests.bench.bench_infra import CpuMeter, latency_summary, process_tree
from tests.bench.bench_scenarios import JSON_V2, V2, Ctx, new_producer
from tests.harness.cluster import GatewayCluster

PRODUCERS = 8
CONSUMERS = 50
RECORDS_PER_REQUEST = 100
POLL_TIMEOUT_MS = 1000
ASSIGN_TIMEOUT_S = 90.0
REPLICAS = 3
IDLE_S = 5.0


@dataclass
class Tally:
    """What one side did inside the window (requests completed after it closed do not count)."""

    open: bool = False
    produced: int = 0
    produced_bytes: int = 0
    consumed: int = 0
    consumed_bytes: int = 0
    reads: int = 0
    empty_reads: int = 0
    commits: int = 0
    produce_lat: list[float] = field(default_factory=list)
    read_lat: list[float] = field(default_factory=list)
    e2e_lat: list[float] = field(default_factory=list)
    commit_lat: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    def error(self, what: str, status: int | str, detail: bytes | str = b"") -> None:
        key = f"{what} {status}"
        if self.errors[key] == 0:
            print(f"    ! mixed: first {key}: {detail[:200]!r}")
        self.errors[key] += 1

    def summary(self, seconds: float) -> dict[str, Any]:
        return {
            "seconds": round(seconds, 3),
            "records": self.produced,
            "records_per_s": round(self.produced / seconds, 1),
            "mb_per_s": round(self.produced_bytes / seconds / 1e6, 3),
            "consumed": self.consumed,
            "consume_records_per_s": round(self.consumed / seconds, 1),
            "consume_mb_per_s": round(self.consumed_bytes / seconds / 1e6, 3),
            "reads": self.reads,
            "empty_reads": self.empty_reads,
            "commits": self.commits,
            "latency": latency_summary(self.produce_lat),
            "read_latency": latency_summary(self.read_lat),
            "e2e_latency": latency_summary(self.e2e_lat),
            "commit_latency": latency_summary(self.commit_lat),
            "errors": dict(self.errors),
        }


def _value() -> dict[str, float]:
    return {"t": round(time.time(), 6)}


def _age(now: float, value: Any) -> float | None:
    try:
        return now - float(value["t"])
    except (TypeError, KeyError, ValueError):
        return None


async def _window(tally: Tally, duration_s: float) -> float:
    tally.open = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration_s)
    tally.open = False
    return time.perf_counter() - t0


async def _measure(
    meter: CpuMeter,
    tally: Tally,
    producer: Callable[[], Awaitable[None]],
    consumers: list[asyncio.Task[Any]],
    stop: asyncio.Event,
    duration_s: float,
) -> tuple[float, dict[str, float]]:
    """One side's window: the producers start with it open and the CPU meter running; after
    it the consumers get one poll's time to finish. Returns (seconds, CPU reading)."""
    tally.open = True  # before the producers start: they run while the window is open
    meter.start()
    producers = [asyncio.create_task(producer()) for _ in range(PRODUCERS)]
    seconds = await _window(tally, duration_s)
    cpu = meter.stop()
    await asyncio.gather(*producers)
    stop.set()
    await asyncio.wait(consumers, timeout=POLL_TIMEOUT_MS / 1000 + 10)
    for task in consumers:
        task.cancel()
    return seconds, cpu


# --- gateway side --------------------------------------------------------------------------------


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, ctype: str
) -> tuple[int, bytes]:
    async with http.post(url, data=body, headers={"Content-Type": ctype, "Accept": V2}) as resp:
        return resp.status, await resp.read()


async def gateway_mixed(
    ctx: Ctx,
    cluster: GatewayCluster,
    topic: str,
    duration_s: float,
    extra_pids: dict[str, int],
) -> dict[str, Any]:
    lb = cluster.lb_url
    tally = Tally()
    stop = asyncio.Event()
    group = f"bench-mixed-{uuid.uuid4().hex[:8]}"
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=PRODUCERS + 2 * CONSUMERS + 8),
        timeout=aiohttp.ClientTimeout(total=60),
    )
    paths: list[str] = []
    try:
        sem = asyncio.Semaphore(8)
        config = {
            "format": "json",
            "auto.offset.reset": "earliest",
            "auto.commit.enable": "false",
            "fetch.min.bytes": 1,
        }

        async def create(i: int) -> str:
            async with sem:
                body = orjson.dumps({"name": f"m{i}", **config})
                status, raw = await _post(http, f"{lb}/consumers/{group}", body, V2)
                if status != 200:
                    raise RuntimeError(f"mixed: create instance: HTTP {status} {raw[:300]!r}")
                path = f"/consumers/{group}/instances/m{i}"
                status, raw = await _post(
                    http, f"{lb}{path}/subscription", orjson.dumps({"topics": [topic]}), V2
                )
                if status != 204:
                    raise RuntimeError(f"mixed: subscribe: HTTP {status} {raw[:300]!r}")
                return path

        t_setup = time.perf_counter()
        paths = list(await asyncio.gather(*(create(i) for i in range(CONSUMERS))))
        print(
            f"  gateway: {CONSUMERS} instances created and subscribed in "
            f"{time.perf_counter() - t_setup:.1f} s"
        )

        async def consumer(path: str) -> None:
            url = f"{lb}{path}/records"
            params = {"timeout": str(POLL_TIMEOUT_MS)}
            headers = {"Accept": JSON_V2}
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    async with http.get(url, params=params, headers=headers) as resp:
                        status, raw = resp.status, await resp.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if tally.open:
                        tally.error("read", type(exc).__name__, str(exc))
                    await asyncio.sleep(0.1)
                    continue
                dt = time.perf_counter() - t0
                counted = tally.open
                if status != 200:
                    if counted:
                        tally.error("read", status, raw)
                    await asyncio.sleep(0.1)
                    continue
                records = orjson.loads(raw)
                now = time.time()
                if counted:
                    tally.reads += 1
                if not records:
                    if counted:
                        tally.empty_reads += 1
                    continue
                if counted:
                    tally.read_lat.append(dt)
                    tally.consumed += len(records)
                    for r in records:
                        tally.consumed_bytes += len(orjson.dumps(r["value"]))
                        age = _age(now, r["value"])
                        if age is not None:
                            tally.e2e_lat.append(age)
                t0 = time.perf_counter()
                try:
                    status, raw = await _post(http, f"{lb}{path}/offsets", b"", V2)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, raw = type(exc).__name__, str(exc).encode()
                if tally.open:
                    if status == 200:
                        tally.commits += 1
                        tally.commit_lat.append(time.perf_counter() - t0)
                    else:
                        tally.error("commit", status, raw)

        consumers = [asyncio.create_task(consumer(p)) for p in paths]
        await _wait_assigned_gateway(http, lb, paths, ctx.sizes.partitions)
        idle = await _idle_cost(CpuMeter({**_others(ctx), **extra_pids, **_cluster_pids(cluster)}))

        async def producer() -> None:
            url = f"{lb}/topics/{topic}"
            while tally.open:
                values = [_value() for _ in range(RECORDS_PER_REQUEST)]
                body = orjson.dumps({"records": [{"value": v} for v in values]})
                t0 = time.perf_counter()
                try:
                    status, raw = await _post(http, url, body, JSON_V2)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    tally.error("produce", type(exc).__name__, str(exc))
                    await asyncio.sleep(0.1)
                    continue
                dt = time.perf_counter() - t0
                if not tally.open:
                    break
                if status != 200:
                    tally.error("produce", status, raw)
                    await asyncio.sleep(0.1)
                    continue
                offsets = orjson.loads(raw)["offsets"]
                bad = [o for o in offsets if o["error_code"] is not None]
                for o in bad:
                    tally.error("produce record", o["error_code"], str(o.get("error")))
                ok = len(offsets) - len(bad)
                tally.produced += ok
                tally.produced_bytes += ok * len(orjson.dumps(values[0]))
                tally.produce_lat.append(dt)

        meter = CpuMeter({**_others(ctx), **extra_pids, **_cluster_pids(cluster)})
        seconds, cpu = await _measure(meter, tally, producer, consumers, stop, duration_s)
        processes = len([k for k in meter.pids if k.startswith("replica")])
        return {
            **tally.summary(seconds),
            "cpu": cpu,
            "cpu_idle_polling": idle,
            "gateway_processes": processes,
        }
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(
                    *(http.delete(f"{lb}{p}", headers={"Accept": V2}) for p in paths),
                    return_exceptions=True,
                ),
                30,
            )
        await http.close()


async def _idle_cost(meter: CpuMeter) -> dict[str, float]:
    """CPU while every consumer polls and nobody produces: the fixed cost of the 50 pollers
    (mostly the 47 that never get a partition), which the loaded window also pays."""
    meter.start()
    await asyncio.sleep(IDLE_S)
    return meter.stop()


def _others(ctx: Ctx) -> dict[str, int]:
    """Driver and broker: the benchmark's main gateway process sits idle during this scenario."""
    return {k: v for k, v in ctx.cpu_pids.items() if k != "gateway"}


def _cluster_pids(cluster: GatewayCluster) -> dict[str, int]:
    """Every replica (and its worker children, if it has any) and HAProxy."""
    out: dict[str, int] = {}
    for r in cluster.replicas:
        if r.process is not None:
            out.update(process_tree(f"replica{r.index}", r.process.pid))
    if cluster.haproxy is not None:
        out["haproxy"] = cluster.haproxy.pid
    return out


async def _wait_assigned_gateway(
    http: aiohttp.ClientSession, lb: str, paths: list[str], partitions: int
) -> None:
    """Until the group's members together hold every partition once, twice in a row."""
    deadline = time.monotonic() + ASSIGN_TIMEOUT_S
    stable = 0
    held: list[int] = []
    t0 = time.perf_counter()
    while time.monotonic() < deadline:
        held = []
        for p in paths:
            async with http.get(f"{lb}{p}/assignments", headers={"Accept": V2}) as resp:
                raw = await resp.read()
            if resp.status == 200:
                held += [x["partition"] for x in orjson.loads(raw).get("partitions", [])]
        stable = stable + 1 if sorted(held) == list(range(partitions)) else 0
        if stable >= 2:
            print(f"  gateway: group assigned all {partitions} partitions in "
                  f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"mixed: the gateway group never held every partition once: {held}")


# --- direct side ---------------------------------------------------------------------------------


async def direct_mixed(ctx: Ctx, topic: str, duration_s: float) -> dict[str, Any]:
    # aiokafka warns once per member and heartbeat while 50 members join ("Heartbeat failed
    # ... because it is rebalancing"): expected here, and it would bury the report.
    quiet = logging.getLogger("aiokafka.consumer.group_coordinator")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return await _direct_mixed(ctx, topic, duration_s)
    finally:
        quiet.setLevel(level)


async def _direct_mixed(ctx: Ctx, topic: str, duration_s: float) -> dict[str, Any]:
    tally = Tally()
    stop = asyncio.Event()
    group = f"bench-mixed-direct-{uuid.uuid4().hex[:8]}"
    consumers = [
        AIOKafkaConsumer(
            bootstrap_servers=ctx.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        for _ in range(CONSUMERS)
    ]
    producer = new_producer(ctx.bootstrap)
    started: list[AIOKafkaConsumer] = []
    try:
        await producer.start()
        t_setup = time.perf_counter()
        # Started unsubscribed, then subscribed together: start() of a subscribed consumer
        # waits for its assignment, so starting 50 in turn means 50 rebalances (minutes).
        for c in consumers:
            await c.start()
            started.append(c)
        for c in started:
            c.subscribe([topic])
        print(f"  direct: {CONSUMERS} consumers started in {time.perf_counter() - t_setup:.1f} s")

        async def consume(c: AIOKafkaConsumer) -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    batches = await c.getmany(timeout_ms=POLL_TIMEOUT_MS)
                except Exception as exc:  # counted and shown, as for the gateway
                    if tally.open:
                        tally.error("read", type(exc).__name__, str(exc))
                    await asyncio.sleep(0.1)
                    continue
                dt = time.perf_counter() - t0
                now = time.time()
                counted = tally.open
                if counted:
                    tally.reads += 1
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    if counted:
                        tally.empty_reads += 1
                    continue
                if counted:
                    tally.read_lat.append(dt)
                    tally.consumed += len(records)
                    for r in records:
                        tally.consumed_bytes += len(r.value)
                        age = _age(now, orjson.loads(r.value))
                        if age is not None:
                            tally.e2e_lat.append(age)
                t0 = time.perf_counter()
                try:
                    await c.commit()
                except Exception as exc:
                    if tally.open:
                        tally.error("commit", type(exc).__name__, str(exc))
                    continue
                if tally.open:
                    tally.commits += 1
                    tally.commit_lat.append(time.perf_counter() - t0)

        tasks = [asyncio.create_task(consume(c)) for c in started]
        await _wait_assigned_direct(started, ctx.sizes.partitions)
        idle = await _idle_cost(CpuMeter(_others(ctx)))
        partitions = sorted(producer.client.cluster.partitions_for_topic(topic) or {0})
        if len(partitions) < ctx.sizes.partitions:
            await producer.client.force_metadata_update()
            partitions = sorted(producer.client.cluster.partitions_for_topic(topic) or {0})

        async def produce() -> None:
            while tally.open:
                values = [orjson.dumps(_value()) for _ in range(RECORDS_PER_REQUEST)]
                t0 = time.perf_counter()
                try:
                    batch = producer.create_batch()
                    for v in values:
                        batch.append(key=None, value=v, timestamp=None)
                    batch.close()
                    fut = await producer.send_batch(
                        batch, topic, partition=random.choice(partitions)
                    )
                    await fut
                except Exception as exc:
                    tally.error("produce", type(exc).__name__, str(exc))
                    await asyncio.sleep(0.1)
                    continue
                dt = time.perf_counter() - t0
                if not tally.open:
                    break
                tally.produced += len(values)
                tally.produced_bytes += sum(len(v) for v in values)
                tally.produce_lat.append(dt)

        meter = CpuMeter(_others(ctx))
        seconds, cpu = await _measure(meter, tally, produce, tasks, stop, duration_s)
        return {**tally.summary(seconds), "cpu": cpu, "cpu_idle_polling": idle}
    finally:
        stop.set()
        await asyncio.gather(*(c.stop() for c in started), return_exceptions=True)
        await producer.stop()


async def _wait_assigned_direct(consumers: list[AIOKafkaConsumer], partitions: int) -> None:
    deadline = time.monotonic() + ASSIGN_TIMEOUT_S
    stable = 0
    held: list[int] = []
    t0 = time.perf_counter()
    while time.monotonic() < deadline:
        held = sorted(tp.partition for c in consumers for tp in c.assignment())
        stable = stable + 1 if held == list(range(partitions)) else 0
        if stable >= 2:
            print(f"  direct: group assigned all {partitions} partitions in "
                  f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"mixed: the direct group never held every partition once: {held}")


# --- the scenario --------------------------------------------------------------------------------


def workers_prop() -> dict[str, str]:
    """``workers=1`` where the gateway knows the setting: its default (``auto``) would start
    one worker per CPU on replicas with a Redis store, and this scenario is about three
    single-process replicas (``workers`` has a scenario of its own)."""
    try:
        from gateway.config import KEYS
    except ImportError:
        return {}
    return {"workers": "1"} if "workers" in KEYS else {}


async def mixed(
    ctx: Ctx,
    *,
    redis_url: str,
    redis_pid: int | None,
    duration_s: float,
    repeat: int = 1,
    props: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Gateway side (3 replicas + HAProxy + Redis), then the direct side, ``repeat`` times;
    each on its own fresh topic. ``props``: extra settings for every replica."""
    base = {
        "scenario": "mixed",
        "replica_props": props or {},
        "variant": f"{PRODUCERS} producers x {RECORDS_PER_REQUEST} rec json + "
        f"{CONSUMERS} consumers, 1 group, {ctx.sizes.partitions} partitions",
    }
    cluster = GatewayCluster(
        REPLICAS,
        bootstrap_servers=ctx.bootstrap,
        redis_url=redis_url,
        props={"shutdown.readiness.delay.ms": "0", **workers_prop(), **(props or {})},
        secret="x",
        start_timeout=60,
        log_level="WARNING",
    )
    extra = {"redis": redis_pid} if redis_pid else {}
    results: list[dict[str, Any]] = []
    await cluster.start()
    try:
        print(f"  cluster: {REPLICAS} replicas behind HAProxy at {cluster.lb_url}")
        for _ in range(repeat):
            topic = await ctx.topic()
            res = await gateway_mixed(ctx, cluster, topic, duration_s, extra)
            results.append({**base, "side": "gateway", **res})
            _show(results[-1])
            topic = await ctx.topic()
            res = await direct_mixed(ctx, topic, duration_s)
            results.append({**base, "side": "direct", **res})
            _show(results[-1])
    except BaseException:
        print(cluster.logs(30))
        raise
    finally:
        await cluster.stop()
    return results


def _show(r: dict[str, Any]) -> None:
    print(
        f"  mixed {r['side']:<8} produce {r['records_per_s']:,.0f} rec/s "
        f"consume {r['consume_records_per_s']:,.0f} rec/s "
        f"produce p50/p99 {r['latency']['p50_ms']}/{r['latency']['p99_ms']} ms "
        f"read p50/p99 {r['read_latency']['p50_ms']}/{r['read_latency']['p99_ms']} ms "
        f"e2e p50/p99 {r['e2e_latency']['p50_ms']}/{r['e2e_latency']['p99_ms']} ms "
        f"errors {r['errors']} cpu {r['cpu']}"
    )
