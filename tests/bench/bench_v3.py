"""Scenario ``v3``: streaming produce (``POST /v3/.../records``) vs a direct aiokafka producer.

The gateway side sends ``records`` BINARY records of ``record_bytes`` bytes (keyless, each with
one header and an ISO timestamp, the v3 features the v2 scenarios cannot exercise) as ONE
chunked request of concatenated JSON objects, newline-separated, and reads the one result line
per record as it streams back; the clock covers the whole exchange. The direct side produces
the same values, headers and timestamps with aiokafka's fastest path (``create_batch`` /
``send_batch``, batches handed over round-robin across partitions, all acknowledgements
awaited at the end), as scenario ``produce`` does.

Bodies and values are built before the clock starts on both sides. Reported per side:
records/s, MB/s of value bytes, CPU of every process; the gateway row also carries its CPU
µs per record, the table the gateway/direct ratio.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.bench import bench_scenarios as sc

CHUNK = 64 * 1024
JSON = {"Content-Type": "application/json"}


async def _cluster_id(ctx: sc.Ctx, gateway_url: str) -> str:
    async with ctx.http.get(f"{gateway_url}/v3/clusters") as resp:
        body = await resp.json()
    return str(body["data"][0]["cluster_id"])


def _records(n: int, size: int) -> tuple[list[bytes], list[int], bytes]:
    values = sc.binary_values(n, size)
    base_ms = 1_700_000_000_000
    stamps = [base_ms + i for i in range(n)]
    lines = []
    for i, value in enumerate(values):
        when = datetime.fromtimestamp(stamps[i] / 1000, UTC).isoformat(timespec="milliseconds")
        lines.append(
            orjson.dumps(
                {
                    "value": {"type": "BINARY", "data": base64.b64encode(value).decode()},
                    "headers": [{"name": "seq", "value": base64.b64encode(b"%d" % i).decode()}],
                    "timestamp": when.replace("+00:00", "Z"),
                }
            )
        )
    return values, stamps, b"\n".join(lines)


async def v3_stream(ctx: sc.Ctx, gateway_url: str, *, sides: Sequence[str]) -> list[sc.Result]:
    s = ctx.sizes
    values, stamps, body = _records(s.records, s.record_bytes)
    payload = sum(len(v) for v in values)
    base = {"scenario": "v3-produce-stream", "variant": "1 request, all records"}
    results: list[sc.Result] = []

    if "gateway" in sides:
        cid = await _cluster_id(ctx, gateway_url)
        topic = await ctx.topic()
        url = f"{gateway_url}/v3/clusters/{cid}/topics/{topic}/records"
        async with ctx.http.post(url, data=body[: body.index(b"\n")], headers=JSON) as resp:
            await resp.read()  # warm-up: the producer learns the topic before the clock starts

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), CHUNK):
                yield body[start : start + CHUNK]

        async def via_gateway() -> dict[str, Any]:
            failed = answered = 0
            async with ctx.http.post(url, data=chunks(), headers=JSON) as resp:
                async for line in resp.content:
                    answered += 1
                    if not line.startswith(b'{"error_code":200,'):
                        failed += 1
            return {"records_failed": failed + s.records - answered}

        res = await sc.measured(ctx, via_gateway, records=s.records, payload_bytes=payload)
        res["gateway_cpu_us_per_record"] = round(
            res["cpu"].get("gateway_cores", 0.0) * res["seconds"] / s.records * 1e6, 1
        )
        results.append({**base, "side": "gateway", **res})

    if "direct" in sides:
        topic = await ctx.topic()
        producer = sc.new_producer(ctx.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, values[0])  # warm-up, as for the gateway
            partitions = sorted(producer.client.cluster.partitions_for_topic(topic) or {0})
            headers = [[("seq", b"%d" % i)] for i in range(len(values))]

            async def direct() -> dict[str, Any]:
                futures = []
                turn = 0
                batch = producer.create_batch()
                for i, value in enumerate(values):
                    if (
                        batch.append(key=None, value=value, timestamp=stamps[i], headers=headers[i])
                        is None
                    ):
                        batch.close()
                        futures.append(
                            await producer.send_batch(
                                batch, topic, partition=partitions[turn % len(partitions)]
                            )
                        )
                        turn += 1
                        batch = producer.create_batch()
                        batch.append(key=None, value=value, timestamp=stamps[i], headers=headers[i])
                batch.close()
                futures.append(
                    await producer.send_batch(
                        batch, topic, partition=partitions[turn % len(partitions)]
                    )
                )
                failed = 0
                for future in futures:
                    try:
                        await future
                    except Exception:
                        failed += 1
                return {"batches_failed": failed}

            res = await sc.measured(ctx, direct, records=s.records, payload_bytes=payload)
        finally:
            await producer.stop()
        results.append({**base, "side": "direct", **res})
    return results
