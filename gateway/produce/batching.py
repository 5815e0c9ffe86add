"""Packing one produce request's records into Kafka record batches, one per partition.

Pure of I/O: it only builds aiokafka ``BatchBuilder`` objects (the sender hands them over), so
the partition choice and ordering rules are unit-tested without a broker
(``tests/unit/test_produce_batching.py``):

* an explicit partition is honoured; a keyed record goes where the producer's partitioner
  (Java's murmur2 by default) puts it;
* keyless records of one request stick to one randomly chosen available partition until its
  batch is full, then move to another, as Java's sticky partitioner does;
* a partition's records stay in request order, and a record too large to send at all gets
  its own error entry instead of failing its batch.

Records may carry a timestamp (epoch ms) and headers (v3 produce); v2 passes neither, and
then every record is appended with the producer's clock and no headers, exactly as before.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from itertools import repeat
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from sessions import kafka_internals

from ..errors import describe, kafka_error_code

# aiokafka's upper bound on a record's size beyond its key and value bytes (batch header 61,
# record overhead 21, two length varints of at most 5 and the header count): a record whose
# key and value stay this far below ``max_request_size`` cannot be too large.
_RECORD_OVERHEAD_BOUND = 128

Offset = dict[str, Any]
Headers = list[tuple[str, bytes | None]]
NO_HEADERS: Headers = []  # shared, never mutated (aiokafka only reads it)


class Batch:
    """One record batch for one partition, and which request records it carries, in order."""

    __slots__ = ("builder", "full", "indices", "partition", "rank")

    def __init__(self, partition: int, builder: Any, rank: int) -> None:
        self.partition = partition
        self.builder = builder  # aiokafka's BatchBuilder
        self.rank = rank  # how many batches of this partition this request filled before it
        self.indices: list[int] = []
        self.full = False  # refused a record: worth a produce request of its own


class _Packer:
    """Packs a request's records into batches: one open batch per partition at a time."""

    def __init__(self, producer: AIOKafkaProducer, size: int | None) -> None:
        self._producer = producer
        self._size = size  # bytes per batch; None: the producer's batch.size
        self.open: dict[int, Batch] = {}  # read by _pack's per-record fast path
        self._ranks: dict[int, int] = {}
        self._filled: list[Batch] = []

    def retire(self, batch: Batch) -> None:
        """The batch is full: it goes out as it is and its partition needs a new one."""
        batch.full = True
        del self.open[batch.partition]
        self._filled.append(batch)

    def start(
        self,
        partition: int,
        index: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: int | None,
        headers: Headers,
    ) -> None:
        """A new batch for the partition, holding this record.

        A fresh batch takes its first record whatever its size, as aiokafka's own ``send``
        does: a record larger than the batch size travels in a batch of its own.
        """
        rank = self._ranks.get(partition, 0)
        self._ranks[partition] = rank + 1
        builder = (
            self._producer.create_batch()
            if self._size is None
            else kafka_internals.batch_builder(self._producer, self._size)
        )
        batch = self.open[partition] = Batch(partition, builder, rank)
        if batch.builder.append(timestamp=timestamp, key=key, value=value, headers=headers) is None:
            raise RuntimeError("aiokafka refused the first record of an empty batch")
        batch.indices.append(index)

    def batches(self) -> list[Batch]:
        """Every batch, first batches of all partitions first, each partition in order.

        aiokafka queues only one undelivered batch per partition and makes the next one wait
        for it, so handing over round by round lets the first round go out in one produce
        request instead of making a partition's second batch hold up every other partition.
        """
        every = self._filled + list(self.open.values())
        every.sort(key=lambda b: b.rank)  # stable: request order within a partition
        return every


