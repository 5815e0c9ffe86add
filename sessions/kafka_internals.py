"""Every use of aiokafka's private attributes, behind one door.

The gateway needs a few things aiokafka keeps private: the subscription kind of a consumer,
committed offsets *with* their metadata, the producer's own partitioner and size limits, a
metadata request that must not auto-create topics. Each is read here and nowhere else, with
plain attribute access (never ``getattr(..., default)``, which would hide a rename behind a
silent default), and ``tests/unit/test_kafka_internals.py`` touches every one on real client
objects, so an aiokafka upgrade that moves one fails that test by name instead of changing
behaviour quietly.

It lives in ``sessions`` (the lower layer) so the consumer instances and the HTTP layer's
produce and metadata paths share it without ``sessions`` importing ``gateway``.
"""

from __future__ import annotations

import asyncio
import collections
import copy
from collections.abc import Callable, Iterable, Sequence
from itertools import islice, repeat
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.fetcher import FetchResult
from aiokafka.consumer.subscription_state import SubscriptionType
from aiokafka.errors import (
    BrokerResponseError,
    DuplicateSequenceNumber,
    KafkaConnectionError,
    KafkaError,
    ProducerClosed,
)
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import OffsetAndMetadata

from .fetched import LeanRecord

Partitioner = Callable[[bytes, list[int], list[int]], int]

__all__ = [
    "Partitioner",
    "SubscriptionType",
    "admin_request",
    "append_records",
    "append_to_open_batch",
    "append_tuples",
    "auto_assigned",
    "batch_builder",
    "batch_size",
    "check_record_size",
    "committed_with_metadata",
    "fetcher_dead",
    "fetcher_timeout",
    "forget_missing_topic",
    "keep_sequences_dense",
    "lean_records",
    "max_request_size",
    "metadata_topics",
    "partitioner",
    "ping_brokers",
    "request_timeout_ms",
    "set_fetcher_timeout",
    "subscribe_pattern",
    "subscription_type",
    "wait_for_fetch",
]

# --- consumer ---------------------------------------------------------------------------------


def subscription_type(consumer: AIOKafkaConsumer) -> SubscriptionType:
    """NONE, AUTO_TOPICS, AUTO_PATTERN or USER_ASSIGNED: aiokafka exposes no public getter."""
    kind: SubscriptionType = consumer._subscription._subscription_type
    return kind


def auto_assigned(consumer: AIOKafkaConsumer) -> bool:
    """Whether partitions come from the group (subscribe) rather than ``assign()``."""
    return bool(consumer._subscription.partitions_auto_assigned())


def subscribe_pattern(consumer: AIOKafkaConsumer, pattern: Any, listener: Any) -> None:
    """Subscribe to topics matching an already compiled pattern (e.g. RE2's).

    The public ``subscribe(pattern=...)`` insists on compiling the text with Python's ``re``,
    whose backtracking a hostile pattern turns into a frozen event loop; aiokafka itself only
    ever calls ``pattern.match(topic)``, which any compiled pattern object offers.
    """
    consumer._subscription.subscribe_pattern(pattern=pattern, listener=listener)
    consumer._client.set_topics([])  # as subscribe() does: the next metadata update matches


_new_tuple = tuple.__new__


def _lean_record(tp: TopicPartition, record: Any) -> LeanRecord:
    # One C call per record (tuple.__new__), where ConsumerRecord runs a Python __init__.
    return _new_tuple(
        LeanRecord,
        (
            tp.topic,
            tp.partition,
            record.offset,
            record.timestamp,
            record.timestamp_type,
            record.key,
            record.value,
            record.headers,
        ),
    )


class _LeanResults(collections.OrderedDict[TopicPartition, Any]):
    """The fetcher's table of fetched partitions; every partition's records put in it unpack
    as LeanRecord. aiokafka's unpacking loop (skipping control batches, aborted transactions
    and compacted-away offsets, moving the fetch position) stays aiokafka's: only the object
    built per record changes, through the per-record hook it calls on the instance."""

    def __setitem__(self, tp: TopicPartition, result: Any) -> None:
        if type(result) is FetchResult:
            result._partition_records._consumer_record = _lean_record
        super().__setitem__(tp, result)


