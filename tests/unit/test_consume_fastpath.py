"""The consume fast path (batch decoding) against the reference it replaces.

Two references: the element a client saw before any of the text building existed (a dict
per record through ``orjson.dumps``, Confluent's field order), and the per-record decoders.
The batch decoders must give the same bytes as both, and the instance's read loop must hand
out the same responses, positions and poison-record errors whichever kind it is given.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from gateway.consume import decoding
from gateway.consume.decoding import DECODERS, decode_binary_batch, decode_json_batch
from sessions import instance as instance_module
from sessions.errors import PoisonRecord
from sessions.instance import ConsumerInstance, InstanceSpec, ReadLimits
from sessions.kafka_internals import SubscriptionType


def record(
    key: bytes | None,
    value: bytes | None,
    offset: int = 0,
    *,
    topic: str = "orders",
    partition: int = 0,
) -> ConsumerRecord:
    return ConsumerRecord(
        topic,
        partition,
        offset,
        0,
        0,
        key,
        value,
        None,
        -1 if key is None else len(key),
        -1 if value is None else len(value),
        (),
    )


def dict_element(rec: ConsumerRecord, fmt: str) -> bytes:
    """The old path: one dict per record, serialized by orjson."""

    def side(data: bytes | None) -> Any:
        if fmt == "binary":
            return None if data is None else base64.b64encode(data).decode()
        return orjson.loads(data) if data else None

    return orjson.dumps(
        {
            "topic": rec.topic,
            "key": side(rec.key),
            "value": side(rec.value),
            "partition": rec.partition,
            "offset": rec.offset,
        }
    )


TRICKY_BINARY = [
    (None, b"v"),
    (b"k", None),
    (None, None),
    (None, b""),
    (b"", b""),
    (b"", None),
    (b"\x00\xff\xfe", b"\x00" * 7),
    ("clé".encode(), "värde ✓ 🙂".encode()),
    (b"%s%d%%", b"%(x)s"),  # the template must not read them as format codes
    (None, bytes(range(256)) * 40),
]

TRICKY_JSON = [
    (None, b'{"a":1}'),
    (b'"k"', None),
    (None, None),
    (None, b""),  # empty bytes read as null
    (b"", b""),
    (b'"cl\xc3\xa9"', '{"värde":"✓ 🙂","n":[1,2.5,null,true]}'.encode()),
    (b"1", b'"%s%d%%"'),
    (b"null", b"[]"),
    (None, b'"' + b"x" * 2000 + b'"'),  # past the nesting check's length bound
    (None, b"[" * 200 + b"]" * 200),
    (None, b'{"big":18446744073709551615}'),
]

OFFSETS = [0, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1]


@pytest.mark.parametrize("topic", ["orders", "a.b-c_D9", "x" * 249])
@pytest.mark.parametrize("partition", [0, 7, 2**31 - 1])
def test_binary_batch_matches_dict_path_and_per_record(topic: str, partition: int) -> None:
    recs = [
        record(k, v, off, topic=topic, partition=partition)
        for (k, v) in TRICKY_BINARY
        for off in OFFSETS
    ]
    elements, sizes = decode_binary_batch(recs)
    assert elements == [dict_element(r, "binary") for r in recs]
    assert [(e, s) for e, s in zip(elements, sizes, strict=True)] == [
        decoding.decode_binary(r) for r in recs
    ]


@pytest.mark.parametrize("topic", ["orders", "x" * 249])
def test_json_batch_matches_dict_path_and_per_record(topic: str) -> None:
    recs = [
        record(k, v, off, topic=topic, partition=3) for (k, v) in TRICKY_JSON for off in OFFSETS
    ]
    elements, sizes = decode_json_batch(recs)
    assert elements == [dict_element(r, "json") for r in recs]
    assert [(e, s) for e, s in zip(elements, sizes, strict=True)] == [
        decoding.decode_json(r) for r in recs
    ]


def test_json_batch_keeps_the_producers_spelling_as_the_per_record_path_does() -> None:
    recs = [record(b' "k" ', b'{ "a" : 1.0 }', 5)]
    assert decode_json_batch(recs)[0] == [decoding.decode_json(recs[0])[0]]
    assert orjson.loads(decode_json_batch(recs)[0][0]) == orjson.loads(
        dict_element(recs[0], "json")
    )


@pytest.mark.parametrize(
    "bad",
    [
        (None, b"{not json"),
        (b"nope", b"1"),
        (None, b"\xff"),
        (None, b"[" * 300 + b"]" * 300),  # too deep to write back
        (None, b"1,2"),
    ],
)
def test_json_batch_stops_before_a_poison_record(bad: tuple[bytes | None, bytes | None]) -> None:
    recs = [record(None, b"1", 0), record(None, b"2", 1), record(*bad, 2), record(None, b"4", 3)]
    elements, sizes = decode_json_batch(recs)
    assert elements == [dict_element(r, "json") for r in recs[:2]]
    assert sizes == [1, 1]
    assert decode_json_batch(recs[2:]) == ([], [])
    assert decode_json_batch(recs[3:])[0] == [dict_element(recs[3], "json")]


def test_empty_batches() -> None:
    assert decode_binary_batch([]) == ([], [])
    assert decode_json_batch([]) == ([], [])


# --- the instance's read loop, on a fake consumer -------------------------------------------------


class _Subscription:
    _subscription_type = SubscriptionType.USER_ASSIGNED


class FakeClock:
    """The instance's clock: time passes only while getmany waits, so where a read stops
    depends on the records alone, never on how fast the machine decodes them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeConsumer:
    """Enough of AIOKafkaConsumer for reads: getmany hands out fixed batches, in order."""

    def __init__(
        self, batches: list[dict[TopicPartition, list[ConsumerRecord]]], clock: FakeClock
    ) -> None:
        self._batches = batches
        self._clock = clock
        self._subscription = _Subscription()
        self._fetcher = None
        self._closed = False
        self.tps = {tp for b in batches for tp in b}

    async def getmany(self, *, timeout_ms: int, max_records: int) -> Any:
        if not self._batches:
            self._clock.now += max(timeout_ms, 1) / 1000  # as if each call took 1 ms at least
            return {}
        return self._batches.pop(0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.tps)

    def paused(self) -> set[TopicPartition]:
        return set()

    def pause(self, *tps: TopicPartition) -> None:
        pass

    def resume(self, *tps: TopicPartition) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass


