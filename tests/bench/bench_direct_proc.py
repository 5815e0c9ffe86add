"""A process of its own running only the direct aiokafka client, for the memory comparison.

The gateway's RSS is that of a whole process, so the fair comparison is the RSS of another
whole process doing the same Kafka work with aiokafka directly, not the benchmark driver
(which also holds the HTTP client, the payloads and the results). Prints one JSON line.

    python3 -m tests.bench.bench_direct_proc produce --bootstrap H:P --topic T --records N
    python3 -m tests.bench.bench_direct_proc consumers --bootstrap H:P --count 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def memory_kb() -> dict[str, int]:
    # Duplicated from bench_infra on purpose: importing it would pull aiohttp into this
    # process and inflate the very RSS being compared.
    out: dict[str, int] = {}
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


async def produce(args: argparse.Namespace) -> dict[str, Any]:
    """Scenario 1's direct half: ``records`` values in batches, ``concurrency`` batches in
    flight, each batch sent record by record and then awaited together."""
    rnd = random.Random(1)
    distinct = [rnd.randbytes(args.size) for _ in range(1024)]
    values = [distinct[i % 1024] for i in range(args.records)]
    batches = [values[i : i + args.batch] for i in range(0, len(values), args.batch)]
    before_start = memory_kb()
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        enable_idempotence=True,  # as the gateway (producer.enable.idempotence=auto)
        linger_ms=0,
        request_timeout_ms=10_000,
    )
    await producer.start()
    try:
        await producer.send_and_wait(args.topic, values[0])
        idle = memory_kb()
        it = iter(batches)

        async def worker() -> None:
            for part in it:
                futs = [await producer.send(args.topic, value=v) for v in part]
                await asyncio.gather(*futs)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        seconds = time.perf_counter() - t0
    finally:
        await producer.stop()
    return {
        "rss_before_start_kb": before_start["VmRSS"],
        "rss_idle_kb": idle["VmRSS"],
        "after": memory_kb(),
        "seconds": round(seconds, 3),
        "records_per_s": round(args.records / seconds, 1),
    }


async def consumers(args: argparse.Namespace) -> dict[str, Any]:
    """``count`` started consumers with no subscription: the direct analogue of idle gateway
    consumer instances (each one a started AIOKafkaConsumer in its own group)."""
    before = memory_kb()
    group = f"bench-idle-direct-{uuid.uuid4().hex[:8]}"
    started = []
    try:
        for i in range(args.count):
            c = AIOKafkaConsumer(
                bootstrap_servers=args.bootstrap,
                group_id=f"{group}-{i}",
                client_id=f"bench-{i}",
                enable_auto_commit=False,
            )
            await c.start()
            started.append(c)
        await asyncio.sleep(2)  # let start-up garbage settle, as for the gateway
        after = memory_kb()
    finally:
        await asyncio.gather(*(c.stop() for c in started), return_exceptions=True)
    return {
        "count": args.count,
        "rss_before_kb": before["VmRSS"],
        "rss_after_kb": after["VmRSS"],
        "kb_per_consumer": round((after["VmRSS"] - before["VmRSS"]) / max(args.count, 1), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("produce")
    pr.add_argument("--bootstrap", required=True)
    pr.add_argument("--topic", required=True)
    pr.add_argument("--records", type=int, default=100_000)
    pr.add_argument("--size", type=int, default=100)
    pr.add_argument("--batch", type=int, default=500)
    pr.add_argument("--concurrency", type=int, default=8)
    co = sub.add_parser("consumers")
    co.add_argument("--bootstrap", required=True)
    co.add_argument("--count", type=int, default=200)
    args = p.parse_args(argv)
    result = asyncio.run(produce(args) if args.cmd == "produce" else consumers(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
