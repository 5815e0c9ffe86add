"""Scenario ``idle``: many subscribed consumer instances whose clients are not polling.

Why a scenario of its own: a replica's cost is not only what its busy clients do. Each v2
consumer instance is a live aiokafka consumer, and by default aiokafka keeps fetching (long
polls, two connections, heartbeats) for every assigned partition whether or not anybody
reads. This scenario measures what ``count`` such instances cost one replica at rest, and
whether they slow down an instance that is being read:

* create p50/p99 (create + subscribe, 8 clients in parallel, as a rolling deployment would);
* RSS growth per instance, on a fresh gateway process (the main one's heap is already grown);
* gateway CPU (cores) over ``idle_s`` seconds once every instance has its partitions;
* end-to-end read latency of one active instance (record produced directly, read through the
  gateway with a long-poll loop) before and after the idle instances exist;
* the first read of an instance that has been idle (its partitions paused) against the
  steady-state read latency: what pausing costs a client that comes back.

The direct side is ``count`` plain ``AIOKafkaConsumer``s subscribed the same way, in a process
of their own (``python3 -m tests.bench.bench_idle direct ...``), not polling either: what an
application embedding aiokafka would pay for the same idle consumers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

IDLE_GROUP_PREFIX = "bench-idle-sub"
REPO = Path(__file__).resolve().parents[2]


# --- gateway side ----------------------------------------------------------------------------


def _others(ctx: Any) -> dict[str, int]:
    """The processes measured next to the idle gateway (driver, broker), not the main one."""
    return {k: v for k, v in ctx.cpu_pids.items() if k != "gateway"}


async def _subscribe(http: Any, url: str, path: str, topic: str) -> None:
    from tests.bench.bench_scenarios import V2

    async with http.post(
        f"{url}{path}/subscription",
        data=orjson.dumps({"topics": [topic]}),
        headers={"Content-Type": V2},
    ) as resp:
        if resp.status != 204:
            raise RuntimeError(f"subscribe: HTTP {resp.status} {(await resp.read())[:300]!r}")


async def _assigned(http: Any, url: str, path: str) -> int:
    from tests.bench.bench_scenarios import V2

    async with http.get(f"{url}{path}/assignments", headers={"Accept": V2}) as resp:
        body = orjson.loads(await resp.read())
    return len(body.get("partitions", []))


async def _read_latency(
    ctx: Any, url: str, path: str, topic: str, samples: int, gap_s: float = 0.02
) -> dict[str, float]:
    """End-to-end latency of an active instance: produce one record directly, time until the
    instance's long-poll loop returns it. The loop never stops, so fetch prefetch is on."""
    from tests.bench.bench_infra import latency_summary
    from tests.bench.bench_scenarios import new_producer, read_records

    producer = new_producer(ctx.bootstrap)
    await producer.start()
    sent: dict[bytes, float] = {}
    got: list[float] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            for rec in await read_records(ctx.http, url, path, {"timeout": "1000"}):
                key = base64.b64decode(rec["value"])
                if key in sent:
                    got.append(time.perf_counter() - sent.pop(key))
            if len(got) >= samples:
                done.set()

    task = asyncio.create_task(reader())
    try:
        await asyncio.sleep(0.5)
        for i in range(samples):
            value = f"{uuid.uuid4().hex}-{i}".encode()
            sent[value] = time.perf_counter()
            await producer.send_and_wait(topic, value=value)
            await asyncio.sleep(gap_s)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        done.set()
        await asyncio.wait_for(task, 5)
        await producer.stop()
    return latency_summary(got)


async def _first_read_after_idle(
    ctx: Any, url: str, path: str, topic: str, idle_s: float, rounds: int
) -> dict[str, float]:
    """Latency of a record produced while the instance sat idle (partitions paused) and read by
    the client's next request: what an instance that is paused pays on its first read."""
    from tests.bench.bench_infra import latency_summary
    from tests.bench.bench_scenarios import new_producer, read_records

    producer = new_producer(ctx.bootstrap)
    await producer.start()
    lat: list[float] = []
    try:
        for _ in range(rounds):
            await asyncio.sleep(idle_s)
            await producer.send_and_wait(topic, value=b"x")
            t0 = time.perf_counter()
            records: list[Any] = []
            while not records and time.perf_counter() - t0 < 10:
                records = await read_records(ctx.http, url, path, {"timeout": "2000"})
            lat.append(time.perf_counter() - t0)
    finally:
        await producer.stop()
    return latency_summary(lat)