def _per_record_only(decoder: Any) -> Any:
    def one(rec: ConsumerRecord) -> tuple[bytes, int]:
        result: tuple[bytes, int] = decoder(rec)
        return result

    return one


def _batches(fmt: str, seed: int) -> list[dict[TopicPartition, list[ConsumerRecord]]]:
    rng = random.Random(seed)
    tps = [TopicPartition("t", p) for p in range(3)]
    next_offset = dict.fromkeys(tps, 2**40)
    out = []
    for _ in range(6):
        batch = {}
        for tp in rng.sample(tps, rng.randint(1, 3)):
            recs = []
            for _ in range(rng.randint(1, 40)):
                off = next_offset[tp]
                next_offset[tp] += rng.choice([1, 1, 1, 2])  # gaps, as compaction leaves
                n = rng.choice([0, 1, 5, 30, 120])
                if fmt == "binary":
                    value = None if rng.random() < 0.1 else rng.randbytes(n)
                    key = None if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 4))
                else:
                    value = orjson.dumps("x" * n)
                    if rng.random() < 0.1:
                        value = b"{broken"
                    key = None if rng.random() < 0.5 else b'"k"'
                recs.append(record(key, value, off, topic=tp.topic, partition=tp.partition))
            batch[tp] = recs
        out.append(batch)
        out.append({})  # a fetch boundary: a read stops here once it has records
    return out


