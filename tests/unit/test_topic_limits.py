"""Batch sizes per topic (``gateway.produce.topic_limits``): the producer's ``batch.size``
within the topic's ``max.message.bytes``, and the safe size whenever that is not known.

The admin client is a stand-in here (what it answers is the point); asking a real broker, and
a broker refusing a batch, are in ``tests/integration/test_produce.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from gateway.produce import topic_limits
from gateway.produce.topic_limits import SAFE_BATCH_BYTES, TopicLimits


class _Response:
    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self._resources = resources

    def to_object(self) -> dict[str, Any]:
        return {"resources": self._resources}


def _resource(topic: str, value: str | None, error_code: int = 0) -> dict[str, Any]:
    entries = (
        [] if value is None else [{"config_names": "max.message.bytes", "config_value": value}]
    )
    return {"error_code": error_code, "resource_name": topic, "config_entries": entries}


class _Admin:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[Any] = []

    async def describe_configs(self, resources: list[Any]) -> list[_Response]:
        self.asked.extend(resources)
        if isinstance(self.answer, BaseException):
            raise self.answer
        if self.answer == "hang":
            await asyncio.sleep(3600)
        return [_Response(self.answer)]


class _Clients:
    def __init__(self, admin: _Admin) -> None:
        self._admin = admin

    async def admin(self) -> _Admin:
        return self._admin


@pytest.fixture
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=65536)
    try:
        yield p
    finally:
        await p.stop()


def limits(answer: Any) -> tuple[TopicLimits, _Admin]:
    admin = _Admin(answer)
    return TopicLimits(_Clients(admin)), admin  # type: ignore[arg-type]


async def test_a_topic_not_asked_yet_gets_the_safe_size(producer: AIOKafkaProducer) -> None:
    known, _ = limits([])
    assert not known.knows("t")
    assert known.batch_bytes(producer, "t") == SAFE_BATCH_BYTES


async def test_a_roomy_topic_gets_the_producers_batch_size(producer: AIOKafkaProducer) -> None:
    known, admin = limits([_resource("t", "1048588")])
    await known.learn("t", 1.0)
    assert known.knows("t")
    assert known.batch_bytes(producer, "t") == 65536
    (asked,) = admin.asked
    assert asked.name == "t" and list(asked.configs) == ["max.message.bytes"]


async def test_a_tight_topic_gets_batches_below_its_limit(producer: AIOKafkaProducer) -> None:
    known, _ = limits([_resource("t", "40000")])
    await known.learn("t", 1.0)
    assert SAFE_BATCH_BYTES < known.batch_bytes(producer, "t") < 40000
    tiny, _ = limits([_resource("t", "100")])
    await tiny.learn("t", 1.0)
    assert tiny.batch_bytes(producer, "t") == 1  # a record still travels, alone


@pytest.mark.parametrize(
    "answer",
    [
        [_resource("t", "1048588", error_code=29)],  # TOPIC_AUTHORIZATION_FAILED
        [_resource("other", "1048588")],
        [_resource("t", None)],
        ConnectionError("down"),
    ],
    ids=["denied", "another-topic", "no-entry", "failed"],
)
async def test_what_cannot_be_learned_keeps_the_safe_size(
    producer: AIOKafkaProducer, answer: Any
) -> None:
    known, _ = limits(answer)
    await known.learn("t", 1.0)
    assert known.knows("t")  # asked once: not asked again on every request
    assert known.batch_bytes(producer, "t") == SAFE_BATCH_BYTES


async def test_requests_waiting_together_share_one_ask(producer: AIOKafkaProducer) -> None:
    """A burst of first requests to a new topic asks the broker once, and a waiter that
    gives up (its client went) does not cancel the ask for the others."""
    known, admin = limits("hang")
    waiters = [asyncio.ensure_future(known.learn("t", 0.2)) for _ in range(20)]
    await asyncio.sleep(0.05)
    waiters[0].cancel()
    await asyncio.gather(*waiters[1:])
    assert len(admin.asked) == 1
    assert known.knows("t") and known.batch_bytes(producer, "t") == SAFE_BATCH_BYTES


async def test_a_hung_admin_is_bounded(producer: AIOKafkaProducer) -> None:
    known, _ = limits("hang")
    async with asyncio.timeout(2):
        await known.learn("t", 0.05)
    assert known.batch_bytes(producer, "t") == SAFE_BATCH_BYTES


async def test_a_refusal_puts_the_topic_back_to_the_safe_size(producer: AIOKafkaProducer) -> None:
    known, _ = limits([_resource("t", "1048588")])
    await known.learn("t", 1.0)
    known.refused("t")
    assert known.batch_bytes(producer, "t") == SAFE_BATCH_BYTES


async def test_topics_remembered_are_bounded(
    producer: AIOKafkaProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(topic_limits, "_REMEMBERED", 3)
    known, admin = limits([])
    for name in "abcd":
        admin.answer = [_resource(name, "1048588")]
        await known.learn(name, 1.0)
    assert [t for t in "abcd" if known.knows(t)] == ["b", "c", "d"]
