"""Packing one produce request into record batches (``gateway.produce.batching``), without a broker.

The producer is a real ``AIOKafkaProducer`` that is never started: ``create_batch()`` needs no
broker, and with no metadata ``available_partitions_for_topic`` is empty, so every ``known``
partition is a choice for keyless records. Batches are decoded back from their bytes, so the
tests check what would actually be sent, not only the bookkeeping in ``Batch.indices``.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.memory_records import MemoryRecords

from gateway.produce import batching
from gateway.produce.batching import Batch, pack
from sessions import kafka_internals

NOWHERE = "127.0.0.1:9"  # never contacted: the producer is never started
TOPIC = "t"
PARTITIONS = list(range(6))
SEEDS = range(12)  # keyless placement is random: the rules must hold for every draw


@pytest.fixture(autouse=True)
def _keep_random_state() -> Iterator[None]:
    """Tests seed ``random`` (keyless placement draws from it): leave it as it was."""
    state = random.getstate()
    yield
    random.setstate(state)


@pytest.fixture
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    """Small batches (about three 300-byte records each), default request size."""
    p = AIOKafkaProducer(bootstrap_servers=NOWHERE, max_batch_size=1024)
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def small_requests() -> AsyncIterator[AIOKafkaProducer]:
    """``max_request_size`` 2048: a record of more than that cannot be sent at all."""
    p = AIOKafkaProducer(bootstrap_servers=NOWHERE, max_batch_size=1024, max_request_size=2048)
    try:
        yield p
    finally:
        await p.stop()


def run(
    producer: AIOKafkaProducer,
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    partitions: Sequence[int | None] | None = None,
    known: Sequence[int] = PARTITIONS,
) -> tuple[list[Batch], list[dict | None]]:
    offsets: list[dict | None] = [None] * len(values)
    if partitions is None:
        partitions = [None] * len(values)
    batches = pack(producer, TOPIC, keys, values, partitions, known, offsets)
    return batches, offsets


def decoded(batch: Batch) -> list[tuple[bytes | None, bytes | None]]:
    """The (key, value) of every record in the batch's bytes, in offset order."""
    records = MemoryRecords(bytes(batch.builder._build()))
    out = []
    while (b := records.next_batch()) is not None:
        out.extend((r.key, r.value) for r in b)
    return out


def assert_contents(
    batches: list[Batch], keys: Sequence[bytes | None], values: Sequence[bytes | None]
) -> None:
    """Record n of each batch is request record ``indices[n]`` (offsets are base + n)."""
    for batch in batches:
        assert decoded(batch) == [(keys[i], values[i]) for i in batch.indices]


def partition_of(batches: list[Batch]) -> dict[int, int]:
    return {i: b.partition for b in batches for i in b.indices}


def in_request_order(batches: list[Batch]) -> list[Batch]:
    return sorted(batches, key=lambda b: b.indices[0])


def value(n: int, size: int = 300) -> bytes:
    return f"{n:06d}".encode().ljust(size, b"x")


# --- (a) keyless records: sticky --------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
async def test_keyless_records_that_fit_one_batch_all_go_to_one_partition(
    producer: AIOKafkaProducer, seed: int
) -> None:
    random.seed(seed)
    values = [value(n, 100) for n in range(5)]  # about 600 bytes: one 1024-byte batch
    batches, offsets = run(producer, [None] * 5, values)
    assert len(batches) == 1
    (batch,) = batches
    assert batch.partition in PARTITIONS
    assert batch.indices == [0, 1, 2, 3, 4]
    assert batch.full is False
    assert offsets == [None] * 5
    assert_contents(batches, [None] * 5, values)


