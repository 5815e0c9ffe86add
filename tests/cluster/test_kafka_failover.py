"""A Kafka partition leader SIGKILLed under the gateway: produce and consume carry on.

Three real gateway replicas behind a real HAProxy, in front of a real three-node Kafka cluster
(:mod:`tests.harness.kafka_cluster`, started once for this module). Topics are replicated
three times with ``min.insync.replicas=2``, so one dead broker leaves every partition writable
once its leadership has moved.

* **Produce**: clients keep posting v2 produce requests of uniquely numbered records through
  the load balancer while the leader of a partition is SIGKILLed. Afterwards the whole topic
  is read back with an independent consumer: every acknowledged record must be there exactly
  once, at the offset the gateway reported; a record whose request failed may be there or not,
  but never twice (the gateway's idempotent producer retries without duplicating).
* **Consume**: a v2 consumer instance reads through the load balancer while the leader of its
  partitions is SIGKILLed: nothing is lost, it sees no error beyond retriable ones, and its
  reads resume after a short wait; the broker comes back and the cluster is healthy again.

Each scenario's counts go to the CI failure table (:mod:`tests.support.figures`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.harness.cluster import GatewayCluster
from tests.harness.kafka_cluster import KafkaCluster
from tests.harness.topics import wait_topic_ready
from tests.support import figures
from tests.support.tally import Tally

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
PARTITIONS = 3

GATEWAY_PROPS = {
    # Kafka's failover (fencing after 3 s, new leader, metadata refresh) fits in this, so most
    # requests in flight when the leader dies are still acknowledged, not timed out.
    "kafka.timeout.ms": "10000",
    "producer.max.block.ms": "5000",
    "shutdown.readiness.delay.ms": "1200",
    "consumer.session.timeout.ms": "10000",
    "consumer.heartbeat.interval.ms": "1000",
}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def kafka3() -> Iterator[KafkaCluster]:
    """Three Kafka nodes for this module; each test leaves all three running and in sync."""
    cluster = KafkaCluster(3)
    cluster.start()
    print(f"3-node Kafka cluster ready in {cluster.startup_seconds:.1f} s")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def heal(kafka3: KafkaCluster) -> AsyncIterator[None]:
    """Whatever a test killed runs again, in sync, before the next test starts."""
    yield
    for node_id, node in kafka3.nodes.items():
        if not node.running:
            await kafka3.restart(node_id)
    await kafka3.wait_healthy()


@pytest.fixture
async def gateways(kafka3: KafkaCluster, redis_url: str) -> AsyncIterator[GatewayCluster]:
    """Three gateway replicas and HAProxy bootstrapping from all three Kafka nodes."""
    cluster = GatewayCluster(
        3, bootstrap_servers=kafka3.bootstrap, redis_url=redis_url, props=GATEWAY_PROPS
    )
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


async def replicated_topic(kafka3: KafkaCluster) -> str:
    name = uid("failover")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka3.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, PARTITIONS, 3, topic_configs={"min.insync.replicas": "2"})]
        )
        await wait_topic_ready(admin, name, PARTITIONS)
    finally:
        await admin.close()
    return name


async def read_whole_topic(bootstrap: str, topic: str) -> dict[tuple[int, int], str]:
    """(partition, offset) -> record id, for every record in the topic, read by a client that
    shares nothing with the gateway, up to the end offsets as they are now."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    log: dict[tuple[int, int], str] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 60
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "could not read the topic to its end in 60 s"
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for r in records:
                    assert r.value is not None
                    log[(tp.partition, r.offset)] = r.value.decode()
    finally:
        await consumer.stop()
    return log


# --- produce ---------------------------------------------------------------------------------


@dataclass
class ProduceLog:
    """What the producing clients were told, record by record."""

    acked: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (partition, offset)
    failed: set[str] = field(default_factory=set)
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    # (sent at, answered at, every record acknowledged) of each request
    requests: list[tuple[float, float, bool]] = field(default_factory=list)
    odd_answers: list[str] = field(default_factory=list)  # bodies that were not JSON

    def acked_since(self, t: float) -> int:
        return sum(1 for sent, _, ok in self.requests if sent >= t and ok)


