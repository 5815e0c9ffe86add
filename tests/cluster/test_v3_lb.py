"""Issue 13's "Done when": API v3 on real Kafka through HAProxy in front of three replicas.

Every v3 request goes to the load balancer, which hands consecutive requests to different
replicas (round robin, no stickiness); HAProxy's own per-server request counters say which
replica answered each one, so "any replica serves any request" is shown, not assumed. Every
outcome is judged by independent aiokafka clients that share no code with the gateway: the
topic and its configs as the broker describes them, committed offsets and log ends for lags,
the produced records read back byte for byte, the ACLs as a raw DescribeAcls lists them.

Requests carry a Host that is neither the load balancer nor a replica: every ``self`` /
``related`` link (and ``Location``) must still name the load balancer, so the check fails if
a replica built links from the Host header or from its own listener instead of
``advertised.listeners`` (which the harness sets to the load balancer).

One cluster serves the whole module (a start costs seconds on a 2-core machine); the ACL
test brings its own broker (with Kafka's StandardAuthorizer) and its own three replicas.
"""

from __future__ import annotations

import asyncio
import base64
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.group import MemberAssignment
from multidict import CIMultiDict

from tests.harness.api import NewTopicFn, ReadBackFn
from tests.harness.cluster import GatewayCluster
from tests.harness.kafka_acl import AclKafkaServer, AclTuple, describe_acls
from tests.harness.topics import unique_topic_name, wait_topic_ready
from tests.support.v2 import V2

pytestmark = pytest.mark.asyncio

# As tests/cluster/conftest.py's DEFAULT_PROPS: a replica that hits a Kafka problem should
# fail in seconds, and teardown should not wait the product's readiness delay.
PROPS = {
    "kafka.timeout.ms": "5000",
    "producer.max.block.ms": "3000",
    "shutdown.readiness.delay.ms": "1200",
    "workers": "1",
}
# Sent as the Host of every v3 request: a name no link may contain.
FOREIGN_HOST = "replica-internal.invalid:9999"
JSON = "application/json"
TOPIC_SOURCE, DEFAULT_SOURCE = 1, 5  # Kafka's DescribeConfigs source ids
WEEK_MS = "604800000"  # Kafka's retention.ms default


# --- the module's cluster ----------------------------------------------------------------------


def _run(cluster_call: Awaitable[None]) -> None:
    """Drive the harness's async start/stop on a loop of its own, so the cluster can outlive
    any one test's loop (its state is processes and ports, nothing bound to a loop)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(cluster_call)
    finally:
        loop.close()


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest, kafka_bootstrap: str, redis_url: str
) -> Iterator[GatewayCluster]:
    """Three replicas behind HAProxy on the session's broker and Redis, for the module."""
    failed_before = request.session.testsfailed
    c = GatewayCluster(3, bootstrap_servers=kafka_bootstrap, redis_url=redis_url, props=PROPS)
    try:
        _run(c.start())
        yield c
    finally:
        if request.session.testsfailed > failed_before:
            print(c.logs(80), file=sys.stderr)
        _run(c.stop())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


@pytest.fixture
async def cid(kafka_admin: AIOKafkaAdminClient) -> str:
    return str((await kafka_admin.describe_cluster())["cluster_id"])


# --- a v3 client that knows which replica answered ---------------------------------------------


