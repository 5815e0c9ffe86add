"""``producer.enable.idempotence`` and ``producer.acks`` as the shared producer gets them.

No broker: the translation is pure, the fallback is driven through a producer whose start is
replaced, and the sequence repair (``sessions.kafka_internals.keep_sequences_dense``) runs on a real
aiokafka producer's accumulator and transaction manager (nothing here does I/O), so an aiokafka
upgrade that moves the private attributes it uses fails here by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
    UnknownError,
)

from gateway.config import ConfigError, from_properties
from gateway.errors import GatewayError
from gateway.kafka import KafkaClients, producer_options
from sessions.kafka_internals import keep_sequences_dense

NOWHERE = "127.0.0.1:9"  # never contacted


def options(**props: str) -> tuple[dict[str, Any], bool]:
    config = from_properties({"bootstrap.servers": NOWHERE, **props})
    clients = KafkaClients(config)
    return clients._producer_kwargs, clients._may_drop_idempotence


def test_default_is_idempotent_with_acks_all_and_may_fall_back() -> None:
    assert from_properties({}).producer_enable_idempotence == "auto"
    kwargs, fallback = options()
    assert kwargs["enable_idempotence"] is True
    assert kwargs["acks"] == "all"
    assert fallback is True


@pytest.mark.parametrize(
    ("value", "idempotent", "fallback"),
    [("true", True, False), ("TRUE", True, False), ("false", False, False), ("auto", True, True)],
)
def test_explicit_values(value: str, idempotent: bool, fallback: bool) -> None:
    kwargs, may_fall_back = options(**{"producer.enable.idempotence": value})
    assert kwargs["enable_idempotence"] is idempotent
    assert may_fall_back is fallback


def test_is_a_declared_key_not_a_pass_through() -> None:
    config = from_properties({"producer.enable.idempotence": "false", "producer.linger.ms": "5"})
    assert config.producer_enable_idempotence == "false"
    assert config.producer == {"linger.ms": "5"}  # not also handed to aiokafka as text


def test_invalid_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"producer\.enable\.idempotence"):
        from_properties({"producer.enable.idempotence": "yes"})


@pytest.mark.parametrize(("raw", "acks"), [("all", "all"), ("-1", "all"), ("ALL", "all")])
def test_acks_all_spellings(raw: str, acks: object) -> None:
    kwargs, _ = options(**{"producer.acks": raw})
    assert kwargs["acks"] == acks and kwargs["enable_idempotence"] is True


@pytest.mark.parametrize(("raw", "acks"), [("0", 0), ("1", 1)])
async def test_weaker_acks_turn_auto_idempotence_off_as_java_does(raw: str, acks: int) -> None:
    kwargs, fallback = options(**{"producer.acks": raw})
    assert kwargs["acks"] == acks
    assert kwargs["enable_idempotence"] is False and fallback is False
    # aiokafka takes what the gateway built (it refuses acks=1 together with idempotence).
    producer = AIOKafkaProducer(
        bootstrap_servers=NOWHERE, acks=kwargs["acks"], enable_idempotence=False
    )
    await producer.stop()


def test_required_idempotence_with_weaker_acks_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"producer\.enable\.idempotence: true needs"):
        options(**{"producer.enable.idempotence": "true", "producer.acks": "1"})


def test_unknown_acks_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"producer\.acks: '2'"):
        options(**{"producer.acks": "2"})


def test_user_settings_still_override_the_defaults() -> None:
    config = from_properties({"producer.linger.ms": "7", "kafka.timeout.ms": "3000"})
    kwargs, _ = producer_options(config, {"linger_ms": 7})
    assert kwargs["linger_ms"] == 7 and kwargs["request_timeout_ms"] == 3000


# --- the fallback when the brokers refuse InitProducerId -------------------------------------


class _Starts:
    """Replaces ``AIOKafkaProducer.start``: refuses idempotent producers with ``refusal``."""

    def __init__(self, refusal: BaseException) -> None:
        self.refusal = refusal
        self.seen: list[bool] = []

    async def __call__(self, producer: AIOKafkaProducer) -> None:
        idempotent = producer._txn_manager is not None
        self.seen.append(idempotent)
        if idempotent:
            raise self.refusal


async def _producer_with(
    monkeypatch: pytest.MonkeyPatch, refusal: BaseException, **props: str
) -> tuple[_Starts, KafkaClients]:
    starts = _Starts(refusal)
    monkeypatch.setattr(AIOKafkaProducer, "start", lambda self: starts(self))
    config = from_properties({"bootstrap.servers": NOWHERE, "kafka.timeout.ms": "2000", **props})
    return starts, KafkaClients(config)


async def test_auto_falls_back_when_the_cluster_refuses_idempotence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts, clients = await _producer_with(monkeypatch, ClusterAuthorizationFailedError())
    try:
        producer = await clients.producer()
        assert starts.seen == [True, False]
        assert producer._txn_manager is None  # a plain producer
        assert await clients.producer() is producer  # decided once
    finally:
        await clients.stop()


async def test_required_idempotence_does_not_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    starts, clients = await _producer_with(
        monkeypatch, ClusterAuthorizationFailedError(), **{"producer.enable.idempotence": "true"}
    )
    try:
        with pytest.raises(GatewayError) as raised:
            await clients.producer()
        assert raised.value.status == 503
        assert starts.seen == [True]
    finally:
        await clients.stop()


async def test_an_unreachable_cluster_is_not_mistaken_for_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts, clients = await _producer_with(monkeypatch, KafkaConnectionError("down"))
    try:
        with pytest.raises(GatewayError):
            await clients.producer()
        assert starts.seen == [True]  # no quiet downgrade because Kafka was down
    finally:
        await clients.stop()


# --- the sequence repair, on a real producer's accumulator ------------------------------------

TP = TopicPartition("t", 0)


@pytest.fixture
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    """An idempotent producer, never started, with the repair installed and a producer id."""
    producer = AIOKafkaProducer(bootstrap_servers=NOWHERE, enable_idempotence=True)
    keep_sequences_dense(producer)
    producer._txn_manager.set_pid_and_epoch(1000, 0)  # what InitProducerId would have set
    yield producer
    await producer.stop()


async def _queue(producer: AIOKafkaProducer, records: int) -> Any:
    """Queue a batch of ``records`` for TP and drain it as the sender would (numbered)."""
    batch = producer.create_batch()
    for i in range(records):
        batch.append(timestamp=None, key=b"k", value=str(i).encode())
    await producer._message_accumulator.add_batch(batch, TP, timeout=1)
    return producer._message_accumulator._pop_batch(TP)


def _next_sequence(producer: AIOKafkaProducer) -> int:
    sequence: int = producer._txn_manager.sequence_number(TP)
    return sequence


@pytest.mark.parametrize("refusal", [UnknownError(), TopicAuthorizationFailedError()])
async def test_a_rejected_batch_gives_its_numbers_back(
    producer: AIOKafkaProducer, refusal: Exception
) -> None:
    ok = await _queue(producer, 3)
    ok.done(base_offset=0)
    assert _next_sequence(producer) == 3
    rejected = await _queue(producer, 5)
    assert _next_sequence(producer) == 8
    rejected.failure(refusal)  # the broker's non-retriable answer: nothing was appended
    assert _next_sequence(producer) == 3  # the next batch follows the last appended one
    assert rejected.future.exception() is refusal  # the caller still sees the failure
    after = await _queue(producer, 2)
    assert _next_sequence(producer) == 5
    after.done(base_offset=3)


async def test_a_batch_that_expired_unsent_gives_its_numbers_back(
    producer: AIOKafkaProducer,
) -> None:
    expired = await _queue(producer, 4)
    expired.failure(NotLeaderForPartitionError())  # aiokafka's expiry without a leader
    assert _next_sequence(producer) == 0


async def test_a_batch_sent_twice_keeps_its_numbers(producer: AIOKafkaProducer) -> None:
    """Its first attempt may have been appended (the answer lost): reusing the numbers could
    make the broker take a different batch for a duplicate of it."""
    batch = await _queue(producer, 4)
    producer._message_accumulator.reenqueue(batch)  # a retriable error: sent again
    again = producer._message_accumulator._pop_batch(TP)
    assert again is batch and batch.retry_count == 2
    batch.failure(UnknownError())
    assert _next_sequence(producer) == 4


async def test_numbers_are_kept_once_a_later_batch_was_numbered(producer: AIOKafkaProducer) -> None:
    first = await _queue(producer, 2)
    await _queue(producer, 3)  # cannot happen in aiokafka (one batch in flight), guarded anyway
    first.failure(UnknownError())
    assert _next_sequence(producer) == 5


async def test_a_plain_producer_is_left_alone() -> None:
    plain = AIOKafkaProducer(bootstrap_servers=NOWHERE)
    pop = plain._message_accumulator._pop_batch
    keep_sequences_dense(plain)
    assert plain._message_accumulator._pop_batch == pop
    await plain.stop()