@pytest.mark.parametrize("seed", SEEDS)
async def test_keyless_records_stick_until_the_batch_is_full_then_move(
    producer: AIOKafkaProducer, seed: int
) -> None:
    random.seed(seed)
    n = 20
    values = [value(i) for i in range(n)]
    keys = [None] * n
    batches, offsets = run(producer, keys, values)
    assert offsets == [None] * n
    assert_contents(batches, keys, values)
    ordered = in_request_order(batches)
    # Runs of consecutive records: each batch is a contiguous slice of the request ...
    flat = [i for b in ordered for i in b.indices]
    assert flat == list(range(n))
    for b in ordered:
        assert b.indices == list(range(b.indices[0], b.indices[-1] + 1))
    # ... several records per batch (sticky, not one random partition per record) ...
    assert len(ordered) < n
    for b in ordered[:-1]:
        assert len(b.indices) >= 2
        assert b.full  # it moved on only because this batch refused a record
    assert not ordered[-1].full
    # ... and a full batch makes the next records move to ANOTHER partition.
    for prev, nxt in itertools.pairwise(ordered):
        assert nxt.partition != prev.partition
    assert all(b.partition in PARTITIONS for b in batches)


@pytest.mark.parametrize("seed", SEEDS[:4])
async def test_keyless_records_keep_their_timestamps_across_batches(
    producer: AIOKafkaProducer, seed: int
) -> None:
    random.seed(seed)
    n = 20
    values = [value(i) for i in range(n)]
    stamps = [1_700_000_000_000 + 7 * i for i in range(n)]
    offsets: list[dict | None] = [None] * n
    batches = pack(producer, TOPIC, [None] * n, values, [None] * n, PARTITIONS, offsets, stamps)
    assert len(batches) > 1
    assert offsets == [None] * n
    for batch in batches:
        records = MemoryRecords(bytes(batch.builder._build())).next_batch()
        assert [(r.value, r.timestamp) for r in records] == [
            (values[i], stamps[i]) for i in batch.indices
        ]
    assert sorted(i for b in batches for i in b.indices) == list(range(n))


async def test_keyless_with_a_single_partition_stays_there(producer: AIOKafkaProducer) -> None:
    values = [value(i) for i in range(10)]
    batches, _ = run(producer, [None] * 10, values, known=[3])
    assert {b.partition for b in batches} == {3}
    assert [i for b in batches for i in b.indices] == list(range(10))
    assert [b.rank for b in batches] == list(range(len(batches)))
    assert len(batches) > 1