def links_in(value: Any) -> list[str]:
    """Every ``self``, ``related`` and ``next`` URL anywhere in a v3 body."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("self", "related", "next") and isinstance(item, str):
                found.append(item)
            else:
                found.extend(links_in(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(links_in(item))
    return found


@dataclass
class Answer:
    status: int
    body: Any
    headers: CIMultiDict[str]
    replica: int  # which replica HAProxy gave the request to


class Lb:
    """v3 calls through the load balancer; each answer's links are collected and the replica
    that served it is read off HAProxy's per-server request counters."""

    def __init__(self, http: aiohttp.ClientSession, cluster: GatewayCluster) -> None:
        self.http = http
        self.cluster = cluster
        self.links: list[str] = []
        self.replicas: list[int] = []

    async def _counts(self) -> dict[int, int]:
        return {i: int(row["req_tot"] or 0) for i, row in (await self.cluster.lb_stats()).items()}

    async def __call__(self, method: str, path: str, body: Any = None) -> Answer:
        headers = {"Host": FOREIGN_HOST}
        data = None
        if body is not None:
            headers["Content-Type"] = JSON
            data = orjson.dumps(body)
        before = await self._counts()
        async with self.http.request(
            method, self.cluster.lb_url + path, data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            answer_headers = CIMultiDict(resp.headers)
            status = resp.status
        after = await self._counts()
        served = [i for i in after if after[i] > before.get(i, 0)]
        assert len(served) == 1, f"{method} {path}: HAProxy counters moved for {served}"
        parsed = orjson.loads(raw) if raw else None
        self.links.extend(links_in(parsed))
        if "Location" in answer_headers:
            self.links.append(answer_headers["Location"])
        self.replicas.append(served[0])
        return Answer(status, parsed, answer_headers, served[0])

    async def on_every_replica(self, path: str) -> list[Answer]:
        """The same GET three times in a row: round robin gives it to each replica once."""
        answers = [await self("GET", path) for _ in range(self.cluster.n)]
        assert sorted(a.replica for a in answers) == list(range(self.cluster.n)), answers
        return answers

    def assert_links_name_the_lb(self, cid: str) -> None:
        assert self.links, "no links seen"
        clusters = f"{self.cluster.lb_url}/v3/clusters"
        prefix = f"{clusters}/{cid}"
        wrong = [
            link
            for link in self.links
            if link not in (clusters, prefix) and not link.startswith(prefix + "/")
        ]
        assert not wrong, f"links not under {prefix}: {wrong[:5]}"


@pytest.fixture
async def lb(http: aiohttp.ClientSession, cluster: GatewayCluster) -> Lb:
    return Lb(http, cluster)


async def until(
    check: Callable[[], Awaitable[bool]],
    what: str,
    timeout: float = 20.0,  # noqa: ASYNC109 (a deadline for a whole poll loop)
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)


async def on_all_replicas(
    http: aiohttp.ClientSession, cluster: GatewayCluster, path: str, status: int
) -> bool:
    """Whether every replica, asked directly, answers ``path`` with ``status`` (for polling
    until a change Kafka applied a moment later shows everywhere)."""
    for url in cluster.urls:
        async with http.get(url + path) as resp:
            await resp.read()
            if resp.status != status:
                return False
    return True


# --- 1. topic round trips -----------------------------------------------------------------------


async def kafka_configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, tuple[str, int]]:
    """The topic's configs as the broker describes them: name -> (value, source id)."""
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [resource] = response.to_object()["resources"]
    assert resource["error_code"] == 0, resource
    return {
        e["config_names"]: (e["config_value"], e["config_source"])
        for e in resource["config_entries"]
    }


async def until_configs(
    admin: AIOKafkaAdminClient, topic: str, expected: dict[str, tuple[str, int]]
) -> dict[str, tuple[str, int]]:
    """Poll the broker until it shows every expected (value, source)."""
    seen: dict[str, tuple[str, int]] = {}

    async def shows() -> bool:
        nonlocal seen
        seen = await kafka_configs(admin, topic)
        return all(seen.get(k) == v for k, v in expected.items())

    try:
        await until(shows, f"Kafka shows {expected} for {topic}")
    except AssertionError:
        raise AssertionError(f"Kafka shows { ({k: seen.get(k) for k in expected}) }") from None
    return seen


async def kafka_user_topics(admin: AIOKafkaAdminClient) -> set[str]:
    return {
        t["topic"]
        for t in await admin.describe_topics()
        if not t["is_internal"] and t["error_code"] == 0
    }


def expected_topic(lb_url: str, cid: str, name: str, count: int) -> dict[str, Any]:
    url = f"{lb_url}/v3/clusters/{cid}/topics/{name}"
    return {
        "kind": "KafkaTopic",
        "metadata": {"self": url, "resource_name": f"crn:///kafka={cid}/topic={name}"},
        "cluster_id": cid,
        "topic_name": name,
        "is_internal": False,
        "replication_factor": 1,
        "partitions_count": count,
        "partitions": {"related": f"{url}/partitions"},
        "configs": {"related": f"{url}/configs"},
        "partition_reassignments": {"related": f"{url}/partitions/-/reassignment"},
        "authorized_operations": [],
    }


