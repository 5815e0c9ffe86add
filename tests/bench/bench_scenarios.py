"""The benchmark scenarios: each one measured through the gateway and with a direct client.

Both halves of a scenario do the same work on their own fresh topic, one right after the
other, in the same run, so they share the machine's conditions; the result that matters is
their ratio. The gateway half is an HTTP client (one pooled aiohttp session) talking to a
gateway process; the direct half is the aiokafka client an application would otherwise embed,
configured like the gateway's own (acks=all, linger 0, idempotent), so the ratio isolates
what the HTTP hop, JSON and base64 cost rather than a difference in Kafka settings.

Request bodies and record values are built before the clock starts on both sides: the client
side's own encoding cost is not what is being measured (the driver process's CPU use during
each measurement is recorded, though, so a client-bound run would show).
"""

from __future__ import annotations

import asyncio
import base64
import operator
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaTimeoutError

from tests.bench.bench_infra import CpuMeter, latency_summary
from tests.bench.lean_http import LeanConnection, post_head
from tests.harness import topics

V2 = "application/vnd.kafka.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"
JSON_V2 = "application/vnd.kafka.json.v2+json"
MAX_BYTES = 64 * 1024 * 1024  # the gateway's default consumer.request.max.bytes cap
_ERROR_CODE = operator.itemgetter("error_code")
STALL_S = 30.0  # a read loop that makes no progress this long is a failure, not a slow run

Result = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """Workload sizes; ``quick()`` divides the big ones by 10 for a smoke run."""

    records: int = 100_000
    # Records of the consume scenario (``--consume-records``); 0: ``records``. At 100,000 the
    # first read, which waits for the instance's first fetch, is a large part of the total.
    consume_records: int = 0
    record_bytes: int = 100
    batches: tuple[int, ...] = (100, 500)
    concurrency: int = 8
    latency_requests: int = 2000
    latency_warmup: int = 50
    idle_instances: int = 200
    forward_reads: int = 1000
    partitions: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(records=10_000, latency_requests=200, idle_instances=20, forward_reads=100)

    @property
    def consumed(self) -> int:
        return self.consume_records or self.records


@dataclass
class Ctx:
    """What every scenario needs: the broker, an admin client, the HTTP session, CPU pids."""

    bootstrap: str
    admin: AIOKafkaAdminClient
    http: aiohttp.ClientSession
    sizes: Sizes
    cpu_pids: dict[str, int]
    # The produce throughput scenarios' HTTP client: "lean" (lean_http) or "aiohttp".
    client: str = "lean"
    created_topics: list[str] = field(default_factory=list)

    async def topic(self, partitions: int | None = None) -> str:
        name = await topics.create_topic(
            self.admin, partitions or self.sizes.partitions, topics.unique_topic_name("bench-")
        )
        self.created_topics.append(name)
        return name

    def meter(self, extra_pids: dict[str, int] | None = None) -> CpuMeter:
        return CpuMeter({**self.cpu_pids, **(extra_pids or {})})


# --- payloads ------------------------------------------------------------------------------------


def binary_values(n: int, size: int, seed: int = 1) -> list[bytes]:
    """``n`` incompressible values of ``size`` bytes (1024 distinct ones, cycled: generating
    100k random values would only slow start-up, and no layer deduplicates them)."""
    rnd = random.Random(seed)
    distinct = [rnd.randbytes(size) for _ in range(min(n, 1024))]
    return [distinct[i % len(distinct)] for i in range(n)]


def json_values(n: int, size: int) -> list[dict[str, Any]]:
    """``n`` small JSON objects whose compact encoding is ``size`` bytes (padded with text)."""
    out = []
    for i in range(n):
        doc: dict[str, Any] = {
            "id": i,
            "user": f"user-{i % 997}",
            "amount": round(i * 0.37, 2),
            "ok": i % 2 == 0,
            "note": "",
        }
        pad = size - len(orjson.dumps(doc))
        doc["note"] = "x" * max(pad, 0)
        out.append(doc)
    return out


def chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def new_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """A producer configured like the gateway's shared one (gateway/kafka.py defaults)."""
    kwargs: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,  # the gateway default since producer.enable.idempotence
        "linger_ms": 0,
        "request_timeout_ms": 10_000,
        **overrides,
    }
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **kwargs)


# --- gateway client helpers ----------------------------------------------------------------------


