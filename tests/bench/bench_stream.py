"""Scenario ``stream``: streaming consume (SSE and NDJSON) vs a direct aiokafka ``getmany`` loop.

Two measurements, each with the gateway and the direct client in the same run:

- **throughput**: a topic prefilled with ``records`` binary records is read whole, (a) as one
  NDJSON instance stream (``GET .../records`` with ``Accept: application/x-ndjson`` and
  ``max_records``), (b) as one SSE topic stream (``GET /topics/{t}/events?from=beginning``), and
  (c) by a direct consumer. The client parses every line or event (its real work).
- **end-to-end latency**: the stream is open first (from the end); then records are produced
  one by one at a steady rate, each carrying its send time, and the latency is receive time
  minus send time, in the same process (one clock). The direct side is a consumer whose loop
  waits in ``getmany`` as a service would.

Reported per side: records/s, MB/s of value bytes, CPU of every process (the gateway row also
its CPU µs per record) and latency p50/p99.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.bench import bench_scenarios as sc
from tests.bench.bench_infra import latency_summary

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
LATENCY_RECORDS = 400
LATENCY_INTERVAL_S = 0.005  # 200 records/s: latency, not throughput, is measured
WARMUP_RECORDS = 20
STALL_S = 30.0


async def _lines(content: Any) -> AsyncIterator[bytes]:
    """Lines of a streaming body, without their newline (aiohttp's iterator splits on \\n)."""
    async for line in content:
        yield line.rstrip(b"\r\n")


async def _ndjson_records(content: Any) -> AsyncIterator[dict[str, Any]]:
    async for line in _lines(content):
        if line:
            yield orjson.loads(line)


async def _sse_records(content: Any) -> AsyncIterator[dict[str, Any]]:
    """The ``data`` of each record event (heartbeat comments and other events skipped)."""
    event, data = "message", b""
    async for line in _lines(content):
        if not line:
            if data and event == "record":
                yield orjson.loads(data)
            event, data = "message", b""
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            data = line[5:].lstrip()


def _value_bytes(record: dict[str, Any]) -> bytes:
    value = record["value"]
    if isinstance(value, str):
        return base64.b64decode(value)
    return orjson.dumps(value)


async def _instance(ctx: sc.Ctx, url: str, topic: str, **config: Any) -> str:
    group = f"bench-stream-{uuid.uuid4().hex[:8]}"
    path = await sc.create_instance(
        ctx.http,
        url,
        group,
        "s1",
        **{"auto.offset.reset": "earliest", "auto.commit.enable": "false", **config},
    )
    await sc.assign(ctx.http, url, path, topic, ctx.sizes.partitions)
    return path


async def _count(records: AsyncIterator[dict[str, Any]], n: int) -> int:
    got = 0
    async with asyncio.timeout(STALL_S + n / 1000):
        async for _ in records:
            got += 1
            if got >= n:
                break
    return got


async def throughput(ctx: sc.Ctx, gateway_url: str, *, sides: Sequence[str]) -> list[sc.Result]:
    n = ctx.sizes.records
    topic = await sc.prefill(ctx, n)
    payload = n * ctx.sizes.record_bytes
    results: list[sc.Result] = []

    def cpu_us(res: sc.Result) -> None:
        res["gateway_cpu_us_per_record"] = round(
            res["cpu"].get("gateway_cores", 0.0) * res["seconds"] / n * 1e6, 1
        )

    if "gateway" in sides:
        path = await _instance(ctx, gateway_url, topic)
        try:

            async def ndjson() -> dict[str, Any]:
                url = f"{gateway_url}{path}/records"
                params = {"max_records": str(n)}
                async with ctx.http.get(url, params=params, headers={"Accept": NDJSON}) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"stream: HTTP {resp.status} {await resp.read()!r}")
                    return {"records_read": await _count(_ndjson_records(resp.content), n)}

            res = await sc.measured(ctx, ndjson, records=n, payload_bytes=payload)
        finally:
            await sc.delete_instance(ctx.http, gateway_url, path)
        cpu_us(res)
        results.append(
            {"scenario": "stream-consume", "variant": "NDJSON instance", "side": "gateway", **res}
        )

        async def sse() -> dict[str, Any]:
            url = f"{gateway_url}/topics/{topic}/events"
            params = {"from": "beginning", "format": "binary"}
            async with ctx.http.get(url, params=params, headers={"Accept": SSE}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"stream: HTTP {resp.status} {await resp.read()!r}")
                return {"records_read": await _count(_sse_records(resp.content), n)}

        res = await sc.measured(ctx, sse, records=n, payload_bytes=payload)
        cpu_us(res)
        results.append(
            {"scenario": "stream-consume", "variant": "SSE topic", "side": "gateway", **res}
        )
    if "direct" in sides:
        res = await sc.direct_consume(ctx, topic, scenario="stream-consume", variant="getmany")
        results.append(res)
    return results


