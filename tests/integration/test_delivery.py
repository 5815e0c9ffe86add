"""Delivered means written, and positions follow seeks: one replica, real Kafka.

A record counts as delivered (positions, auto-commit, the empty-body commit, the drain) only
once its response was written to the client. Records are produced with an independent
aiokafka producer and committed offsets read with an independent admin client, so the gateway
is never its own witness. The cross-replica halves (seek then drain, disconnect through a
forwarding replica) are in tests/cluster/test_positions.py.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from gateway.context import SESSIONS
from tests.support.kafka import committed_offsets
from tests.support.v2 import BINARY, V2

pytestmark = pytest.mark.asyncio


def group_name() -> str:
    return "g-" + uuid.uuid4().hex[:10]


async def produce(producer, topic: str, values: list[bytes]) -> None:
    for value in values:
        await producer.send_and_wait(topic, value, partition=0)


async def test_client_gone_mid_poll_loses_nothing(
    make_gateway, new_topic, producer, kafka_bootstrap
):
    """The client gives up on a long poll; records that arrived during it are not lost, not
    committed by the empty-body commit, and the next read returns every one of them."""
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    # The read waits its full 4 s (fetch.min.bytes -1) and collects what arrives meanwhile.
    status, _ = await api.create(
        group, name="c", **{"auto.offset.reset": "earliest", "consumer.request.timeout.ms": 4000}
    )
    assert status == 200
    assert await api.subscribe(group, "c", [topic]) == 204
    assert (await api.records(group, "c", timeout=1500))[0] == 200  # joined the group

    url = str(gateway.make_url(api.inst(group, "c") + "/records"))
    async with aiohttp.ClientSession() as client:
        poll = asyncio.create_task(
            client.get(url, headers={"Accept": BINARY}, timeout=aiohttp.ClientTimeout(total=1.0))
        )
        await asyncio.sleep(0.3)
        await produce(producer, topic, [b"a", b"b", b"c"])
        with pytest.raises(asyncio.TimeoutError):
            await poll  # the client hangs up while the gateway still collects
    await asyncio.sleep(4.0)  # the gateway's poll ends and tries to write to nobody

    status, body, _ = await api.call("POST", api.inst(group, "c") + "/offsets")
    assert (status, body) == (200, [])
    assert committed_offsets_for(await committed_offsets(kafka_bootstrap, group), topic) in (
        None,
        0,
    )  # nothing was delivered, so nothing was committed

    got = await api.drain(group, "c", 3, timeout=1000)
    assert [r["value"] for r in got] == ["YQ==", "Yg==", "Yw=="]
    assert [r["offset"] for r in got] == [0, 1, 2]
    status, body, _ = await api.call("POST", api.inst(group, "c") + "/offsets")
    assert status == 200
    assert committed_offsets_for(await committed_offsets(kafka_bootstrap, group), topic) == 3


def committed_offsets_for(offsets: dict[tuple[str, int], int], topic: str) -> int | None:
    return offsets.get((topic, 0))


@pytest.mark.parametrize("where", ["back", "forward", "beginning", "end", "timestamp"])
async def test_seek_moves_what_commits_and_reads_see(
    make_gateway, new_topic, producer, kafka_bootstrap, where
):
    """After a seek, the empty-body commit commits the seek target (where the client will
    resume), and the next read starts exactly there."""
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    await produce(producer, topic, [str(i).encode() for i in range(10)])
    status, _ = await api.create(
        group,
        name="c",
        **{"auto.offset.reset": "earliest", "auto.commit.enable": "false", "fetch.min.bytes": 1},
    )
    assert status == 200
    assert await api.subscribe(group, "c", [topic]) == 204
    got: list[dict] = []
    while len(got) < 5:
        status, body, _ = await api.records(group, "c", max_bytes=3)
        assert status == 200
        got.extend(body)
    assert [r["offset"] for r in got][:5] == [0, 1, 2, 3, 4]
    delivered = got[-1]["offset"] + 1

    inst = api.inst(group, "c")
    part = [{"topic": topic, "partition": 0}]
    if where == "back":
        target = 1
        status, _, _ = await api.call(
            "POST", inst + "/positions", {"offsets": [{**part[0], "offset": target}]}
        )
    elif where == "forward":
        target = 8
        status, _, _ = await api.call(
            "POST", inst + "/positions", {"offsets": [{**part[0], "offset": target}]}
        )
    elif where == "beginning":
        target = 0
        status, _, _ = await api.call("POST", inst + "/positions/beginning", {"partitions": part})
    elif where == "end":
        target = 10
        status, _, _ = await api.call("POST", inst + "/positions/end", {"partitions": part})
    else:
        target = 10  # a timestamp after every record: the end, where the next one lands
        status, _, _ = await api.call(
            "POST",
            inst + "/positions",
            {"timestamps": [{**part[0], "timestamp": "2999-01-01T00:00:00Z"}]},
        )
    assert status == 204
    assert target != delivered  # the test must be able to tell the two apart

    status, body, _ = await api.call("POST", inst + "/offsets")
    assert (status, body) == (200, [])
    assert committed_offsets_for(await committed_offsets(kafka_bootstrap, group), topic) == target

    if target < 10:
        status, body, _ = await api.records(group, "c")
        assert status == 200 and body and body[0]["offset"] == target


async def test_subscription_then_assignment_on_one_instance(make_gateway, new_topic, producer):
    """Unsubscribe, then assign, then read: the instance reads its assignment (aiokafka's
    group coordinator must not keep acting for the old subscription: that answered 500)."""
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=2)
    group = group_name()
    await produce(producer, topic, [b"x", b"y"])
    status, _ = await api.create(group, name="c", **{"auto.offset.reset": "earliest"})
    assert status == 200
    inst = api.inst(group, "c")
    assert await api.subscribe(group, "c", [topic]) == 204
    status, _, _ = await api.call("DELETE", inst + "/subscription")
    assert status == 204
    status, body, _ = await api.call(
        "POST", inst + "/assignments", {"partitions": [{"topic": topic, "partition": 0}]}
    )
    assert status == 204, body
    status, body, _ = await api.call(
        "POST",
        inst + "/positions/beginning",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 204, body
    got: list[dict] = []
    for _ in range(5):
        status, body, _ = await api.records(group, "c", timeout=500)
        assert status == 200, body
        got += body
        if len(got) >= 2:
            break
    assert [r["value"] for r in got] == ["eA==", "eQ=="]
    # And back: a new subscription after the assignment works too.
    status, _, _ = await api.call("DELETE", inst + "/subscription")
    assert status == 204
    assert await api.subscribe(group, "c", [topic]) == 204
    status, body, _ = await api.records(group, "c", timeout=500)
    assert status == 200, body


async def test_a_record_too_deep_to_answer_is_skipped_once(make_gateway, new_topic, producer):
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    await produce(producer, topic, [b"[" * 300 + b"]" * 300, b'{"ok":1}'])
    status, _ = await api.create(
        group, name="c", format="json", **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1}
    )
    assert status == 200
    assert await api.subscribe(group, "c", [topic]) == 204
    answers = []
    for _ in range(10):
        status, body, _ = await api.records(
            group, "c", accept="application/vnd.kafka.json.v2+json", timeout=1000
        )
        answers.append((status, body if status != 200 else [r["value"] for r in body]))
        if status == 200 and body:
            break
    statuses = [s for s, _ in answers]
    assert 500 not in statuses, answers
    assert (408, 40801) in [(s, b["error_code"]) for s, b in answers if s == 408], answers
    assert answers[-1] == (200, [{"ok": 1}]), answers


async def test_topic_pattern_matches_whole_topic_names(make_gateway, new_topic, producer):
    """As Java's consumer (Pattern.matches), not a prefix match as Python's re.match."""
    gateway = await make_gateway()
    api = V2(gateway)
    base = "pat-" + uuid.uuid4().hex[:8]
    exact = await new_topic(1, base)
    longer = await new_topic(1, base + "-more")
    await produce(producer, exact, [b"exact"])
    await produce(producer, longer, [b"longer"])
    group = group_name()
    status, _ = await api.create(
        group, name="c", **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1}
    )
    assert status == 200
    status, _, _ = await api.call(
        "POST", api.inst(group, "c") + "/subscription", {"topic_pattern": base}
    )
    assert status == 204
    got: list[dict] = []
    for _ in range(6):
        status, body, _ = await api.records(group, "c", timeout=1000)
        assert status == 200, body
        got += body
    assert {r["topic"] for r in got} == {exact}


async def test_base_uri_is_a_usable_uri_for_any_name(make_gateway):
    """Names are percent-encoded in ``base_uri``, and the URI works as given."""
    gateway = await make_gateway()
    api = V2(gateway)
    group = "grp ü~" + uuid.uuid4().hex[:6]
    status, body = await api.create(group, name="name with spaces")
    assert status == 200
    uri = body["base_uri"]
    assert " " not in uri and "ü" not in uri and uri.endswith("/instances/name%20with%20spaces")
    async with aiohttp.ClientSession() as http:
        path = uri.split("/", 3)[3]
        async with http.get(
            gateway.make_url("/" + path + "/subscription").with_path(
                "/" + path + "/subscription", encoded=True
            )
        ) as resp:
            assert resp.status == 200, await resp.text()


async def test_a_dead_kafka_fetcher_is_rebuilt_not_silent(make_gateway, new_topic, producer):
    """aiokafka's fetch task can die on an internal race, after which its reads would return
    nothing forever; the instance notices and rebuilds its consumer where it was."""
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    await produce(producer, topic, [b"a", b"b"])
    status, _ = await api.create(
        group,
        name="c",
        **{"auto.offset.reset": "earliest", "fetch.min.bytes": 1, "auto.commit.enable": "false"},
    )
    assert status == 200
    assert await api.subscribe(group, "c", [topic]) == 204
    got = await api.drain(group, "c", 2, timeout=1000)
    assert [r["offset"] for r in got] == [0, 1]

    inst = gateway.server.app[SESSIONS].local.find(group, "c")
    fetch_task = inst._consumer._fetcher._fetch_task  # what aiokafka's race leaves behind
    fetch_task.cancel()
    await asyncio.sleep(0.1)
    assert fetch_task.done()
    await produce(producer, topic, [b"c", b"d"])

    got = await api.drain(group, "c", 2, timeout=1000)
    assert [r["offset"] for r in got] == [2, 3]  # resumed exactly: nothing lost or repeated
    assert inst._consumer._fetcher._fetch_task is not fetch_task