async def produce_until(
    session: aiohttp.ClientSession,
    url: str,
    client: int,
    log: ProduceLog,
    stop: asyncio.Event,
    batch: int = 25,
) -> None:
    """One client: produce requests of ``batch`` new records, one after another, until told."""
    seq = 0
    while not stop.is_set():
        ids = [f"c{client}-{seq + i}" for i in range(batch)]
        seq += batch
        body = {
            "records": [
                {
                    "key": base64.b64encode(i.encode()).decode(),
                    "value": base64.b64encode(i.encode()).decode(),
                }
                for i in ids
            ]
        }
        log.sent += batch
        sent = time.monotonic()
        try:
            async with session.post(
                url,
                data=orjson.dumps(body),
                headers={"Content-Type": BINARY, "Accept": V2},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                raw = await resp.read()
                log.statuses[f"http {resp.status}"] += 1
                try:
                    answer = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:  # e.g. HAProxy's own page: no replica answered
                    answer = {}
                    log.odd_answers.append(f"{resp.status}: {raw[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.statuses[type(exc).__name__] += 1
            log.failed.update(ids)
            log.requests.append((sent, time.monotonic(), False))
            await asyncio.sleep(0.2)
            continue
        offsets = answer.get("offsets") if resp.status == 200 else None
        if not offsets:
            log.failed.update(ids)
            log.requests.append((sent, time.monotonic(), False))
            await asyncio.sleep(0.2)
            continue
        assert len(offsets) == len(ids), answer
        for rid, entry in zip(ids, offsets, strict=True):
            if entry["error_code"] is None:
                log.acked[rid] = (entry["partition"], entry["offset"])
            else:
                log.failed.add(rid)
                log.statuses[f"record {entry['error_code']}"] += 1
        ok = all(e["error_code"] is None for e in offsets)
        log.requests.append((sent, time.monotonic(), ok))


async def test_leader_killed_during_produce_acknowledged_records_exactly_once(
    kafka3: KafkaCluster, heal: None, gateways: GatewayCluster
) -> None:
    topic = await replicated_topic(kafka3)
    victim = await kafka3.leader_of(topic, 0)
    url = f"{gateways.lb_url}/topics/{topic}"
    log = ProduceLog()
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        clients = [asyncio.create_task(produce_until(session, url, c, log, stop)) for c in range(4)]
        try:
            await _wait_for(lambda: len(log.acked) >= 1000, 60, "1000 records acknowledged")
            killed_at = time.monotonic()
            kafka3.kill(victim)
            new_leader, moved_s = await kafka3.wait_leader_moved(topic, 0, victim)
            # Produce must carry on after the move: plenty of requests sent after the kill
            # fully acknowledged (every request has records for every partition).
            await _wait_for(
                lambda: log.acked_since(killed_at) >= 40, 90, "40 whole requests after the kill"
            )
        finally:
            stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
    for client in clients:
        client.result()  # a bug in the client loop itself fails the test, not the figures
    recovered = min(
        (done for sent, done, ok in log.requests if sent >= killed_at and ok), default=None
    )
    # Stop the replicas (their producers flush what they still hold) before reading back, so
    # nothing the gateway was still retrying can land after the count.
    await gateways.stop()
    records = await read_whole_topic(kafka3.bootstrap, topic)
    copies = Counter(records.values())
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    lost = [rid for rid in log.acked if copies[rid] == 0]
    misplaced = [rid for rid, at in log.acked.items() if copies[rid] and records.get(at) != rid]
    figures.record(
        {
            "scenario": f"Kafka leader SIGKILL during produce (node {victim} -> {new_leader})",
            "produced": log.sent,
            "delivered": len(log.acked),
            "duplicates": duplicates,
            "lost": len(lost),
            "recovery_s": None if recovered is None else round(recovered - killed_at, 2),
            "statuses": {
                **log.statuses,
                "leader_moved_s": round(moved_s, 2),
                "failed_records_written": sum(1 for rid in log.failed if copies[rid]),
            },
        }
    )
    if log.odd_answers:
        print("answers that were not JSON:", *log.odd_answers[:5], sep="\n  ")
    await kafka3.restart(victim)
    await kafka3.wait_healthy([topic])
    assert lost == [], f"{len(lost)} acknowledged records missing, e.g. {lost[:5]}"
    assert duplicates == 0, [rid for rid, n in copies.items() if n > 1][:10]
    assert misplaced == [], f"acknowledged at another offset: {misplaced[:5]}"
    assert set(records.values()) <= set(log.acked) | log.failed  # nothing from nowhere
    # The kill really hit acknowledged traffic on the victim's partition, before and after.
    assert any(p == 0 for p, _ in log.acked.values())
    assert recovered is not None


async def _wait_for(condition: object, timeout: float, what: str) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)


# --- consume ---------------------------------------------------------------------------------

TOTAL = 1500


async def produce_numbers(bootstrap: str, topic: str, start: int, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, str(i).encode(), key=str(i).encode())
            for i in range(start, start + count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def post(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, object]:
    async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": V2}) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None


async def read_through_lb(
    session: aiohttp.ClientSession,
    lb: str,
    group: str,
    name: str,
    tally: Tally,
    deadline_s: float,
    on_progress: Callable[[Tally], None] | None = None,
) -> None:
    """``tests.support.tally.consume`` as this scenario needs it: read (and commit) through
    the load balancer until every record arrived, retrying whatever is not a 200.

    Differs in one point: an answer that is not JSON is counted (as status ``-503`` for
    HAProxy's own "no server is available" page) instead of ending the test, because when a
    broker dies every replica's readiness can drop at once (see the report of issue 14) and
    the load balancer then answers by itself.
    """
    path = f"{lb}/consumers/{group}/instances/{name}"
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and len(set(tally.delivered)) < tally.produced:
        tally.requests += 1
        try:
            async with session.get(
                f"{path}/records",
                params={"timeout": "1000", "max_bytes": "120"},  # ~16 records a read
                headers={"Accept": BINARY},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                body = await resp.read()
                json_body = resp.content_type.endswith("json")
                tally.statuses[
                    resp.status if json_body or resp.status == 200 else -resp.status
                ] += 1
                if resp.status != 200:
                    tally.note_failure()
                    await asyncio.sleep(0.2)
                    continue
                records = orjson.loads(body)
        except (aiohttp.ClientError, TimeoutError):
            tally.statuses[0] += 1
            tally.note_failure()
            await asyncio.sleep(0.2)
            continue
        tally.delivered.extend(int(base64.b64decode(r["value"])) for r in records)
        tally.note_success(bool(records))
        if on_progress is not None:
            on_progress(tally)
        if records:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(
                    f"{path}/offsets",
                    headers={"Content-Type": V2},
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as resp:
                    await resp.read()


async def test_leader_killed_during_consume_loses_nothing_and_reads_resume(
    kafka3: KafkaCluster, heal: None, gateways: GatewayCluster
) -> None:
    topic = await replicated_topic(kafka3)
    await produce_numbers(kafka3.bootstrap, topic, 0, TOTAL)
    victim = await kafka3.leader_of(topic, 0)
    lb = gateways.lb_url
    group, name = uid("kfail"), "c"
    tally = Tally(TOTAL)
    arrivals: list[float] = []  # when each read that brought records was answered
    killed: list[float] = []
    seen = [0]
    async with aiohttp.ClientSession() as session:
        status, body = await post(
            session,
            f"{lb}/consumers/{group}",
            {"name": name, "auto.offset.reset": "earliest", "auto.commit.enable": "false"},
        )
        assert status == 200, body
        status, body = await post(
            session, f"{lb}/consumers/{group}/instances/{name}/subscription", {"topics": [topic]}
        )
        assert status == 204, body

        def progress(t: Tally) -> None:
            if len(t.delivered) > seen[0]:
                seen[0] = len(t.delivered)
                arrivals.append(time.monotonic())
            if not killed and len(set(t.delivered)) >= TOTAL // 3:
                kafka3.kill(victim)
                killed.append(time.monotonic())

        await read_through_lb(session, lb, group, name, tally, 120, on_progress=progress)
        assert killed, "the consumer never got far enough to kill the leader"
        delivered_at_kill = sum(1 for t in arrivals if t <= killed[0])
        # The longest the client waited for records around the kill: the failover as it saw it.
        after = [t for t in arrivals if t > killed[0]]
        stall = (after[0] - killed[0]) if after else None
        gap = max((b - a for a, b in itertools.pairwise(arrivals)), default=0.0)

        # The broker comes back; the same instance then reads what is produced afterwards.
        await kafka3.restart(victim)
        healthy_s = await kafka3.wait_healthy([topic])
        more = Tally(TOTAL + 300)
        more.delivered.extend(range(TOTAL))  # already counted above
        await produce_numbers(kafka3.bootstrap, topic, TOTAL, 300)
        await read_through_lb(session, lb, group, name, more, 60)
        async with session.delete(f"{lb}/consumers/{group}/instances/{name}") as resp:
            assert resp.status == 204
    figures.record(
        {
            **tally.figures(f"Kafka leader SIGKILL during consume (node {victim})"),
            "recovery_s": None if stall is None else round(stall, 2),
            "statuses": {
                **dict(tally.statuses),
                "longest_gap_s": round(gap, 2),
                "healthy_after_restart_s": round(healthy_s, 2),
            },
        }
    )
    assert tally.lost == 0, f"lost {tally.lost} of {TOTAL}"
    assert 0 < delivered_at_kill < len(arrivals), "the kill happened mid-way through reading"
    # No error beyond retriable ones: 200s, and 503s if any (-503: HAProxy's own, when every
    # replica's readiness dropped at once; counted in the figures).
    assert set(tally.statuses) <= {200, 503, -503}, dict(tally.statuses)
    assert stall is not None and stall < 30, f"reads resumed {stall} s after the kill"
    assert more.lost == 0 and set(more.statuses) <= {200, 503, -503}, more.figures("after")
