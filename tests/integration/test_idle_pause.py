"""An idle instance stops fetching, and loses nothing by it: one replica, real Kafka.

An instance whose client has not read for ``IDLE_PAUSE_S`` pauses its partitions in aiokafka
(so a thousand idle instances do not long-poll Kafka for nobody) and resumes them when the
next read starts. These tests shorten the delay and check real outcomes: the records a paused
instance's next read returns, after a rebalance and after a seek, the offsets the group
committed (read with an independent client) and the positions a drain hands over.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import TopicPartition

import sessions.instance as instance_mod
from gateway.context import SESSIONS
from sessions.instance import ConsumerInstance
from tests.support.kafka import committed_offsets
from tests.support.v2 import V2

pytestmark = pytest.mark.asyncio

PAUSE_S = 0.3


@pytest.fixture(autouse=True)
def short_idle_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instance_mod, "IDLE_PAUSE_S", PAUSE_S)


def group_name() -> str:
    return "g-" + uuid.uuid4().hex[:10]


async def until(check: Callable[[], bool], what: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.05)


def fully_paused(inst: ConsumerInstance) -> bool:
    assigned = inst._consumer.assignment()
    return bool(assigned) and inst.fetch_paused() and inst._consumer.paused() == assigned


async def test_paused_subscribed_instance_reads_after_rebalance_seek_commit_and_drain(
    make_gateway, new_topic, producer, kafka_bootstrap
):
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=2)
    group = group_name()
    cfg = {"auto.offset.reset": "earliest", "auto.commit.enable": "false", "fetch.min.bytes": 1}
    assert (await api.create(group, name="a", **cfg))[0] == 200
    assert await api.subscribe(group, "a", [topic]) == 204
    inst = gateway.server.app[SESSIONS].local.find(group, "a")

    # A client that never read: the instance pauses once it holds its partitions.
    await until(lambda: fully_paused(inst), "a never-read instance pauses")
    assert inst._consumer.assignment() == {TopicPartition(topic, 0), TopicPartition(topic, 1)}

    for p in (0, 1):
        for i in range(3):
            await producer.send_and_wait(topic, f"{p}-{i}".encode(), partition=p)
    got = await api.drain(group, "a", 6, timeout=2000)
    assert sorted((r["partition"], r["offset"]) for r in got) == [
        (p, o) for p in (0, 1) for o in range(3)
    ]

    # Idle again: records produced meanwhile arrive with the next read, none twice.
    await until(lambda: fully_paused(inst), "idle after reads")
    await producer.send_and_wait(topic, b"late", partition=0)
    await asyncio.sleep(2 * PAUSE_S)
    status, body, _ = await api.records(group, "a", timeout=3000)
    assert status == 200
    assert [(r["partition"], r["offset"]) for r in body] == [(0, 3)]
    assert not inst.fetch_paused()  # a read resumed fetching

    # Commits and positions of a paused instance: exactly what was delivered.
    await until(lambda: fully_paused(inst), "idle before commit")
    status, _, _ = await api.call("POST", api.inst(group, "a") + "/offsets")
    assert status == 200
    committed = await committed_offsets(kafka_bootstrap, group)
    assert {k: v for k, v in committed.items() if k[0] == topic} == {(topic, 0): 4, (topic, 1): 3}

    # Seek while paused: the next read starts at the target.
    status, _, _ = await api.call(
        "POST",
        api.inst(group, "a") + "/positions",
        {"offsets": [{"topic": topic, "partition": 1, "offset": 1}]},
    )
    assert status == 204
    assert fully_paused(inst)  # a seek is not a read: still paused
    got = await api.drain(group, "a", 2, timeout=3000)
    assert [(r["partition"], r["offset"]) for r in got] == [(1, 1), (1, 2)]

    # Rebalance while idle: a second member joins; a's new assignment is paused too.
    await until(lambda: fully_paused(inst), "idle before rebalance")
    assert (await api.create(group, name="b", **cfg))[0] == 200
    assert await api.subscribe(group, "b", [topic]) == 204
    await until(
        lambda: len(inst._consumer.assignment()) == 1 and fully_paused(inst),
        "a keeps one partition, paused",
    )
    (kept,) = inst._consumer.assignment()
    before = {0: 4, 1: 3}[kept.partition]
    await producer.send_and_wait(topic, b"after-rebalance", partition=kept.partition)
    got = await api.drain(group, "a", 1, timeout=3000)
    assert [(r["partition"], r["offset"]) for r in got] == [(kept.partition, before)]

    # Drain (handover) of a paused instance saves the delivered positions.
    await until(lambda: fully_paused(inst), "idle before drain")
    handover = await inst.prepare_handover(5.0)
    assert handover.positions == {kept: before + 1}
    # The group's committed offset is still the explicit commit above (auto-commit is off).
    assert handover.baseline == {kept: before}


async def test_paused_assigned_instance_reads_and_rewinds(make_gateway, new_topic, producer):
    gateway = await make_gateway()
    api = V2(gateway)
    topic = await new_topic(partitions=1)
    group = group_name()
    assert (await api.create(group, name="m", **{"fetch.min.bytes": 1}))[0] == 200
    status, _, _ = await api.call(
        "POST",
        api.inst(group, "m") + "/assignments",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 204
    inst = gateway.server.app[SESSIONS].local.find(group, "m")
    await until(lambda: fully_paused(inst), "a manually assigned instance pauses")
    for i in range(3):
        await producer.send_and_wait(topic, f"v{i}".encode(), partition=0)
    status, _, _ = await api.call(
        "POST",
        api.inst(group, "m") + "/positions/beginning",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 204
    got = await api.drain(group, "m", 3, timeout=3000)
    assert [r["offset"] for r in got] == [0, 1, 2]
    # Reassigning while idle: the fresh assignment starts paused as well.
    await until(lambda: fully_paused(inst), "idle after reads")
    status, _, _ = await api.call(
        "POST",
        api.inst(group, "m") + "/assignments",
        {"partitions": [{"topic": topic, "partition": 0}]},
    )
    assert status == 204
    assert fully_paused(inst)