def lean_records(consumer: AIOKafkaConsumer) -> None:
    """Make the started consumer's reads return :class:`~sessions.fetched.LeanRecord`s.

    Only for consumers without deserializers (the instances read bytes); records fetched
    before the call still come as ``ConsumerRecord``, which reads the same.
    """
    fetcher = consumer._fetcher
    if fetcher is None:
        raise RuntimeError("lean_records() needs a started consumer")
    if fetcher._key_deserializer is not None or fetcher._value_deserializer is not None:
        raise ValueError("lean_records() skips deserializers; the consumer has some")
    if type(fetcher._records) is not _LeanResults:
        fetcher._records = _LeanResults(fetcher._records)


async def wait_for_fetch(consumer: AIOKafkaConsumer, timeout_s: float) -> bool:
    """Wait, at most ``timeout_s``, until the started consumer's background fetch brings
    new records (or the consumer closes), without taking any: ``getmany`` would take them.
    True if that happened; False after the bound, or at once when there is nothing to wait
    on (not started, or closed)."""
    fetcher = consumer._fetcher
    if fetcher is None or consumer._closed:
        return False
    waiter = fetcher._create_fetch_waiter()
    try:
        await asyncio.wait([waiter], timeout=timeout_s)
    finally:
        came: bool = waiter.done()
        if not came:
            waiter.cancel()  # its done-callback takes it out of the fetcher's waiters
    return came


def fetcher_dead(consumer: AIOKafkaConsumer) -> bool:
    """Whether the consumer's background fetch task ended while the consumer runs.

    Nothing in aiokafka restarts it or reports it to ``getmany``, which then waits for data
    that never comes.
    """
    fetcher = consumer._fetcher
    if fetcher is None or consumer._closed:
        return False
    task: Any = fetcher._fetch_task
    return bool(task.done())


async def committed_with_metadata(
    consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets with metadata (the public ``committed()`` drops it)."""
    found: dict[
        TopicPartition, OffsetAndMetadata
    ] = await consumer._coordinator.fetch_committed_offsets(partitions)
    return found


def fetcher_timeout(consumer: AIOKafkaConsumer) -> float | None:
    """How often (seconds) the started consumer's fetch loop wakes when nothing notifies it;
    None before ``start()`` (no fetcher yet)."""
    fetcher = consumer._fetcher
    return None if fetcher is None else float(fetcher._fetcher_timeout)


def set_fetcher_timeout(consumer: AIOKafkaConsumer, seconds: float) -> None:
    """Change how often the fetch loop wakes with nothing to do (no-op before ``start()``).

    aiokafka wakes it every 0.2 s even when every partition is paused, and
    ``AIOKafkaConsumer`` does not pass the setting on. A paused instance needs no such
    safety net: resume, seek, rebalance and finished requests all wake the loop at once.
    """
    fetcher = consumer._fetcher
    if fetcher is not None:
        fetcher._fetcher_timeout = seconds


# --- producer ---------------------------------------------------------------------------------


def partitioner(producer: AIOKafkaProducer) -> Partitioner:
    """The producer's configured partitioner (murmur2 by default, as Java's)."""
    chosen: Partitioner = producer._partitioner
    return chosen


def max_request_size(producer: AIOKafkaProducer) -> int:
    return int(producer._max_request_size)


def batch_size(producer: AIOKafkaProducer) -> int:
    """``batch.size``: aiokafka keeps it on its accumulator only."""
    return int(producer._message_accumulator._batch_size)


def request_timeout_ms(producer: AIOKafkaProducer) -> int:
    return int(producer._request_timeout_ms)


def check_record_size(producer: AIOKafkaProducer, key: bytes | None, value: bytes | None) -> None:
    """Raise the ``KafkaError`` ``send()`` raises for a record over ``max_request_size``."""
    producer._serialize(key, value, [])


_NO_HEADERS: list[tuple[str, bytes | None]] = []  # shared, never mutated (aiokafka only reads it)


def append_records(
    builder: Any,
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    timestamps: Sequence[int | None] | None,
    start: int,
) -> int:
    """Append records ``start:`` (no headers) to an aiokafka ``BatchBuilder`` until it is full;
    how many went in. A full builder is closed, as its own ``append`` closes it."""
    stamps = repeat(None) if timestamps is None else islice(timestamps, start, None)
    # The caller's columns are parallel; repeat() is endless, so zip stops at the keys.
    records = zip(
        islice(keys, start, None), islice(values, start, None), stamps, repeat(_NO_HEADERS)
    )
    return _append(builder, records)[0]


def append_tuples(builder: Any, records: Iterable[tuple[Any, Any, Any, Any]]) -> int:
    """Append ``(key, value, timestamp_ms, headers)`` records to an aiokafka ``BatchBuilder``
    until it is full; how many went in (see :func:`append_records`)."""
    return _append(builder, records)[0]


def batch_builder(producer: AIOKafkaProducer, size: int) -> Any:
    """An empty batch for ``send_batch`` as ``create_batch()`` makes it, but of ``size`` bytes
    instead of the producer's ``batch.size`` (a first record larger than that still fits)."""
    acc = producer._message_accumulator
    txn = acc._txn_manager
    return BatchBuilder(
        size,
        acc._compression_type,
        is_transactional=txn is not None and txn.transactional_id is not None,
        key_serializer=producer._key_serializer,
        value_serializer=producer._value_serializer,
    )


