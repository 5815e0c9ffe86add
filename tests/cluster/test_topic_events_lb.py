"""A topic stream outlives the replica serving it: SIGKILL mid-stream, resume elsewhere.

Three real gateway processes behind HAProxy, real Kafka. A client reads ``GET
/topics/{t}/events`` through the load balancer the way EventSource does (its own SSE parser,
the last id kept), while an independent producer writes numbered records without pause. The
replica serving the stream is SIGKILLed (no drain, no goodbye); the client reconnects through
the load balancer with ``Last-Event-ID`` and another replica continues from the id alone. In
the end the client holds every record exactly once, in order per partition, compared with an
independent read of the topic.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from gateway.streams.routes import NODE_HEADER
from tests.harness.api import MakeClusterFn, NewTopicFn, ReadBackFn
from tests.support import figures
from tests.support.sse import read_events

pytestmark = pytest.mark.asyncio

SSE = "text/event-stream"
PARTITIONS = 3
KILL_AFTER = 150  # records received before the serving replica is killed
MORE_AFTER_KILL = 300  # records produced after the kill, at least


async def node_tags(urls: list[str], topic: str) -> list[str]:
    """Each replica's node tag, asked of it directly (a stream opened and closed at once)."""
    tags = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for url in urls:
            async with http.get(f"{url}/topics/{topic}/events", headers={"Accept": SSE}) as resp:
                assert resp.status == 200, await resp.text()
                tags.append(resp.headers[NODE_HEADER])
    assert len(set(tags)) == len(tags), tags
    return tags


class Reader:
    """EventSource, minus the browser: reconnects with the last id until told to stop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last_id: str | None = None
        self.records: list[tuple[int, int, str]] = []  # (partition, offset, value)
        self.served_by: list[str] = []  # node tag of each connection, in order
        self.failures: list[str] = []  # why each connection ended

    async def run(self) -> None:
        """Until cancelled."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=30)) as http:
            while True:
                headers = {"Accept": SSE}
                if self.last_id is not None:
                    headers["Last-Event-ID"] = self.last_id
                try:
                    async with http.get(self.url, headers=headers) as resp:
                        if resp.status != 200:  # e.g. HAProxy's 503 while no replica is up
                            self.failures.append(f"HTTP {resp.status}")
                            await asyncio.sleep(0.2)
                            continue
                        self.served_by.append(resp.headers[NODE_HEADER])
                        async for ev in read_events(resp):
                            if ev.id is not None:
                                self.last_id = ev.id
                            if ev.kind == "event":
                                assert ev.event == "record", ev
                                data = ev.json()
                                self.records.append(
                                    (data["partition"], data["offset"], data["value"])
                                )
                    self.failures.append("clean end")
                except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                    self.failures.append(type(exc).__name__)
                    await asyncio.sleep(0.1)  # EventSource's retry, shortened


async def produce_until(
    bootstrap: str, topic: str, stop: asyncio.Event, produced: list[int]
) -> None:
    """Numbered records, round-robin over the partitions, one every few ms until ``stop``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            await producer.send_and_wait(topic, b"%d" % n, partition=n % PARTITIONS)
            produced.append(n)
            n += 1
            await asyncio.sleep(0.005)
    finally:
        await producer.stop()


async def test_topic_stream_resumes_on_another_replica_after_sigkill(
    make_cluster: MakeClusterFn,
    kafka_bootstrap: str,
    new_topic: NewTopicFn,
    read_back: ReadBackFn,
) -> None:
    cluster = await make_cluster(3)
    topic = await new_topic(partitions=PARTITIONS)
    tags = await node_tags(cluster.urls, topic)

    reader = Reader(f"{cluster.lb_url}/topics/{topic}/events?from=beginning")
    stop_producing = asyncio.Event()
    produced: list[int] = []
    reading = asyncio.create_task(reader.run())
    producing = asyncio.create_task(produce_until(kafka_bootstrap, topic, stop_producing, produced))

    def alive() -> None:
        for task in (reading, producing):
            if task.done():
                task.result()  # its failure, if it failed
                raise AssertionError(f"{task} ended early")

    try:
        deadline = time.monotonic() + 60
        while len(reader.records) < KILL_AFTER:
            assert time.monotonic() < deadline, f"only {len(reader.records)} records arrived"
            alive()
            await asyncio.sleep(0.02)
        victim = tags.index(reader.served_by[0])
        cluster.kill(victim)
        killed_at, killed_time = len(produced), time.monotonic()
        recovery_s: float | None = None
        while len(produced) < killed_at + MORE_AFTER_KILL or len(reader.served_by) < 2:
            assert time.monotonic() < deadline, (
                f"{len(produced) - killed_at} produced since the kill, "
                f"connections: {reader.served_by}, ends: {reader.failures}"
            )
            alive()
            if recovery_s is None and len(reader.served_by) > 1:
                recovery_s = round(time.monotonic() - killed_time, 2)
            await asyncio.sleep(0.02)
        stop_producing.set()
        await producing
        total = len(produced)
        while len(reader.records) < total:
            assert time.monotonic() < deadline, f"{len(reader.records)} of {total} records"
            if reading.done():
                reading.result()
            await asyncio.sleep(0.05)
    finally:
        stop_producing.set()
        reading.cancel()
        await asyncio.gather(reading, producing, return_exceptions=True)

    # Served by the victim first, then by a replica that lived: the id alone resumed it.
    assert reader.served_by[0] == tags[victim]
    assert all(tag != tags[victim] for tag in reader.served_by[1:]), reader.served_by
    expected = await read_back(topic, total, timeout=30)
    assert len(expected) == total
    want = sorted((r.partition, r.offset, int(r.value)) for r in expected)
    got = [(p, o, int(v)) for p, o, v in reader.records]
    assert len(got) == len(set(got)), "duplicates"
    for p in range(PARTITIONS):
        mine = [(o, v) for q, o, v in got if q == p]
        assert mine == [(o, v) for q, o, v in want if q == p], f"partition {p}"
    figures.record(
        {
            "scenario": "topic stream (SSE), serving replica SIGKILL mid-way",
            "produced": total,
            "delivered": len(got),
            "duplicates": 0,
            "lost": 0,
            "recovery_s": recovery_s,
            "statuses": ", ".join(reader.failures),
        }
    )