async def _drain(
    fmt: str, seed: int, decoder: Any, max_bytes: Sequence[int], *, between: int = 0
) -> tuple[list[Any], dict[TopicPartition, int]]:
    """Read until two empty answers; ``between``: event-loop turns the client takes between
    reads (during which the instance may prefill its buffer)."""
    clock = FakeClock()
    fake = FakeConsumer(_batches(fmt, seed), clock)
    with pytest.MonkeyPatch.context() as mp:  # no real client (nothing to connect or close)
        mp.setattr(instance_module, "AIOKafkaConsumer", lambda **kwargs: fake)
        mp.setattr(instance_module, "time", clock)
        inst = ConsumerInstance(
            InstanceSpec(group="g", name="i", format=fmt),
            bootstrap_servers="localhost:1",
            kafka_settings={},
            instance_timeout_ms=60_000,
            kafka_timeout_ms=1_000,
        )
        answers: list[Any] = []
        i = 0
        while answers[-2:] != [b"[]", b"[]"]:
            limits = ReadLimits(wait_ms=50, max_bytes=max_bytes[i % len(max_bytes)], min_bytes=1)
            i += 1
            try:
                async with inst.read(limits, decoder) as out:
                    answers.append(b"[" + b",".join(out) + b"]")
            except PoisonRecord as exc:
                answers.append(str(exc))
            for _ in range(between):
                await asyncio.sleep(0)
        inst._disarm_idle_timer()
        if between:
            assert inst._prefill_task is not None
            await inst._prefill_task
        return answers, inst.positions()


@pytest.mark.parametrize("fmt", ["binary", "json"])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_bytes", [[64 * 1024 * 1024], [1], [100, 7, 300], [2500]])
@pytest.mark.parametrize("between", [0, 3])
async def test_read_loop_gives_the_same_answers_batched_or_per_record(
    fmt: str, seed: int, max_bytes: list[int], between: int
) -> None:
    fast = DECODERS[fmt]
    assert getattr(fast, "batch", None) is not None
    batched = await _drain(fmt, seed, fast, max_bytes, between=between)
    reference = await _drain(fmt, seed, _per_record_only(fast), max_bytes)
    if between:
        # The prefill moves the next fetch into the buffer before the next read, so where
        # responses split may differ; what the client gets, in order, may not.
        assert _flat(batched[0]) == _flat(reference[0])
        assert batched[1] == reference[1]
    else:
        assert batched == reference
    assert len(batched[0]) >= 3
    assert batched[1]  # every partition read to its end
    if fmt == "json":
        assert any(isinstance(a, str) for a in batched[0])  # poison records were met


def _flat(answers: list[Any]) -> list[Any]:
    """Every element and poison-record error the client saw, in order."""
    out: list[Any] = []
    for a in answers:
        out.extend([a] if isinstance(a, str) else orjson.loads(a))
    return out


@pytest.mark.parametrize("sizes", [[], [1], [5, 7], [300_000], [1000] * 700, [70_000] * 9])
def test_streamed_response_is_the_joined_array(sizes: list[int]) -> None:
    """Big responses go out in pieces; the bytes and the announced length are the one array."""
    from gateway.consume.routes import STREAM_CHUNK, response_chunks, response_length

    elements = [(b"%d" % i) * (n // len(b"%d" % i) or 1) for i, n in enumerate(sizes)]
    whole = b"[" + b",".join(elements) + b"]"
    length = response_length(elements)
    pieces = list(response_chunks(elements, length))
    assert length == len(whole) and b"".join(pieces) == whole
    if length > STREAM_CHUNK:
        assert len(pieces) == min(len(elements), len(pieces)) and len(pieces) >= min(
            2, len(elements)
        )
        assert max(map(len, pieces)) < 2 * STREAM_CHUNK + max(sizes)