def _append(builder: Any, records: Iterable[tuple[Any, Any, Any, Any]]) -> tuple[int, Any]:
    """Append ``(key, value, timestamp_ms, headers)`` records to a ``BatchBuilder`` until it is
    full: how many went in, and the first one's metadata (None if none did).

    ``BatchBuilder.append`` is a Python method around the C record builder (keyword
    arguments, a headers check, a closed check and serialisers the gateway never sets, per
    record): for a 100-record request it cost three times the C append itself. This does what
    it does with one C call per record. A builder with serialisers (never the gateway's) takes
    aiokafka's own path.
    """
    count, first = 0, None
    if builder._closed:
        return count, first
    if builder._key_serializer is not None or builder._value_serializer is not None:
        for key, value, timestamp, headers in records:
            metadata = builder.append(timestamp=timestamp, key=key, value=value, headers=headers)
            if metadata is None:
                break
            if first is None:
                first = metadata
            count += 1
        return count, first
    append = builder._builder.append
    offset: int = builder._relative_offset
    for key, value, timestamp, headers in records:
        metadata = append(offset + count, timestamp, key, value, headers)
        if metadata is None:
            builder.close()
            break
        if first is None:
            first = metadata
        count += 1
    builder._relative_offset = offset + count
    return count, first


class BatchFull(Exception):
    """The partition's open batch took no record: wait for it to drain (``drained``)."""

    def __init__(self, drained: Callable[[float | None], Any]) -> None:
        super().__init__("the partition's open batch is full")
        self.drained = drained


def append_to_open_batch(
    producer: AIOKafkaProducer,
    tp: TopicPartition,
    records: Sequence[tuple[bytes | None, bytes | None, int | None, Any]],
    size: int | None = None,
) -> tuple[int, asyncio.Future[Any]]:
    """Append records to the batch aiokafka has open for ``tp``, as many as fit, with no await.

    What ``send()`` does once per record (a coroutine, a metadata check, serialisation, a
    partition choice, an accumulator coroutine and a future resolved on acknowledgement) is
    done here once for the whole run of ``(key, value, timestamp_ms, headers)`` records, which
    is most of a small produce request's CPU. Being synchronous, the appended records are
    contiguous in the batch, so one future stands for all of them: it resolves to the first
    one's metadata (offset), the others follow it (``offset + n``); a batch failure fails it.

    Returns how many were appended (a prefix of ``records``) and that future. Raises
    :class:`BatchFull` when the open batch takes none (the caller awaits ``drained`` and tries
    again, as ``add_message`` does), and the accumulator's own error when it is closed or failed.
    A batch opened for them holds ``size`` bytes (None: the producer's ``batch.size``).
    """
    acc = producer._message_accumulator
    if acc._closed:
        raise ProducerClosed()
    if acc._exception is not None:
        raise copy.copy(acc._exception)
    pending = acc._batches.get(tp)
    if pending:
        batch = pending[-1]
    else:
        builder = acc.create_builder() if size is None else batch_builder(producer, size)
        batch = acc._append_batch(builder, tp)
    appended, first = _append(batch._builder, records)
    if first is None:
        if not acc._waiter_future.done():
            acc._waiter_future.set_result(None)  # wake the sender: the full batch can go
        raise BatchFull(batch.wait_drain)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    batch._msg_futures.append((future, first))
    if appended < len(records) and not acc._waiter_future.done():
        acc._waiter_future.set_result(None)
    return appended, future


def metadata_topics(producer: AIOKafkaProducer) -> frozenset[str]:
    """The topics the producer's client asks the cluster about at every metadata refresh."""
    return frozenset(producer.client._topics)