async def idle_instances(
    ctx: Any,
    bootstrap: str,
    workdir: Path,
    count: int,
    *,
    idle_s: float,
    samples: int,
    props: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The gateway half (see the module docstring); a fresh gateway process of its own,
    with ``props`` (gateway settings, e.g. ``consumer.heartbeat.interval.ms``) on top."""
    from tests.bench.bench_infra import CpuMeter, GatewayProcess, latency_summary
    from tests.bench.bench_scenarios import create_instance, delete_instance

    gw = GatewayProcess(
        "idle-sub",
        {
            "bootstrap.servers": bootstrap,
            "consumer.instances.max": str(count + 10),
            **(props or {}),
        },
        workdir,
    )
    gw.start()
    try:
        await gw.wait_ready()
        idle_topic = await ctx.topic()
        active_topic = await ctx.topic(1)
        active = await create_instance(
            ctx.http, gw.url, f"bench-active-{uuid.uuid4().hex[:8]}", "active",
            **{"auto.offset.reset": "latest", "fetch.min.bytes": 1},
        )  # fmt: skip
        await _subscribe(ctx.http, gw.url, active, active_topic)
        latency_alone = await _read_latency(ctx, gw.url, active, active_topic, samples)
        cpu_empty = CpuMeter({"gateway": gw.pid, **_others(ctx)})
        cpu_empty.start()
        await asyncio.sleep(min(idle_s, 10))
        cpu_before = cpu_empty.stop()
        before = gw.memory_kb()["VmRSS"]
        run = uuid.uuid4().hex[:8]
        paths: list[str] = []
        create_s: list[float] = []
        subscribe_s: list[float] = []
        sem = asyncio.Semaphore(8)

        async def one(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                group = f"{IDLE_GROUP_PREFIX}-{run}-{i}"
                path = await create_instance(
                    ctx.http, gw.url, group, f"idle-{i}", **{"fetch.min.bytes": 1}
                )
                t1 = time.perf_counter()
                await _subscribe(ctx.http, gw.url, path, idle_topic)
                create_s.append(t1 - t0)
                subscribe_s.append(time.perf_counter() - t1)
                paths.append(path)

        t_create = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        create_all_s = time.perf_counter() - t_create
        # Every instance has joined its group and holds its partitions before CPU is measured.
        deadline = time.monotonic() + 120
        pending = list(paths)
        while pending and time.monotonic() < deadline:
            counts = await asyncio.gather(*(_assigned(ctx.http, gw.url, p) for p in pending))
            pending = [p for p, n in zip(pending, counts, strict=True) if n == 0]
            if pending:
                await asyncio.sleep(1)
        await asyncio.sleep(5)  # let join garbage settle and idle instances pause
        after = gw.memory_kb()["VmRSS"]
        meter = CpuMeter({"gateway": gw.pid, **_others(ctx)})
        meter.start()
        await asyncio.sleep(idle_s)
        cpu_idle = meter.stop()
        latency_with = await _read_latency(ctx, gw.url, active, active_topic, samples)
        first_read = await _first_read_after_idle(
            ctx, gw.url, paths[0], idle_topic, idle_s=3.0, rounds=5
        )
        t0 = time.perf_counter()
        await asyncio.gather(*(delete_instance(ctx.http, gw.url, p) for p in [*paths, active]))
        delete_s = time.perf_counter() - t0
        return {
            "side": "gateway",
            "props": props or {},
            "count": count,
            "not_assigned": len(pending),
            "create_latency": latency_summary(create_s),
            "subscribe_latency": latency_summary(subscribe_s),
            "create_all_s": round(create_all_s, 2),
            "rss_before_kb": before,
            "rss_after_kb": after,
            "kb_per_instance": round((after - before) / count, 1),
            "cpu_no_idle_instances": cpu_before,
            "cpu_idle": cpu_idle,
            "idle_s": idle_s,
            "read_latency_alone": latency_alone,
            "read_latency_with_idle": latency_with,
            "first_read_after_idle": first_read,
            "delete_all_s": round(delete_s, 2),
        }
    finally:
        gw.stop()


async def direct_idle(bootstrap: str, count: int, idle_s: float) -> dict[str, Any]:
    """The direct half, in a process of its own (see ``main``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.bench_idle", "direct",
        "--bootstrap", bootstrap, "--count", str(count), "--idle-s", str(idle_s),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench_idle direct failed:\n{err.decode()[-3000:]}")
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return result


# --- direct side (own process) -----------------------------------------------------------------


def _rss_kb() -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_s() -> float:
    with open(f"/proc/{os.getpid()}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _direct(bootstrap: str, count: int, idle_s: float) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench-idle-direct-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1)])
    before = _rss_kb()
    consumers = []
    try:
        for i in range(count):
            c = AIOKafkaConsumer(
                topic,
                bootstrap_servers=bootstrap,
                group_id=f"{topic}-{i}",
                enable_auto_commit=False,
            )
            await c.start()
            consumers.append(c)
        deadline = time.monotonic() + 120
        # aiokafka offers no "assigned" event: poll, bounded by the deadline.
        while any(not c.assignment() for c in consumers):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(5)
        after = _rss_kb()
        cpu0, t0 = _cpu_s(), time.perf_counter()
        await asyncio.sleep(idle_s)
        cores = (_cpu_s() - cpu0) / (time.perf_counter() - t0)
    finally:
        await asyncio.gather(*(c.stop() for c in consumers), return_exceptions=True)
        await admin.delete_topics([topic])
        await admin.close()
    return {
        "side": "direct",
        "count": count,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_consumer": round((after - before) / max(count, 1), 1),
        "cores_idle": round(cores, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("direct")
    d.add_argument("--bootstrap", required=True)
    d.add_argument("--count", type=int, default=1000)
    d.add_argument("--idle-s", type=float, default=20.0)
    args = p.parse_args(argv)
    result = asyncio.run(_direct(args.bootstrap, args.count, args.idle_s))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