async def post_bodies(
    ctx: Ctx,
    url: str,
    bodies: Sequence[bytes],
    content_type: str,
    concurrency: int,
    samples: list[float] | None = None,
) -> dict[str, int]:
    """POST every body with ``concurrency`` requests in flight; count failed records.

    Every response is parsed and every record's ``error_code`` checked, so a gateway that
    answered fast but wrote nothing could not pass for a fast one. With ``samples``, each
    request's duration (send to response read) is appended to it. The requests go through
    ``ctx.client``: the lean keep-alive client (one connection per request in flight) or
    aiohttp's pooled session.
    """
    it = iter(bodies)
    counts = {"requests": 0, "records_ok": 0, "records_failed": 0, "http_errors": 0}

    def count(status: int, raw: bytes) -> None:
        counts["requests"] += 1
        if status != 200:
            counts["http_errors"] += 1
            if counts["http_errors"] == 1:
                print(f"    ! HTTP {status} from {url}: {raw[:300]!r}")
            return
        offsets = orjson.loads(raw)["offsets"]
        ok = list(map(_ERROR_CODE, offsets)).count(None)
        counts["records_failed"] += len(offsets) - ok
        counts["records_ok"] += ok

    async def aiohttp_worker() -> None:
        headers = {"Content-Type": content_type, "Accept": V2}
        for body in it:  # one shared iterator: each body is taken by exactly one worker
            t0 = time.perf_counter()
            async with ctx.http.post(url, data=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
            if samples is not None:
                samples.append(time.perf_counter() - t0)
            count(status, raw)

    async def lean_worker() -> None:
        conn = await LeanConnection.open(url)
        try:
            for body in it:
                head = post_head(url, content_type, V2, len(body))
                t0 = time.perf_counter()
                status, raw = await conn.request(head, body)
                if samples is not None:
                    samples.append(time.perf_counter() - t0)
                count(status, raw)
        finally:
            await conn.close()

    worker = lean_worker if ctx.client == "lean" else aiohttp_worker
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


async def create_instance(
    http: aiohttp.ClientSession, url: str, group: str, name: str, **config: Any
) -> str:
    """Create a binary consumer instance on the gateway at ``url``; returns its path."""
    body = {"name": name, "format": "binary", **config}
    async with http.post(
        f"{url}/consumers/{group}",
        data=orjson.dumps(body),
        headers={"Content-Type": V2, "Accept": V2},
    ) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"create instance: HTTP {resp.status} {raw[:300]!r}")
    return f"/consumers/{group}/instances/{name}"


async def assign(
    http: aiohttp.ClientSession, url: str, path: str, topic: str, partitions: int
) -> None:
    body = {"partitions": [{"topic": topic, "partition": p} for p in range(partitions)]}
    async with http.post(
        f"{url}{path}/assignments", data=orjson.dumps(body), headers={"Content-Type": V2}
    ) as resp:
        if resp.status != 204:
            raise RuntimeError(f"assign: HTTP {resp.status} {(await resp.read())[:300]!r}")


async def delete_instance(http: aiohttp.ClientSession, url: str, path: str) -> None:
    async with http.delete(f"{url}{path}", headers={"Accept": V2}) as resp:
        await resp.read()


async def read_records(
    http: aiohttp.ClientSession, url: str, path: str, params: dict[str, str]
) -> list[Any]:
    async with http.get(
        f"{url}{path}/records", params=params, headers={"Accept": BINARY_V2}
    ) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"read: HTTP {resp.status} {raw[:300]!r}")
    return orjson.loads(raw)


async def read_all_via_gateway(
    http: aiohttp.ClientSession, url: str, path: str, n: int, params: dict[str, str]
) -> dict[str, Any]:
    """Read until ``n`` records came back; every response is parsed (the client's real work).
    ``latency``: the duration of each read (request sent to response parsed)."""
    count = requests = 0
    samples: list[float] = []
    last_progress = time.monotonic()
    while count < n:
        t0 = time.perf_counter()
        got = len(await read_records(http, url, path, params))
        samples.append(time.perf_counter() - t0)
        requests += 1
        count += got
        now = time.monotonic()
        if got:
            last_progress = now
        elif now - last_progress > STALL_S:
            raise RuntimeError(f"gateway read stalled at {count}/{n} records")
    return {"records": count, "requests": requests, "latency": latency_summary(samples)}