@pytest.mark.timeout(120)
async def test_topic_round_trips_through_three_replicas(
    lb: Lb,
    cluster: GatewayCluster,
    http: aiohttp.ClientSession,
    cid: str,
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    topics = f"/v3/clusters/{cid}/topics"
    name = unique_topic_name("v3lb-")
    path = f"{topics}/{name}"
    configs = f"{path}/configs"
    try:
        # Create: 2 partitions, RF 1, two configs. The answer and Kafka agree.
        created = await lb(
            "POST",
            topics,
            {
                "topic_name": name,
                "partitions_count": 2,
                "replication_factor": 1,
                "configs": [
                    {"name": "cleanup.policy", "value": "compact"},
                    {"name": "retention.ms", "value": "3600000"},
                ],
            },
        )
        assert created.status == 201, created.body
        assert created.body == expected_topic(cluster.lb_url, cid, name, 2)
        assert created.headers["Location"] == created.body["metadata"]["self"]
        meta = await wait_topic_ready(kafka_admin, name, 2)
        assert [len(p["replicas"]) for p in meta["partitions"]] == [1, 1]
        await until_configs(
            kafka_admin,
            name,
            {
                "cleanup.policy": ("compact", TOPIC_SOURCE),
                "retention.ms": ("3600000", TOPIC_SOURCE),
            },
        )

        # Get: every replica describes it the same way (not only the one that created it).
        await until(lambda: on_all_replicas(http, cluster, path, 200), "every replica serves it")
        for got in await lb.on_every_replica(path):
            assert (got.status, got.body) == (200, expected_topic(cluster.lb_url, cid, name, 2))

        # List: sorted, no internal topics, ours as GET shows it, everything Kafka lists.
        kafka_before = await kafka_user_topics(kafka_admin)
        listed = await lb("GET", topics)
        kafka_after = await kafka_user_topics(kafka_admin)
        assert listed.status == 200
        assert listed.body["metadata"] == {"self": f"{cluster.lb_url}{topics}", "next": None}
        names = [t["topic_name"] for t in listed.body["data"]]
        assert names == sorted(names) and not [n for n in names if n.startswith("__")]
        assert [t for t in listed.body["data"] if t["topic_name"] == name] == [
            expected_topic(cluster.lb_url, cid, name, 2)
        ]
        # Every user topic Kafka had both before and after the list call is in it.
        assert name in kafka_before & kafka_after
        assert kafka_before & kafka_after <= set(names)

        # Configs as the gateway reads them: the broker's values and sources.
        got = await lb("GET", configs)
        assert got.status == 200
        by_name = {c["name"]: c for c in got.body["data"]}
        assert set(by_name) == set(await kafka_configs(kafka_admin, name))
        assert (by_name["cleanup.policy"]["value"], by_name["cleanup.policy"]["source"]) == (
            "compact",
            "DYNAMIC_TOPIC_CONFIG",
        )

        # PATCH: 2 -> 4 partitions.
        grown = await lb("PATCH", path, {"partitions_count": 4})
        assert (grown.status, grown.body) == (200, expected_topic(cluster.lb_url, cid, name, 4))
        await wait_topic_ready(kafka_admin, name, 4)
        parts = await lb("GET", f"{path}/partitions")
        assert parts.status == 200
        assert [p["partition_id"] for p in parts.body["data"]] == [0, 1, 2, 3]

        # PUT one config: it changes, the other override stays (incremental).
        put = await lb("PUT", f"{configs}/retention.ms", {"value": "7200000"})
        assert (put.status, put.body) == (204, None)
        await until_configs(
            kafka_admin,
            name,
            {
                "retention.ms": ("7200000", TOPIC_SOURCE),
                "cleanup.policy": ("compact", TOPIC_SOURCE),
            },
        )
        for one in await lb.on_every_replica(f"{configs}/retention.ms"):
            assert one.status == 200
            assert (one.body["value"], one.body["source"]) == ("7200000", "DYNAMIC_TOPIC_CONFIG")
            assert one.body["metadata"]["self"] == f"{cluster.lb_url}{configs}/retention.ms"

        # DELETE one config: back to the broker's default.
        reset = await lb("DELETE", f"{configs}/cleanup.policy")
        assert (reset.status, reset.body) == (204, None)
        await until_configs(
            kafka_admin,
            name,
            {
                "cleanup.policy": ("delete", DEFAULT_SOURCE),
                "retention.ms": ("7200000", TOPIC_SOURCE),
            },
        )

        # :alter: a SET and a DELETE applied together.
        altered = await lb(
            "POST",
            f"{configs}:alter",
            {
                "data": [
                    {"name": "segment.ms", "value": "600000"},
                    {"name": "retention.ms", "operation": "DELETE"},
                ]
            },
        )
        assert (altered.status, altered.body) == (204, None)
        await until_configs(
            kafka_admin,
            name,
            {
                "segment.ms": ("600000", TOPIC_SOURCE),
                "retention.ms": (WEEK_MS, DEFAULT_SOURCE),
                "cleanup.policy": ("delete", DEFAULT_SOURCE),
            },
        )
        got = await lb("GET", configs)
        shown = {c["name"]: (c["value"], c["source"]) for c in got.body["data"]}
        assert shown["segment.ms"] == ("600000", "DYNAMIC_TOPIC_CONFIG")
        assert shown["retention.ms"] == (WEEK_MS, "DEFAULT_CONFIG")

        # Delete: Kafka drops it, and then every replica says 404/40403.
        deleted = await lb("DELETE", path)
        assert (deleted.status, deleted.body) == (204, None)

        async def absent() -> bool:
            return name not in await kafka_admin.list_topics()

        await until(absent, "Kafka no longer lists the topic")
        await until(lambda: on_all_replicas(http, cluster, path, 404), "every replica says 404")
        unknown = {
            "error_code": 40403,
            "message": "This server does not host this topic-partition.",
        }
        for gone in await lb.on_every_replica(path):
            assert (gone.status, gone.body) == (404, unknown)
    finally:
        if name in await kafka_admin.list_topics():
            await kafka_admin.delete_topics([name])

    # Every replica answered some of it, and no link named anything but the load balancer.
    assert set(lb.replicas) == {0, 1, 2}
    lb.assert_links_name_the_lb(cid)


# --- 2. lags while a v2 instance consumes --------------------------------------------------------


async def independent_lags(
    kafka_bootstrap: str, admin: AIOKafkaAdminClient, group: str
) -> dict[tuple[str, int], tuple[int, int]]:
    """(committed offset, read-committed log end) per partition with a committed offset."""
    committed = {
        (tp.topic, tp.partition): om.offset
        for tp, om in (await admin.list_consumer_group_offsets(group)).items()
        if om.offset >= 0
    }
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(t, p) for t, p in committed])
    finally:
        await consumer.stop()
    return {tp: (off, ends[TopicPartition(*tp)]) for tp, off in committed.items()}