def pack(
    producer: AIOKafkaProducer,
    topic: str,
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    partitions: Sequence[int | None],
    known: Collection[int],
    offsets: list[Offset | None],
    timestamps: Sequence[int | None] | None = None,
    headers: Sequence[Headers] | None = None,
    size: int | None = None,
) -> list[Batch]:
    """The request's records in batches, in hand-over order; a record too large to send gets its error in offsets.

    ``timestamps`` (epoch ms, None: now) and ``headers``, when given, run parallel to ``keys``;
    ``size`` is the bytes per batch (None: the producer's ``batch.size``).
    """
    everything = sorted(known)  # the partitioner's list, sorted by id as Java's is
    # Keyless records avoid partitions without a leader, as aiokafka's partitioner does.
    available = sorted(producer.client.cluster.available_partitions_for_topic(topic) or ())
    choices = available or everything
    partitioner = kafka_internals.partitioner(producer)
    roomy = kafka_internals.max_request_size(producer) - _RECORD_OVERHEAD_BOUND
    packer = _Packer(producer, size)
    open_batch = packer.open.get
    sticky: int | None = None
    if not len(keys) == len(values) == len(partitions):
        raise ValueError("keys, values and partitions must be parallel")
    # repeat() is endless: zip stops at the keys (lengths of given extras are checked here).
    if timestamps is not None and len(timestamps) != len(keys):
        raise ValueError("timestamps must be parallel to keys")
    if headers is not None and len(headers) != len(keys):
        raise ValueError("headers must be parallel to keys")
    count = len(keys)
    if (
        count
        and headers is None
        and keys.count(None) == count
        and partitions.count(None) == count
        and max(map(len, filter(None, values)), default=0) <= roomy
    ):
        return _pack_sticky(packer, choices, keys, values, timestamps)
    times: Iterable[int | None] = repeat(None) if timestamps is None else timestamps
    extras: Iterable[Headers] = repeat(NO_HEADERS) if headers is None else headers
    records = zip(keys, values, partitions, times, extras)  # noqa: B905 (checked above)
    for i, (key, value, partition, ts, hdrs) in enumerate(records):
        size = (len(key) if key else 0) + (len(value) if value else 0)
        if hdrs:
            # A name takes up to 4 UTF-8 bytes a character, each header two length varints.
            size += sum(len(n) * 4 + len(v or b"") + 10 for n, v in hdrs)
        if size > roomy:
            too_large = _too_large(producer, key, value, hdrs)
            if too_large is not None:
                offsets[i] = too_large
                continue
        keyless = partition is None and key is None
        if keyless:
            if sticky is None:
                sticky = random.choice(choices)
            partition = sticky
        elif partition is None:
            partition = partitioner(key or b"", everything, available)
        # The common case, inline: the partition's open batch has room.
        batch = open_batch(partition)
        if batch is not None:
            if batch.builder.append(timestamp=ts, key=key, value=value, headers=hdrs) is not None:
                batch.indices.append(i)
                continue
            packer.retire(batch)
            if keyless:  # the sticky partition's batch is full: move on, as Java does
                sticky = partition = _another(choices, partition)
                batch = open_batch(partition)
                if batch is not None:
                    if (
                        batch.builder.append(timestamp=ts, key=key, value=value, headers=hdrs)
                        is not None
                    ):
                        batch.indices.append(i)
                        continue
                    packer.retire(batch)
        packer.start(partition, i, key, value, ts, hdrs)
    return packer.batches()


def _pack_sticky(
    packer: _Packer,
    choices: list[int],
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    timestamps: Sequence[int | None] | None,
) -> list[Batch]:
    """:func:`pack` for the usual request (keyless records, no partition named, no headers,
    none too large): the same sticky partitions, filled by runs of C appends instead of a
    partition choice and a Python append per record, which were most of ``pack``'s cost."""
    partition = random.choice(choices)
    start, n = 0, len(values)
    while start < n:
        batch = packer.open.get(partition)
        if batch is None:
            ts = None if timestamps is None else timestamps[start]
            packer.start(partition, start, keys[start], values[start], ts, NO_HEADERS)
            batch = packer.open[partition]
            start += 1
        count = kafka_internals.append_records(batch.builder, keys, values, timestamps, start)
        batch.indices.extend(range(start, start + count))
        start += count
        if start < n:  # the batch is full: move on, as Java's sticky partitioner does
            packer.retire(batch)
            partition = _another(choices, partition)
    return packer.batches()


def _another(choices: list[int], current: int) -> int:
    """A random partition other than ``current`` when there is one."""
    if len(choices) < 2:
        return current
    # Uniform over the others: drawing from all but the last, the last stands in for current.
    other = random.choice(choices[:-1])
    return choices[-1] if other == current else other


def _too_large(
    producer: AIOKafkaProducer, key: bytes | None, value: bytes | None, headers: Headers
) -> Offset | None:
    """The failure ``send()`` reports for a record over ``max_request_size``, else None.

    A batch takes any first record whatever its size, so without this check an oversized
    record would reach the broker and fail its whole batch; ``send()`` refused it alone,
    with this message.
    """
    if headers:
        # check_record_size() knows no headers; this is the same estimate send() makes.
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        limit = kafka_internals.max_request_size(producer)
        if size > limit:
            exc: KafkaError = MessageSizeTooLargeError(
                f"The message is {size} bytes when serialized which is larger than the "
                "maximum request size you have configured with the max_request_size "
                "configuration"
            )
            return failure(kafka_error_code(exc), describe(exc))
        return None
    try:
        kafka_internals.check_record_size(producer, key, value)
    except KafkaError as exc:
        return failure(kafka_error_code(exc), describe(exc))
    return None


def failure(error_code: int, message: str) -> Offset:
    return {"partition": None, "offset": None, "error_code": error_code, "error": message}