# --- measurement shell ---------------------------------------------------------------------------


async def measured(
    ctx: Ctx,
    work: Callable[[], Awaitable[dict[str, Any]]],
    *,
    records: int,
    payload_bytes: int,
) -> Result:
    """Run ``work`` under the CPU meter and the wall clock; throughput from ``records``."""
    meter = ctx.meter()
    meter.start()
    t0 = time.perf_counter()
    detail = await work()
    seconds = time.perf_counter() - t0
    cpu = meter.stop()
    return {
        "seconds": round(seconds, 3),
        "records": records,
        "records_per_s": round(records / seconds, 1),
        "mb_per_s": round(payload_bytes / seconds / 1e6, 3),
        "cpu": cpu,
        **detail,
    }


# --- 1 and 4: produce throughput -----------------------------------------------------------------


async def produce_throughput(
    ctx: Ctx, gateway_url: str, *, fmt: str, batch: int, sides: Sequence[str]
) -> list[Result]:
    """``records`` values in requests of ``batch``, ``concurrency`` requests in flight, vs the
    direct producer sending the same batches with aiokafka's batch API (``create_batch`` /
    ``send_batch``), its fastest way to produce."""
    s = ctx.sizes
    if fmt == "binary":
        raw: list[Any] = binary_values(s.records, s.record_bytes)
        gw_values: list[Any] = [base64.b64encode(v).decode() for v in raw]
        payload = sum(len(v) for v in raw)
        ctype = BINARY_V2
    else:
        raw = json_values(s.records, s.record_bytes)
        gw_values = raw
        payload = sum(len(orjson.dumps(v)) for v in raw)
        ctype = JSON_V2
    base = {"scenario": f"produce-{fmt}", "variant": f"batch={batch} conc={s.concurrency}"}
    results: list[Result] = []

    if "gateway" in sides:
        bodies = [
            orjson.dumps({"records": [{"value": v} for v in part]})
            for part in chunks(gw_values, batch)
        ]
        topic = await ctx.topic()
        url = f"{gateway_url}/topics/{topic}"
        # Warm-up: the gateway's producer learns the topic's metadata before the clock starts.
        await post_bodies(
            ctx, url, [orjson.dumps({"records": [{"value": gw_values[0]}]})], ctype, 1
        )

        async def via_gateway() -> dict[str, Any]:
            samples: list[float] = []
            out: dict[str, Any] = await post_bodies(ctx, url, bodies, ctype, s.concurrency, samples)
            if out["records_ok"] != s.records:  # a fast answer that wrote less is no result
                raise RuntimeError(f"produce via the gateway: {out} for {s.records} records")
            return {**out, "latency": latency_summary(samples)}

        res = await measured(ctx, via_gateway, records=s.records, payload_bytes=payload)
        results.append({**base, "side": "gateway", **res})

    if "direct" in sides:
        topic = await ctx.topic()
        producer = new_producer(ctx.bootstrap)
        await producer.start()
        try:
            first = raw[0] if fmt == "binary" else orjson.dumps(raw[0])
            await producer.send_and_wait(topic, first)  # warm-up, as for the gateway
            batches = chunks(raw, batch)

            async def direct() -> dict[str, Any]:
                it = iter(batches)
                failed = 0
                samples: list[float] = []  # per request-sized chunk, until acknowledged

                partitions = sorted(producer.client.cluster.partitions_for_topic(topic) or {0})

                async def send(batch: Any) -> Any:
                    # aiokafka's send_batch gives up while the partition's previous batch is
                    # still queued, with a timeout that shrinks each time it wakes (the
                    # gateway queues per partition for this, see produce/sender.py); a
                    # leader move right after topic creation is enough to trigger it.
                    for attempt in range(5):
                        try:
                            return await producer.send_batch(
                                batch, topic, partition=random.choice(partitions)
                            )
                        except KafkaTimeoutError:
                            if attempt == 4:
                                raise
                    raise AssertionError("unreachable")

                async def worker() -> None:
                    # aiokafka's fastest path, as the gateway now uses it: whole batches
                    # (create_batch / send_batch), each to one partition, one future each.
                    nonlocal failed
                    for part in it:
                        t0 = time.perf_counter()
                        values = part if fmt == "binary" else [orjson.dumps(v) for v in part]
                        futs = []
                        batch = producer.create_batch()
                        for v in values:
                            if batch.append(key=None, value=v, timestamp=None) is None:
                                batch.close()
                                futs.append(await send(batch))
                                batch = producer.create_batch()
                                batch.append(key=None, value=v, timestamp=None)
                        batch.close()
                        futs.append(await send(batch))
                        done = await asyncio.gather(*futs, return_exceptions=True)
                        samples.append(time.perf_counter() - t0)
                        failed += sum(len(values) for d in done if isinstance(d, BaseException))

                await asyncio.gather(*(worker() for _ in range(s.concurrency)))
                return {"records_failed": failed, "latency": latency_summary(samples)}

            res = await measured(ctx, direct, records=s.records, payload_bytes=payload)
        finally:
            await producer.stop()
        results.append({**base, "side": "direct", **res})
    return results