async def independent_member(admin: AIOKafkaAdminClient, group: str) -> tuple[str, str, Any]:
    """(member id, client id, sorted assignment) of the group's only member, per Kafka."""
    [response] = await admin.describe_consumer_groups([group])
    [described] = response.to_object()["groups"]
    [member] = described["members"]
    decoded = MemberAssignment.decode(member["member_assignment"])
    parts = sorted((t, p) for t, ps in decoded.assignment for p in ps)
    return member["member_id"], member["client_id"], parts


def expected_lags(
    lags: dict[tuple[str, int], tuple[int, int]], member: str, client: str
) -> list[dict[str, Any]]:
    rows = [
        {
            "topic_name": t,
            "partition_id": p,
            "consumer_id": member,
            "instance_id": None,
            "client_id": client,
            "current_offset": committed,
            "log_end_offset": end,
            "lag": max(0, end - committed),
        }
        for (t, p), (committed, end) in lags.items()
    ]
    return sorted(rows, key=lambda r: (-r["lag"], r["topic_name"], r["partition_id"]))


def lag_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    keep = (
        *("topic_name", "partition_id", "consumer_id", "instance_id", "client_id"),
        *("current_offset", "log_end_offset", "lag"),
    )
    return [{k: row[k] for k in keep} for row in body["data"]]