@pytest.mark.parametrize("seed", SEEDS)
async def test_keyless_records_avoid_partitions_without_a_leader(
    producer: AIOKafkaProducer, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    random.seed(seed)
    monkeypatch.setattr(
        producer.client.cluster, "available_partitions_for_topic", lambda topic: {4, 1}
    )
    n = 30
    keys: list[bytes | None] = [None] * n
    batches, _ = run(producer, keys, [value(i) for i in range(n)])
    assert {b.partition for b in batches} <= {1, 4}
    assert len({b.partition for b in batches}) == 2  # it does move between the two
    # Keyed records still hash over every partition, not only the available ones.
    keyed = [f"key-{i}".encode() for i in range(n)]
    batches, _ = run(producer, keyed, [value(i, 10) for i in range(n)])
    expected = DefaultPartitioner()
    assert partition_of(batches) == {i: expected(k, PARTITIONS, []) for i, k in enumerate(keyed)}
    assert len({b.partition for b in batches}) > 2


# --- (b) keyed records: the producer's partitioner --------------------------------------------


async def test_keyed_records_go_where_the_partitioner_puts_them(
    producer: AIOKafkaProducer,
) -> None:
    keys = [f"user-{i % 13}".encode() for i in range(60)]
    values = [value(i, 50) for i in range(60)]
    batches, offsets = run(producer, keys, values)
    assert offsets == [None] * 60
    assert_contents(batches, keys, values)
    placed = partition_of(batches)
    assert sorted(placed) == list(range(60))
    theirs = kafka_internals.partitioner(producer)
    murmur2 = DefaultPartitioner()
    for i, key in enumerate(keys):
        assert placed[i] == theirs(key, sorted(PARTITIONS), [])
        assert placed[i] == murmur2(key, PARTITIONS, [])
    # The same key always lands on the same partition.
    by_key: dict[bytes, set[int]] = defaultdict(set)
    for i, key in enumerate(keys):
        by_key[key].add(placed[i])
    assert all(len(parts) == 1 for parts in by_key.values())
    assert len({p for parts in by_key.values() for p in parts}) > 1  # keys do spread


async def test_keyed_partitioner_gets_partitions_sorted_by_id(producer: AIOKafkaProducer) -> None:
    """``known`` may come in any order: the partitioner indexes into the sorted list."""
    keys = [f"k{i}".encode() for i in range(40)]
    shuffled = [5, 2, 0, 4, 1, 3]
    batches, _ = run(producer, keys, [b"v"] * 40, known=shuffled)
    murmur2 = DefaultPartitioner()
    assert partition_of(batches) == {i: murmur2(k, PARTITIONS, []) for i, k in enumerate(keys)}


@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
async def test_keyed_placement_matches_the_java_client(
    producer: AIOKafkaProducer, key: bytes, partition: int
) -> None:
    """Values from Java's default partitioner over 1000 partitions (kafka-python's vectors)."""
    batches, _ = run(producer, [key], [b"v"], known=range(1000))
    assert [(b.partition, b.indices) for b in batches] == [(partition, [0])]


# --- (c) explicit partitions --------------------------------------------------------------------


async def test_explicit_partitions_are_honoured_even_with_a_key(
    producer: AIOKafkaProducer,
) -> None:
    explicit = [5, 0, 5, 2, None, 3, 0, None, None, 5]
    keys = [b"alice", None, b"bob", b"alice", b"alice", None, b"carol", None, None, b"x"]
    values = [value(i, 40) for i in range(10)]
    batches, offsets = run(producer, keys, values, explicit)
    assert offsets == [None] * 10
    assert_contents(batches, keys, values)
    placed = partition_of(batches)
    for i, p in enumerate(explicit):
        if p is not None:
            assert placed[i] == p
    murmur2 = DefaultPartitioner()
    assert placed[4] == murmur2(b"alice", PARTITIONS, [])
    assert placed[7] == placed[8]  # keyless records of one request stick together


# --- (d) order within a partition, (e) hand-over order ------------------------------------------


def mixed_request(n: int) -> tuple[list[bytes | None], list[bytes], list[int | None]]:
    rng = random.Random(n)
    keys: list[bytes | None] = []
    partitions: list[int | None] = []
    for _ in range(n):
        kind = rng.randrange(3)
        keys.append(None if kind != 1 else f"k{rng.randrange(4)}".encode())
        partitions.append(rng.choice(PARTITIONS) if kind == 2 else None)
    values = [value(i, rng.choice((30, 200, 400))) for i in range(n)]
    return keys, values, partitions


@pytest.mark.parametrize("seed", SEEDS)
async def test_each_partition_keeps_request_order_across_its_batches(
    producer: AIOKafkaProducer, seed: int
) -> None:
    random.seed(seed)
    keys, values, partitions = mixed_request(120)
    batches, offsets = run(producer, keys, values, partitions)
    assert offsets == [None] * 120
    assert_contents(batches, keys, values)
    per_partition: dict[int, list[int]] = defaultdict(list)
    for b in batches:
        per_partition[b.partition].extend(b.indices)
    assert any(sum(b.partition == p for b in batches) > 1 for p in per_partition)
    for p, indices in per_partition.items():
        assert indices == sorted(indices), f"partition {p} out of request order"
        assert len(set(indices)) == len(indices)


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_first_batch_is_handed_over_before_any_second_batch(
    producer: AIOKafkaProducer, seed: int
) -> None:
    random.seed(seed)
    keys, values, partitions = mixed_request(120)
    batches, _ = run(producer, keys, values, partitions)
    seen: dict[int, int] = defaultdict(int)
    rounds = []
    for b in batches:
        assert b.rank == seen[b.partition]  # rank counts this partition's earlier batches
        rounds.append(seen[b.partition])
        seen[b.partition] += 1
    assert rounds == sorted(rounds), rounds
    assert max(rounds) >= 1  # the request did need second batches


async def test_a_late_partition_is_not_held_up_by_an_early_one(
    producer: AIOKafkaProducer,
) -> None:
    """Partition 0 fills three batches before partition 1 gets its one record."""
    values = [value(i) for i in range(9)] + [value(9, 20)]
    explicit: list[int | None] = [0] * 9 + [1]
    batches, _ = run(producer, [None] * 10, values, explicit)
    assert [(b.partition, b.rank) for b in batches] == [(0, 0), (1, 0), (0, 1), (0, 2)]
    assert [b.indices for b in batches] == [[0, 1, 2], [9], [3, 4, 5], [6, 7, 8]]
    assert [b.full for b in batches] == [True, False, True, False]


# --- (f) oversize records, (g) every record accounted for ---------------------------------------


async def test_a_record_over_max_request_size_gets_its_own_error(
    small_requests: AIOKafkaProducer,
) -> None:
    keys: list[bytes | None] = [None, None, b"k", b"K" * 3000, None, None, None]
    values: list[bytes | None] = [
        b"a",
        b"v" * 4000,  # value too large
        b"b",
        b"c",  # key too large
        b"w" * 1930,  # over the cheap bound, but fits once measured: sent alone
        b"d",
        b"z" * 2040,  # under max_request_size itself, over it with the batch overhead
    ]
    explicit: list[int | None] = [None, None, None, None, None, 2, None]
    batches, offsets = run(small_requests, keys, values, explicit)
    for i in (1, 3, 6):
        entry = offsets[i]
        assert entry is not None
        assert entry["partition"] is None and entry["offset"] is None
        assert entry["error_code"] == 50002
        assert "MessageSizeTooLarge" in entry["error"]
    for i in (0, 2, 4, 5):
        assert offsets[i] is None
    packed = partition_of(batches)
    assert sorted(packed) == [0, 2, 4, 5]
    assert packed[5] == 2
    assert_contents(batches, keys, values)
    (big,) = [b for b in batches if 4 in b.indices]
    assert big.builder.size() > 1024  # larger than max_batch_size, in a batch of its own


async def test_only_oversize_records_gives_no_batches(small_requests: AIOKafkaProducer) -> None:
    batches, offsets = run(small_requests, [None, None], [b"x" * 5000, b"y" * 2100])
    assert batches == []
    assert all(o is not None and o["error_code"] is not None for o in offsets)


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_record_is_in_exactly_one_batch_or_has_an_error(
    small_requests: AIOKafkaProducer, seed: int
) -> None:
    random.seed(seed)
    keys, values, partitions = mixed_request(150)
    values = [v if i % 17 else v.ljust(2500, b"!") for i, v in enumerate(values)]
    batches, offsets = run(small_requests, keys, values, partitions)
    count: dict[int, int] = defaultdict(int)
    for b in batches:
        assert b.indices, "empty batch"
        for i in b.indices:
            count[i] += 1
    for i in range(len(values)):
        if offsets[i] is None:
            assert count[i] == 1, f"record {i} packed {count[i]} times"
        else:
            assert count[i] == 0, f"record {i} has an error and is packed"
            assert offsets[i]["error_code"] is not None
            assert offsets[i]["partition"] is None
    assert {i for i, o in enumerate(offsets) if o is not None} == set(range(0, 150, 17))
    assert_contents(batches, keys, values)


def test_another_partition_is_uniform_over_the_others() -> None:
    random.seed(7)
    seen: dict[int, int] = defaultdict(int)
    for _ in range(3000):
        seen[batching._another([0, 1, 2, 3], 2)] += 1
    assert set(seen) == {0, 1, 3}
    assert all(800 < n < 1200 for n in seen.values()), seen
    assert batching._another([4], 4) == 4