# --- 2: produce latency --------------------------------------------------------------------------


async def produce_latency(ctx: Ctx, gateway_url: str, *, sides: Sequence[str]) -> list[Result]:
    """Sequential single-record produces: each request waits for the previous answer."""
    s = ctx.sizes
    total = s.latency_warmup + s.latency_requests
    values = binary_values(total, s.record_bytes, seed=2)
    base = {"scenario": "produce-latency", "variant": "1 record/request, sequential"}
    results: list[Result] = []

    if "gateway" in sides:
        topic = await ctx.topic()
        url = f"{gateway_url}/topics/{topic}"
        headers = {"Content-Type": BINARY_V2, "Accept": V2}
        bodies = [
            orjson.dumps({"records": [{"value": base64.b64encode(v).decode()}]}) for v in values
        ]
        samples: list[float] = []

        heads = [post_head(url, BINARY_V2, V2, len(body)) for body in bodies]

        async def post(conn: LeanConnection | None, i: int) -> tuple[int, bytes]:
            body = bodies[i]
            if conn is not None:
                return await conn.request(heads[i], body)
            async with ctx.http.post(url, data=body, headers=headers) as resp:
                return resp.status, await resp.read()

        async def via_gateway() -> dict[str, Any]:
            failed = 0
            conn = await LeanConnection.open(url) if ctx.client == "lean" else None
            try:
                for i in range(len(bodies)):
                    t0 = time.perf_counter()
                    status, raw = await post(conn, i)
                    dt = time.perf_counter() - t0
                    ok = status == 200
                    if not ok or orjson.loads(raw)["offsets"][0]["error_code"] is not None:
                        failed += 1
                    if i >= s.latency_warmup:
                        samples.append(dt)
            finally:
                if conn is not None:
                    await conn.close()
            return {"records_failed": failed}

        res = await measured(ctx, via_gateway, records=total, payload_bytes=0)
        results.append({**base, "side": "gateway", **res, "latency": latency_summary(samples)})

    if "direct" in sides:
        topic = await ctx.topic()
        producer = new_producer(ctx.bootstrap)
        await producer.start()
        samples = []
        try:

            async def direct() -> dict[str, Any]:
                for i, v in enumerate(values):
                    t0 = time.perf_counter()
                    await producer.send_and_wait(topic, v)
                    if i >= s.latency_warmup:
                        samples.append(time.perf_counter() - t0)
                return {}

            res = await measured(ctx, direct, records=total, payload_bytes=0)
        finally:
            await producer.stop()
        results.append({**base, "side": "direct", **res, "latency": latency_summary(samples)})
    return results


# --- 3: consume throughput -----------------------------------------------------------------------


