"""Sessions outlive their replica: crash, drain, rolling restart, zombie, Redis and Kafka outages.

Real gateway processes behind a real HAProxy, real Kafka and Redis. Each scenario produces
numbered records with an independent producer, consumes them through the load balancer the way
a v2 client would (retrying 503s), and states what clients saw in counted figures: produced,
delivered, duplicates, lost, time to recovery.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.harness.cluster import GatewayCluster
from tests.support import figures
from tests.support.tally import Tally, consume

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"

# Fast failure detection for tests: leases of 3 s, Kafka sessions of 6 s (the broker minimum).
FAST = {
    "node.lease.ms": "3000",
    "consumer.session.timeout.ms": "6000",
    "consumer.heartbeat.interval.ms": "1000",
    "shutdown.readiness.delay.ms": "1200",
}
TOTAL = 1200


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def produce_numbers(bootstrap: str, topic: str, total: int = TOTAL) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futs = [
            await producer.send(topic, str(i).encode(), key=str(i).encode()) for i in range(total)
        ]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def post(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, object]:
    async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": V2}) as resp:
        raw = await resp.read()
        return resp.status, orjson.loads(raw) if raw else None


async def create_subscribed(
    session: aiohttp.ClientSession, base: str, group: str, name: str, topic: str
) -> None:
    status, body = await post(
        session,
        f"{base}/consumers/{group}",
        {
            "name": name,
            "auto.offset.reset": "earliest",
            "fetch.min.bytes": 1,
            "auto.commit.enable": "false",
        },
    )
    assert status == 200, body
    status, body = await post(
        session, f"{base}/consumers/{group}/instances/{name}/subscription", {"topics": [topic]}
    )
    assert status == 204, body


async def run_with_event(
    cluster: GatewayCluster,
    session: aiohttp.ClientSession,
    group: str,
    name: str,
    tally: Tally,
    event: object,
    *,
    at: int,
    deadline_s: float = 120,
) -> None:
    """Consume through the LB; once ``at`` records arrived, run ``event`` concurrently."""
    reached = asyncio.Event()

    def progress(t: Tally) -> None:
        if len(t.delivered) >= at:
            reached.set()

    consumer = asyncio.create_task(
        consume(
            session,
            lambda _: cluster.lb_url,
            group,
            name,
            tally,
            deadline_s=deadline_s,
            on_progress=progress,
            max_bytes=60,  # ~8 records a read: consumption spans the event
            pause_s=0.05,
        )
    )
    after_event: list[int] = []

    async def fire() -> None:
        await reached.wait()
        await event()  # type: ignore[operator]
        after_event.append(len(set(tally.delivered)))

    firing = asyncio.create_task(fire())
    await consumer
    if not firing.done():
        firing.cancel()
    else:
        firing.result()
    # The event really happened in the middle of consumption, not after it.
    assert after_event and after_event[0] < tally.produced, after_event


@pytest.mark.both_worker_modes
async def test_crash_of_owner_loses_nothing(make_cluster, kafka_bootstrap, new_topic):
    cluster = await make_cluster(n=3, props=FAST)
    topic = await new_topic(partitions=4)
    await produce_numbers(kafka_bootstrap, topic)
    group, name = uid("crash"), "c"
    tally = Tally(TOTAL)
    async with aiohttp.ClientSession() as session:
        await create_subscribed(session, cluster.urls[0], group, name, topic)  # owner: replica 0

        async def crash() -> None:
            cluster.kill(0)

        await run_with_event(cluster, session, group, name, tally, crash, at=400)
    figures.record(tally.figures("owner SIGKILL mid-way"))
    assert tally.lost == 0
    assert tally.statuses.get(404, 0) == 0  # retriable 503s while the lease lives, never 404
    assert tally.recovery_s is not None  # it really failed over, and came back


@pytest.mark.both_worker_modes
async def test_drain_of_owner_loses_nothing_and_duplicates_nothing(
    make_cluster, kafka_bootstrap, new_topic
):
    cluster = await make_cluster(n=3, props=FAST)
    topic = await new_topic(partitions=4)
    await produce_numbers(kafka_bootstrap, topic)
    group, name = uid("drain"), "d"
    tally = Tally(TOTAL)
    async with aiohttp.ClientSession() as session:
        await create_subscribed(session, cluster.urls[0], group, name, topic)

        async def drain() -> None:
            code = await cluster.terminate(0)
            assert code == 0

        await run_with_event(cluster, session, group, name, tally, drain, at=400)
    figures.record(tally.figures("owner SIGTERM (drain) mid-way"))
    assert tally.lost == 0
    assert tally.duplicates == 0
    assert tally.statuses.get(404, 0) == 0


@pytest.mark.both_worker_modes
async def test_rolling_restart_of_all_replicas(make_cluster, kafka_bootstrap, new_topic):
    cluster = await make_cluster(n=3, props=FAST)
    topic = await new_topic(partitions=4)
    await produce_numbers(kafka_bootstrap, topic, 3000)
    group, name = uid("roll"), "r"
    tally = Tally(3000)
    async with aiohttp.ClientSession() as session:
        await create_subscribed(session, cluster.lb_url, group, name, topic)

        async def roll() -> None:
            for i in range(3):
                assert await cluster.terminate(i) == 0
                await cluster.restart(i)

        await run_with_event(cluster, session, group, name, tally, roll, at=300, deadline_s=180)
    figures.record(tally.figures("rolling restart of 3 replicas"))
    assert tally.lost == 0
    assert tally.duplicates == 0
    assert tally.statuses.get(404, 0) == 0


@pytest.mark.both_worker_modes
async def test_paused_owner_is_fenced_when_it_resumes(make_cluster, kafka_bootstrap, new_topic):
    cluster = await make_cluster(n=3, props=FAST)
    topic = await new_topic(partitions=2)
    await produce_numbers(kafka_bootstrap, topic, 600)
    group, name = uid("zombie"), "z"
    tally = Tally(600)
    async with aiohttp.ClientSession() as session:
        await create_subscribed(session, cluster.urls[0], group, name, topic)
        rotate_others = lambda i: cluster.urls[1 + i % 2]  # noqa: E731 (never the zombie)
        await consume(session, rotate_others, group, name, tally, until=200, deadline_s=30)
        cluster.pause(0)
        try:
            await asyncio.sleep(3.5)  # past the 3 s lease
            # Another replica adopts it and carries on.
            await consume(session, rotate_others, group, name, tally, until=400, deadline_s=60)
            assert len(set(tally.delivered)) >= 400  # served while the old owner was frozen
        finally:
            cluster.resume(0)
        await asyncio.sleep(2.0)  # the zombie renews, finds its lease lapsed, drops its copy
        # Asked directly, the old owner no longer serves the instance itself: it forwards to
        # the adopter, whose view (subscription) it returns.
        async with session.get(
            f"{cluster.urls[0]}/consumers/{group}/instances/{name}/subscription"
        ) as resp:
            assert resp.status == 200
            assert orjson.loads(await resp.read()) == {"topics": [topic]}
        await consume(session, rotate_others, group, name, tally, deadline_s=60)
    figures.record(tally.figures("owner SIGSTOP past its lease, then SIGCONT"))
    assert tally.lost == 0
    log = (cluster.workdir / "replica-0.log").read_text() if cluster.workdir else ""
    assert "taken over" in log or "lease had lapsed" in log, cluster.logs(60)


async def test_redis_outage(kafka_bootstrap, new_topic, redis_server):
    """Produce and metadata keep working; owned instances keep working; the rest is a clear
    503; everything recovers by itself when Redis returns."""
    topic = await new_topic(partitions=1)
    await produce_numbers(kafka_bootstrap, topic, 100)
    cluster = GatewayCluster(
        2,
        bootstrap_servers=kafka_bootstrap,
        redis_url=redis_server.url,
        props={"kafka.timeout.ms": "5000", "producer.max.block.ms": "3000"},
    )
    await cluster.start()
    group, name = uid("redis"), "o"
    try:
        async with aiohttp.ClientSession() as session:
            owner, other = cluster.urls
            await create_subscribed(session, owner, group, name, topic)
            inst = f"/consumers/{group}/instances/{name}"
            redis_server.pause()
            started = time.monotonic()
            async with session.post(
                f"{other}/topics/{topic}",
                data=b'{"records":[{"value":"MTAw"}]}',
                headers={"Content-Type": BINARY},
            ) as resp:
                produced = orjson.loads(await resp.read())
                assert resp.status == 200 and produced["offsets"][0]["error_code"] is None
            async with session.get(f"{other}/topics") as resp:
                assert resp.status == 200 and topic in orjson.loads(await resp.read())
            # The owner serves its own instance without Redis.
            got = await consume(session, lambda _: owner, group, name, Tally(101), deadline_s=20)
            assert got.lost == 0 and set(got.statuses) == {200}
            # Create and cross-replica routing: a clear, retriable 503, within a bound.
            status, body = await post(session, f"{other}/consumers/{group}", {"name": "new"})
            assert status == 503 and "unavailable" in body["message"]
            async with session.get(f"{other}{inst}/subscription") as resp:
                assert resp.status == 503 and resp.headers.get("Retry-After")
            assert time.monotonic() - started < 15
            redis_server.resume()
            for _ in range(40):  # recovers by itself
                async with session.get(f"{other}{inst}/subscription") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.25)
            assert resp.status == 200
            status, _ = await post(session, f"{other}/consumers/{group}", {"name": "new"})
            assert status == 200
    finally:
        redis_server.resume()
        await cluster.stop()
    figures.record(
        {
            "scenario": "Redis paused: owned instance kept working",
            "produced": 101,
            "delivered": len(got.delivered),
            "duplicates": got.duplicates,
            "lost": got.lost,
            "recovery_s": None,
            "statuses": dict(got.statuses),
        }
    )


@pytest.fixture
def private_kafka():
    from tests.harness.kafka import KafkaServer

    server = KafkaServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_kafka_outage(private_kafka, redis_url):
    """Produce answers per-record 50003 within the bound, reads answer without hanging, the
    process stays up and recovers by itself when the broker answers again."""
    bootstrap = private_kafka.bootstrap
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("outage", 1, 1)])
    await admin.close()
    cluster = GatewayCluster(
        1,
        bootstrap_servers=bootstrap,
        redis_url=redis_url,
        props={
            "kafka.timeout.ms": "3000",
            "producer.max.block.ms": "3000",
            "consumer.request.timeout.ms": "1000",
        },
    )
    await cluster.start()
    url = cluster.urls[0]
    produce = {"records": [{"value": "eA=="}, {"value": "eQ=="}]}
    try:
        async with aiohttp.ClientSession() as session:

            async def send() -> tuple[int, dict]:
                async with session.post(
                    f"{url}/topics/outage",
                    data=orjson.dumps(produce),
                    headers={"Content-Type": BINARY},
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as resp:
                    return resp.status, orjson.loads(await resp.read())

            status, body = await send()
            assert status == 200 and all(o["error_code"] is None for o in body["offsets"])
            group = uid("kout")
            await post(
                session,
                f"{url}/consumers/{group}",
                {"name": "k", "fetch.min.bytes": 1, "auto.offset.reset": "earliest"},
            )
            inst = f"{url}/consumers/{group}/instances/k"
            await post(
                session,
                f"{inst}/assignments",
                {"partitions": [{"topic": "outage", "partition": 0}]},
            )

            private_kafka.pause()
            started = time.monotonic()
            status, body = await send()
            produce_s = time.monotonic() - started
            assert status == 200
            assert [o["error_code"] for o in body["offsets"]] == [50003, 50003], (body, produce_s)
            assert produce_s < 10, produce_s
            started = time.monotonic()
            async with session.get(
                f"{inst}/records",
                headers={"Accept": BINARY},
                timeout=aiohttp.ClientTimeout(total=60),
            ) as resp:
                read_status = resp.status
                await resp.read()
            read_s = time.monotonic() - started
            assert read_status in (200, 503) and read_s < 10, (read_status, read_s)
            started = time.monotonic()
            async with session.get(
                f"{url}/topics", timeout=aiohttp.ClientTimeout(total=60)
            ) as resp:
                assert resp.status == 503
            assert time.monotonic() - started < 10
            async with session.get(f"{url}/healthz") as resp:
                assert resp.status == 200  # the process is up and serving
            async with session.get(f"{url}/readyz") as resp:
                # ... but not ready: a load balancer should send produce traffic elsewhere.
                ready = await resp.json()
                assert resp.status == 503 and ready["checks"]["kafka"]["ok"] is False, ready

            private_kafka.resume()
            recovered = None
            for _ in range(60):
                status, body = await send()
                if status == 200 and all(o["error_code"] is None for o in body["offsets"]):
                    recovered = time.monotonic() - started
                    break
                await asyncio.sleep(0.5)
            assert recovered is not None, "produce did not recover after the broker came back"
            got = []
            for _ in range(20):
                async with session.get(f"{inst}/records", headers={"Accept": BINARY}) as resp:
                    if resp.status == 200:
                        got.extend(orjson.loads(await resp.read()))
                if len(got) >= 4:
                    break
            assert len(got) >= 4  # both batches before, and the one after, are readable
    finally:
        await cluster.stop()
    figures.record(
        {
            "scenario": "Kafka paused (hung broker)",
            "produced": 2,
            "delivered": "-",
            "duplicates": "-",
            "lost": 0,
            "recovery_s": round(recovered, 2),
            "statuses": {"produce_wait_s": round(produce_s, 2), "read_wait_s": round(read_s, 2)},
        }
    )