async def _produce_steadily(ctx: sc.Ctx, topic: str, count: int) -> None:
    """``count`` records, each carrying its send time (perf_counter ns) as its value."""
    producer = sc.new_producer(ctx.bootstrap, linger_ms=0)
    await producer.start()
    try:
        futures = []
        for _ in range(count):
            futures.append(await producer.send(topic, value=b"%d" % time.perf_counter_ns()))
            await asyncio.sleep(LATENCY_INTERVAL_S)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _latencies(
    ctx: sc.Ctx,
    topic: str,
    receive: Callable[[int], AsyncIterator[bytes]],
    opened: asyncio.Event,
) -> list[float]:
    """Open the receiver (``receive`` sets ``opened`` once it is attached), produce, collect."""
    total = WARMUP_RECORDS + LATENCY_RECORDS
    samples: list[float] = []

    async def collect() -> None:
        async for value in receive(total):
            samples.append((time.perf_counter_ns() - int(value)) / 1e9)
            if len(samples) >= total:
                return

    task = asyncio.create_task(collect())
    try:
        async with asyncio.timeout(STALL_S):
            await opened.wait()
        await asyncio.sleep(0.5)  # the reader's first fetch is in flight
        await _produce_steadily(ctx, topic, total)
        async with asyncio.timeout(STALL_S):
            await task
    finally:
        task.cancel()
    return samples[WARMUP_RECORDS:]


async def latency(ctx: sc.Ctx, gateway_url: str, *, sides: Sequence[str]) -> list[sc.Result]:
    results: list[sc.Result] = []

    def result(variant: str, side: str, samples: list[float]) -> sc.Result:
        return {
            "scenario": "stream-latency",
            "variant": variant,
            "side": side,
            "records": len(samples),
            "cpu": {},
            "latency": latency_summary(samples),
        }

    if "gateway" in sides:
        topic = await ctx.topic()
        opened = asyncio.Event()

        async def sse(total: int) -> AsyncIterator[bytes]:
            url = f"{gateway_url}/topics/{topic}/events"
            params = {"from": "end", "format": "binary"}
            async with ctx.http.get(url, params=params, headers={"Accept": SSE}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"stream: HTTP {resp.status} {await resp.read()!r}")
                opened.set()
                async for record in _sse_records(resp.content):
                    yield _value_bytes(record)

        samples = await _latencies(ctx, topic, sse, opened)
        results.append(result("SSE topic, produce to event", "gateway", samples))

        topic = await ctx.topic()
        path = await _instance(ctx, gateway_url, topic, **{"auto.offset.reset": "latest"})
        opened = asyncio.Event()

        async def ndjson(total: int) -> AsyncIterator[bytes]:
            url = f"{gateway_url}{path}/records"
            params = {"max_records": str(total)}
            async with ctx.http.get(url, params=params, headers={"Accept": NDJSON}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"stream: HTTP {resp.status} {await resp.read()!r}")
                opened.set()
                async for record in _ndjson_records(resp.content):
                    yield _value_bytes(record)

        try:
            samples = await _latencies(ctx, topic, ndjson, opened)
        finally:
            await sc.delete_instance(ctx.http, gateway_url, path)
        results.append(result("NDJSON instance, produce to line", "gateway", samples))

    if "direct" in sides:
        topic = await ctx.topic()
        opened = asyncio.Event()

        async def direct(total: int) -> AsyncIterator[bytes]:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=ctx.bootstrap, group_id=None, enable_auto_commit=False
            )
            await consumer.start()
            try:
                tps = [TopicPartition(topic, p) for p in range(ctx.sizes.partitions)]
                consumer.assign(tps)
                await consumer.seek_to_end(*tps)
                for tp in tps:
                    await consumer.position(tp)
                opened.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=1000)
                    for records in batches.values():
                        for r in records:
                            assert r.value is not None
                            yield r.value
            finally:
                await consumer.stop()

        samples = await _latencies(ctx, topic, direct, opened)
        results.append(result("getmany loop, produce to record", "direct", samples))
    return results