async def prefill(ctx: Ctx, n: int) -> str:
    """A fresh topic holding exactly ``n`` records of ``record_bytes``, written directly (fast
    producer settings: how the topic was filled is not what the consume scenario measures)."""
    topic = await ctx.topic()
    producer = new_producer(ctx.bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futs = [
            await producer.send(topic, value=v)
            for v in binary_values(n, ctx.sizes.record_bytes, seed=3)
        ]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, p) for p in range(ctx.sizes.partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    if sum(ends.values()) != n:
        raise RuntimeError(f"prefill wrote {sum(ends.values())} records, wanted {n}")
    return topic


def consume_params(variant: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(instance config, read query) of a consume variant.

    ``min1``: what the brief asks (fetch.min.bytes=1: a read returns as soon as it has data).
    ``min1MB``: the same instance asking for ~1 MB per response, to show how much of the
    gap is per-request overhead; the 250 ms timeout bounds the one partial response at the end.
    """
    if variant == "min1":
        return {"fetch.min.bytes": 1}, {"max_bytes": str(MAX_BYTES)}
    if variant == "min1MB":
        return {"fetch.min.bytes": 1_000_000}, {"max_bytes": str(MAX_BYTES), "timeout": "250"}
    raise ValueError(variant)


async def gateway_consume(
    ctx: Ctx,
    create_url: str,
    read_url: str,
    topic: str,
    *,
    variant: str,
    scenario: str,
    label: str,
) -> Result:
    """Create an instance on ``create_url``, assign it ``topic``, read it all via ``read_url``."""
    n = ctx.sizes.consumed
    config, params = consume_params(variant)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    path = await create_instance(
        ctx.http,
        create_url,
        group,
        "c1",
        **{"auto.offset.reset": "earliest", "auto.commit.enable": "false", **config},
    )
    try:
        await assign(ctx.http, create_url, path, topic, ctx.sizes.partitions)

        async def work() -> dict[str, Any]:
            out = await read_all_via_gateway(ctx.http, read_url, path, n, params)
            out["records_per_response"] = round(out["records"] / out["requests"], 1)
            return out

        res = await measured(ctx, work, records=n, payload_bytes=n * ctx.sizes.record_bytes)
    finally:
        await delete_instance(ctx.http, create_url, path)
    return {"scenario": scenario, "variant": variant, "side": label, **res}


async def direct_consume(ctx: Ctx, topic: str, *, scenario: str, variant: str) -> Result:
    """The same topic read by a plain AIOKafkaConsumer: assign, then ``getmany`` until done."""
    n = ctx.sizes.consumed
    tps = [TopicPartition(topic, p) for p in range(ctx.sizes.partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=ctx.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(tps)

        async def work() -> dict[str, Any]:
            count = calls = 0
            samples: list[float] = []
            last_progress = time.monotonic()
            while count < n:
                t0 = time.perf_counter()
                batches = await consumer.getmany(timeout_ms=1000)
                samples.append(time.perf_counter() - t0)
                calls += 1
                got = sum(len(b) for b in batches.values())
                count += got
                if got:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > STALL_S:
                    raise RuntimeError(f"direct read stalled at {count}/{n}")
            return {
                "requests": calls,
                "records_per_response": round(count / calls, 1),
                "latency": latency_summary(samples),
            }

        res = await measured(ctx, work, records=n, payload_bytes=n * ctx.sizes.record_bytes)
    finally:
        await consumer.stop()
    return {"scenario": scenario, "variant": variant, "side": "direct", **res}


# --- 6: forwarding -------------------------------------------------------------------------------


async def forwarded_read_latency(
    ctx: Ctx, owner_url: str, other_url: str, topic: str
) -> list[Result]:
    """One instance on the owner; single-record reads (``max_bytes=1``: the gateway always
    returns at least one record) alternating owner / other replica, so both see the same
    buffer state and the same moments of machine load."""
    n = ctx.sizes.forward_reads
    group = f"bench-{uuid.uuid4().hex[:8]}"
    path = await create_instance(
        ctx.http,
        owner_url,
        group,
        "lat",
        **{"auto.offset.reset": "earliest", "auto.commit.enable": "false", "fetch.min.bytes": 1},
    )
    samples: dict[str, list[float]] = {"owner": [], "forwarded": []}
    params = {"max_bytes": "1"}
    try:
        await assign(ctx.http, owner_url, path, topic, ctx.sizes.partitions)
        for url in (owner_url, other_url):  # warm-up: first fetch, directory lookup, pool
            for _ in range(5):
                await read_records(ctx.http, url, path, params)
        meter = ctx.meter()
        meter.start()
        for i in range(2 * n):
            side, url = ("owner", owner_url) if i % 2 == 0 else ("forwarded", other_url)
            t0 = time.perf_counter()
            got = await read_records(ctx.http, url, path, params)
            samples[side].append(time.perf_counter() - t0)
            if len(got) != 1:
                raise RuntimeError(f"expected 1 record per read, got {len(got)}")
        cpu = meter.stop()
    finally:
        await delete_instance(ctx.http, owner_url, path)
    return [
        {
            "scenario": "forward-read-latency",
            "variant": "max_bytes=1, alternating",
            "side": side,
            "cpu": cpu,
            "latency": latency_summary(values),
        }
        for side, values in samples.items()
    ]