@pytest.mark.timeout(120)
async def test_lags_while_a_v2_instance_consumes(
    lb: Lb,
    cluster: GatewayCluster,
    http: aiohttp.ClientSession,
    cid: str,
    new_topic: NewTopicFn,
    producer: AIOKafkaProducer,
    kafka_admin: AIOKafkaAdminClient,
    kafka_bootstrap: str,
) -> None:
    topic = await new_topic(partitions=2)
    for i in range(6):
        await producer.send_and_wait(topic, b"a%d" % i, partition=0)
    for i in range(4):
        await producer.send_and_wait(topic, b"b%d" % i, partition=1)
    group = "v3lb-" + uuid.uuid4().hex[:10]
    groups = f"/v3/clusters/{cid}/consumer-groups/{group}"
    base = f"{cluster.lb_url}/v3/clusters/{cid}"

    # The v2 instance lives on whichever replica the LB picked; the rest is forwarded to it.
    api = V2(http, prefix=cluster.lb_url)
    status, created = await api.create(
        group,
        name="c1",
        format="binary",
        **{"auto.commit.enable": "false", "auto.offset.reset": "earliest"},
    )
    assert status == 200, created
    assert created["base_uri"] == f"{cluster.lb_url}/consumers/{group}/instances/c1"
    try:
        assert await api.subscribe(group, "c1", [topic]) == 204
        assert len(await api.drain(group, "c1", 10)) == 10

        async def commit(offsets: dict[int, int]) -> None:
            body = {
                "offsets": [
                    {"topic": topic, "partition": p, "offset": o} for p, o in offsets.items()
                ]
            }
            status, answer, _ = await api.call("POST", api.inst(group, "c1") + "/offsets", body)
            assert (status, answer) == (200, [])

        await commit({0: 1, 1: 0})  # committed positions: 2 of 6 and 1 of 4

        # The group and its member, as every replica shows them and as Kafka knows them.
        member, client, assigned = await independent_member(kafka_admin, group)
        assert assigned == [(topic, 0), (topic, 1)]
        member_url = f"{base}/consumer-groups/{group}/consumers/{member}"
        for got in await lb.on_every_replica(groups):
            assert got.status == 200, got.body
            assert (got.body["consumer_group_id"], got.body["state"]) == (group, "STABLE")
            assert got.body["consumers"] == {"related": f"{base}/consumer-groups/{group}/consumers"}
        for got in await lb.on_every_replica(f"{groups}/consumers"):
            assert got.status == 200, got.body
            assert [(c["consumer_id"], c["client_id"]) for c in got.body["data"]] == [
                (member, client)
            ]
            assert got.body["data"][0]["metadata"]["self"] == member_url
        listed = await lb("GET", f"/v3/clusters/{cid}/consumer-groups")
        assert group in [g["consumer_group_id"] for g in listed.body["data"]]

        async def check_lags(expected: dict[tuple[str, int], tuple[int, int]]) -> None:
            lags = await independent_lags(kafka_bootstrap, kafka_admin, group)
            assert lags == expected
            rows = expected_lags(lags, member, client)
            for got in await lb.on_every_replica(f"{groups}/lags"):
                assert got.status == 200, got.body
                assert lag_rows(got.body) == rows
            top = rows[0]
            for got in await lb.on_every_replica(f"{groups}/lag-summary"):
                assert got.status == 200, got.body
                summary = got.body
                assert summary["kind"] == "KafkaConsumerGroupLagSummary"
                assert summary["metadata"]["self"] == f"{base}/consumer-groups/{group}/lag-summary"
                assert summary["total_lag"] == sum(r["lag"] for r in rows)
                assert summary["max_lag"] == top["lag"]
                assert (summary["max_lag_topic_name"], summary["max_lag_partition_id"]) == (
                    top["topic_name"],
                    top["partition_id"],
                )
                assert (summary["max_lag_consumer_id"], summary["max_lag_client_id"]) == (
                    member,
                    client,
                )
                assert summary["max_lag_consumer"] == {"related": member_url}

        await check_lags({(topic, 0): (2, 6), (topic, 1): (1, 4)})

        # More arrives on partition 1, the instance reads and commits further: the order flips.
        for i in range(3):
            await producer.send_and_wait(topic, b"c%d" % i, partition=1)
        assert len(await api.drain(group, "c1", 3)) == 3
        await commit({0: 5, 1: 4})
        await check_lags({(topic, 0): (6, 6), (topic, 1): (5, 7)})
    finally:
        deleted = await api.delete(group, "c1")  # forwarded to the owner like the rest
    assert deleted == 204

    assert set(lb.replicas) == {0, 1, 2}
    lb.assert_links_name_the_lb(cid)


# --- 3. a 100,000-record stream on one connection ------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def java_instant(millis: int) -> str:
    """Java's Instant.toString() of epoch ms, written independently of the gateway."""
    moment = datetime.fromtimestamp(millis / 1000, UTC).replace(microsecond=0)
    text = moment.isoformat().removesuffix("+00:00")
    return f"{text}.{millis % 1000:03d}Z" if millis % 1000 else f"{text}Z"