def forget_missing_topic(producer: AIOKafkaProducer, topic: str) -> bool:
    """Stop asking the cluster about ``topic`` if it does not know it; True if forgotten.

    aiokafka adds every topic a send names to its metadata requests and never drops one, so
    clients naming made-up topics would grow every refresh (and its error log) for good. A
    topic the cluster does know stays: records may be queued for it, and dropping its
    metadata would leave them without a leader.
    """
    client = producer.client
    if client.cluster.partitions_for_topic(topic) is not None or topic not in client._topics:
        return False
    # In place, as aiokafka's own add_topic() does. An empty set means "every topic" to
    # aiokafka, which is also where a fresh producer starts.
    client._topics.discard(topic)
    return True


# --- admin ------------------------------------------------------------------------------------


async def ping_brokers(client: Any) -> None:
    """One cheap round trip to any broker of ``client`` (an ``AIOKafkaClient``): a Metadata
    request naming no topics. ``fetch_all_metadata`` would ask for every topic of the cluster,
    which a readiness probe running several times a second must not cost a large cluster.

    Every known broker is asked at once and the first answer wins: with one broker of three
    dead or frozen, the ping still answers in a round trip instead of waiting out that
    broker's timeout first, so a single broker failure never makes every replica look
    unready at the same moment (a load balancer would then have no replica left)."""
    request = MetadataRequest([])
    nodes: list[Any] = [b.nodeId for b in client.cluster.brokers()] or ["bootstrap"]

    async def ask(node_id: Any) -> None:
        conn = await client._get_conn(node_id)
        if conn is None:
            raise KafkaConnectionError(f"no connection to broker {node_id}")
        await conn.send(request)

    pending = {asyncio.ensure_future(ask(n)) for n in nodes}
    failure: BaseException | None = None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    return
                failure = exc
    finally:
        for task in pending:
            task.cancel()
    raise KafkaConnectionError(f"no broker answered a metadata request ({failure})")


async def admin_request(
    admin: AIOKafkaAdminClient, request: Any, node_id: int | None = None
) -> Any:
    """Send a raw protocol request (e.g. a metadata request that must not create topics), to
    any broker or to ``node_id`` (a ListOffsets request must reach the partition's leader)."""
    return await admin._send_request(request, node_id)


def keep_sequences_dense(producer: AIOKafkaProducer) -> None:
    """Give back the sequence numbers of a batch the broker rejected, as Java's producer does.

    The broker accepts a producer's next batch to a partition only if its first sequence
    number follows the last one it appended. aiokafka numbers a batch when it first leaves the
    queue and keeps the numbers of one that fails for good, so after one rejected batch the
    partition is lost to this producer. Handing the numbers back is safe exactly when the
    broker cannot have appended the batch and no later batch was numbered after it:

    * the batch was sent at most once (``retry_count == 1``: numbered and sent, or numbered
      and expired unsent) and failed with a broker's non-retriable answer (it appended
      nothing) or with a retriable error (with idempotence aiokafka retries those, except a
      batch expiring unsent while its partition has no leader);
    * the partition's next number is still the one after this batch: aiokafka keeps one
      batch per partition in flight and fails it before the next leaves the queue, so this
      holds unless the producer failed as a whole.

    A batch that was sent more than once (a lost answer, then a refusal) may have been
    appended by its first attempt; its numbers are kept (later batches of the partition then
    fail, which loses nothing, where reusing them could make the broker take a new batch for
    a duplicate of the old one and acknowledge records it never wrote).

    Installed on the gateway's producer by ``gateway.kafka``; exercised on a real producer's
    accumulator by ``tests/unit/test_kafka_settings.py``.
    """
    txn = producer._txn_manager
    if txn is None:
        return
    accumulator = producer._message_accumulator
    pop = accumulator._pop_batch

    def numbered(tp: Any) -> Any:
        batch = pop(tp)
        if batch.retry_count != 1 or not txn.has_pid():
            return batch
        end = txn.sequence_number(tp)
        start = end - batch.record_count
        fail = batch.failure

        def failure(exception: BaseException) -> None:
            # Retriable: only an unsent batch expiring fails so (aiokafka retries the rest).
            # A broker's answer (a BrokerResponseError): the broker appended nothing.
            unwritten = isinstance(exception, KafkaError) and (
                exception.retriable
                or (
                    isinstance(exception, BrokerResponseError)
                    and not isinstance(exception, DuplicateSequenceNumber)
                )
            )
            if batch.retry_count == 1 and unwritten and txn.sequence_number(tp) == end:
                txn._sequence_numbers[tp] = start
            fail(exception)

        batch.failure = failure
        return batch

    accumulator._pop_batch = numbered