def stream_record(i: int, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record ``i`` as sent, and what Kafka must hold for it."""
    kind = i % 4
    if kind == 0:  # STRING key, BINARY value, two headers (one null), ISO timestamp
        value = rng.randbytes(rng.randrange(0, 48))
        ms = 1_700_000_000_000 + i * 7
        stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
        return {
            "key": {"type": "STRING", "data": f"k{i % 101}"},
            "value": {"type": "BINARY", "data": b64(value)},
            "headers": [
                {"name": "seq", "value": b64(i.to_bytes(4, "big"))},
                {"name": "none", "value": None},
            ],
            "timestamp": stamp.replace("+00:00", "Z"),
        }, {
            "key": f"k{i % 101}".encode(),
            "value": value,
            "headers": (("seq", i.to_bytes(4, "big")), ("none", None)),
            "ts": ms,
            "partition": None,
        }
    if kind == 1:  # explicit partition, JSON value, a whole-second timestamp
        ms = 1_600_000_000_000 + i * 1000
        stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
        data = {"i": i, "s": "é✓"}
        return {
            "partition_id": i % 3,
            "value": {"type": "JSON", "data": data},
            "timestamp": stamp,
        }, {"key": None, "value": orjson.dumps(data), "headers": (), "ts": ms, "partition": i % 3}
    if kind == 2:  # keyless STRING, a non-ASCII header, no timestamp: the gateway's clock
        text = f"värde {i} 🙂"
        return {
            "value": {"type": "STRING", "data": text},
            "headers": [{"name": "ñame", "value": b64(b"\x00\xff")}],
        }, {
            "key": None,
            "value": text.encode(),
            "headers": (("ñame", b"\x00\xff"),),
            "ts": None,
            "partition": None,
        }
    key = rng.randbytes(8)  # BINARY key, tombstone value
    return {"key": {"type": "BINARY", "data": b64(key)}, "value": {"type": "JSON"}}, {
        "key": key,
        "value": None,
        "headers": (),
        "ts": None,
        "partition": None,
    }


@pytest.mark.timeout(300)
async def test_stream_of_100k_records_on_one_connection_round_trips_byte_exact(
    cluster: GatewayCluster, cid: str, new_topic: NewTopicFn, read_back: ReadBackFn
) -> None:
    n = 100_000
    topic = await new_topic(partitions=3)
    rng = random.Random(13)
    sent, wants = zip(*(stream_record(i, rng) for i in range(n)), strict=True)
    # Concatenated objects, a newline after some; chunks cut objects (and characters) anywhere.
    body = b"".join(orjson.dumps(o) + (b"\n" if i % 2 else b"") for i, o in enumerate(sent))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 40_009):
            yield body[start : start + 40_009]

    # One request, one connection: a chunked body (no Content-Length) through HAProxy.
    url = f"{cluster.lb_url}/v3/clusters/{cid}/topics/{topic}/records"
    connector = aiohttp.TCPConnector(limit=1)
    before = await cluster.lb_stats()
    started = time.time_ns() // 1_000_000
    async with (
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=240)) as s,
        s.post(url, data=chunks(), headers={"Content-Type": JSON, "Host": FOREIGN_HOST}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.content_type == JSON
        lines = [line async for line in resp.content]
    finished = time.time_ns() // 1_000_000
    after = await cluster.lb_stats()
    # HAProxy passed on one request (to one replica), not one per chunk or record.
    moved = {i: int(after[i]["req_tot"]) - int(before[i]["req_tot"]) for i in after}
    assert sorted(moved.values()) == [0, 0, 1], moved
    assert all(line.endswith(b"\r\n") for line in lines)
    results = [orjson.loads(line) for line in lines]
    assert len(results) == n

    stored = await read_back(topic, n, timeout=90)
    assert len(stored) == n
    at = {(r.partition, r.offset): r for r in stored}
    last_offset: dict[int, int] = {}
    for i, (result, want) in enumerate(zip(results, wants, strict=True)):
        assert result["error_code"] == 200, (i, result)
        assert (result["cluster_id"], result["topic_name"]) == (cid, topic), (i, result)
        record = at.pop((result["partition_id"], result["offset"]))  # each slot once
        assert (record.key, record.value) == (want["key"], want["value"]), i
        assert tuple(record.headers) == want["headers"], i
        if want["ts"] is not None:
            assert record.timestamp == want["ts"], i
        else:
            assert started <= record.timestamp <= finished, i
        assert result["timestamp"] == java_instant(record.timestamp), i
        if want["partition"] is not None:
            assert record.partition == want["partition"], i
        # Within a partition, results (and records) keep input order.
        assert record.offset > last_offset.get(record.partition, -1), i
        last_offset[record.partition] = record.offset
        for side in ("key", "value"):
            if side in sent[i]:  # a side's type and size, only for a side that was sent
                size = -1 if want[side] is None else len(want[side])
                assert result[side] == {"type": sent[i][side]["type"], "size": size}, (i, side)
            else:
                assert side not in result, (i, side)
    assert not at  # nothing in Kafka that no result names


# --- 4. records:batch with good and bad entries ---------------------------------------------------


@pytest.mark.timeout(60)
async def test_batch_with_good_and_bad_entries(
    lb: Lb,
    cluster: GatewayCluster,
    cid: str,
    new_topic: NewTopicFn,
    read_back: ReadBackFn,
    kafka_bootstrap: str,
) -> None:
    topic = await new_topic(partitions=2)
    path = f"/v3/clusters/{cid}/topics/{topic}/records:batch"
    entries = [
        {"id": "good-1", "value": {"type": "STRING", "data": "a"}},
        {"id": "bad-base64", "value": {"type": "BINARY", "data": 1}},
        {
            "id": "good_2",
            "partition_id": 1,
            "key": {"type": "BINARY", "data": b64(b"foo")},
            "value": {"type": "JSON", "data": {"n": 1}},
            "headers": [{"name": "h", "value": b64(b"\x01\x02")}],
            "timestamp": "2024-05-01T10:00:00.123Z",
        },
        {"id": "bad-partition", "partition_id": 9, "value": {"type": "STRING", "data": "x"}},
        {"id": "bad-string", "value": {"type": "STRING", "data": 1}},
        {"id": "3", "partition_id": 0, "key": {"type": "STRING", "data": "k"}, "value": None},
    ]
    batch = await lb("POST", path, {"entries": entries})
    assert batch.status == 207, batch.body
    assert set(batch.body) == {"successes", "failures"}
    assert [s["id"] for s in batch.body["successes"]] == ["good-1", "good_2", "3"]
    assert [(f["id"], f["error_code"]) for f in batch.body["failures"]] == [
        ("bad-base64", 400),
        ("bad-partition", 40402),
        ("bad-string", 400),
    ]
    failures = {f["id"]: f["message"] for f in batch.body["failures"]}
    assert failures["bad-base64"] == "Bad Request: data=1 is not a base64 string."
    assert failures["bad-string"] == "Bad Request: data=1 is not a string."
    for success in batch.body["successes"]:
        assert (success["cluster_id"], success["topic_name"]) == (cid, topic)
        assert "error_code" not in success

    # Kafka holds exactly the good ones, where the successes say.
    probe = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await probe.start()
    try:
        ends = await probe.end_offsets([TopicPartition(topic, p) for p in (0, 1)])
    finally:
        await probe.stop()
    assert sum(ends.values()) == 3
    stored = {(r.partition, r.offset): r for r in await read_back(topic, 3)}
    got = {s["id"]: stored[(s["partition_id"], s["offset"])] for s in batch.body["successes"]}
    assert (got["good-1"].key, got["good-1"].value) == (None, b"a")
    two = got["good_2"]
    assert (two.partition, two.key, two.value) == (1, b"foo", b'{"n":1}')
    assert (tuple(two.headers), two.timestamp) == ((("h", b"\x01\x02"),), 1714557600123)
    assert batch.body["successes"][1]["timestamp"] == "2024-05-01T10:00:00.123Z"
    assert (got["3"].partition, got["3"].key, got["3"].value) == (0, b"k", None)


# --- 5. ACLs against a broker with StandardAuthorizer -------------------------------------------


@pytest.fixture
def acl_bootstrap() -> Iterator[str]:
    """A broker with Kafka's StandardAuthorizer (about 10 s to start), for the one test."""
    server = AclKafkaServer()
    server.start()
    try:
        yield server.bootstrap
    finally:
        server.stop()


def acl(
    rtype: str, name: str, ptype: str, who: str, host: str, op: str, perm: str
) -> dict[str, str]:
    return {
        "resource_type": rtype,
        "resource_name": name,
        "pattern_type": ptype,
        "principal": who,
        "host": host,
        "operation": op,
        "permission": perm,
    }


def as_tuple(a: dict[str, str]) -> AclTuple:
    return (
        a["resource_type"],
        a["resource_name"],
        a["pattern_type"],
        a["principal"],
        a["host"],
        a["operation"],
        a["permission"],
    )


@pytest.mark.timeout(120)
async def test_acls_through_three_replicas(
    acl_bootstrap: str, redis_url: str, http: aiohttp.ClientSession
) -> None:
    acl_cluster = GatewayCluster(
        3, bootstrap_servers=acl_bootstrap, redis_url=redis_url, props=PROPS
    )
    passed = False
    try:
        await acl_cluster.start()
        lb = Lb(http, acl_cluster)
        clusters = await lb("GET", "/v3/clusters")
        assert clusters.status == 200
        cid = clusters.body["data"][0]["cluster_id"]
        base = f"/v3/clusters/{cid}/acls"
        tag = uuid.uuid4().hex[:10]
        who = f"User:lb-{tag}"
        mine = f"principal=User%3Alb-{tag}"

        async def kafka_has(expected: set[AclTuple]) -> set[AclTuple]:
            seen: set[AclTuple] = set()

            async def settled() -> bool:
                nonlocal seen
                seen = await describe_acls(acl_bootstrap, who)
                return seen == expected

            try:
                await until(settled, f"Kafka lists {expected}", timeout=15)
            except AssertionError:
                pass
            return seen

        async def listed_everywhere(count: int) -> list[Answer]:
            # Every replica reads the same ACLs from Kafka (polled: a change shows a moment late).
            async def all_show() -> bool:
                for url in acl_cluster.urls:
                    async with http.get(f"{url}{base}?{mine}") as resp:
                        if resp.status != 200 or len((await resp.json())["data"]) != count:
                            return False
                return True

            await until(all_show, f"every replica lists {count} ACLs")
            return await lb.on_every_replica(f"{base}?{mine}")

        # Create one at a time: 201, empty body, Location = the ACL's search URL on the LB.
        read = acl("TOPIC", f"orders-{tag}", "LITERAL", who, "*", "READ", "ALLOW")
        write = acl("TOPIC", f"p-{tag}-", "PREFIXED", who, "10.0.0.1", "WRITE", "DENY")
        locations = (
            f"resource_type=TOPIC&resource_name=orders-{tag}&pattern_type=LITERAL&{mine}"
            "&host=*&operation=READ&permission=ALLOW",
            f"resource_type=TOPIC&resource_name=p-{tag}-&pattern_type=PREFIXED&{mine}"
            "&host=10.0.0.1&operation=WRITE&permission=DENY",
        )
        for one, query in zip((read, write), locations, strict=True):
            made = await lb("POST", base, one)
            assert (made.status, made.body) == (201, None)
            assert made.headers["Location"] == f"{acl_cluster.lb_url}{base}?{query}"
        assert await kafka_has({as_tuple(read), as_tuple(write)}) == {
            as_tuple(read),
            as_tuple(write),
        }
        # And a batch: 204.
        group = acl("GROUP", f"g-{tag}", "LITERAL", who, "*", "DESCRIBE", "ALLOW")
        cluster_acl = acl("CLUSTER", "kafka-cluster", "LITERAL", who, "*", "ALTER_CONFIGS", "ALLOW")
        made = await lb("POST", f"{base}:batch", {"data": [group, cluster_acl]})
        assert (made.status, made.body) == (204, None)
        everything = {as_tuple(a) for a in (read, write, group, cluster_acl)}
        assert await kafka_has(everything) == everything

        # List through the LB: every replica gives the four, in Confluent's order.
        for got in await listed_everywhere(4):
            assert got.status == 200
            assert got.body["kind"] == "KafkaAclList"
            fields = [{k: e[k] for k in read} for e in got.body["data"]]
            assert fields == [read, write, group, cluster_acl]
            assert all(e["cluster_id"] == cid for e in got.body["data"])

        # Delete by filter: the TOPIC ones go, answered with what was deleted.
        gone = await lb(
            "DELETE",
            f"{base}?resource_type=TOPIC&pattern_type=ANY&operation=ANY&permission=ANY&{mine}",
        )
        assert gone.status == 200
        assert sorted(as_tuple(e) for e in gone.body["data"]) == sorted(
            [as_tuple(read), as_tuple(write)]
        )
        rest = {as_tuple(group), as_tuple(cluster_acl)}
        assert await kafka_has(rest) == rest
        # Then everything of this principal.
        gone = await lb(
            "DELETE",
            f"{base}?resource_type=ANY&pattern_type=ANY&operation=ANY&permission=ANY&{mine}",
        )
        assert gone.status == 200
        assert {as_tuple(e) for e in gone.body["data"]} == rest
        assert await kafka_has(set()) == set()
        for got in await listed_everywhere(0):
            assert got.body["data"] == []

        assert set(lb.replicas) == {0, 1, 2}
        lb.assert_links_name_the_lb(cid)
        passed = True
    finally:
        if not passed:
            print(acl_cluster.logs(80), file=sys.stderr)
        await acl_cluster.stop()
