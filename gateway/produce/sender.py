"""Getting one produce request's records into Kafka through the shared producer, in bounded time.

Two waits, each with its own bound, and neither multiplied by the number of records:

* before sending: the producer and the topic's partitions, together within
  ``producer.max.block.ms`` (Java's ``max.block.ms`` covers exactly this). The records of a
  request share one topic, so this wait happens once per request, not once per record. If it
  runs out, nothing is sent and every record reports 50003, as Confluent does for a missing
  topic or an unreachable cluster.
* after: the records are packed into record batches, one per partition (more when a batch
  fills), the batches are handed to the producer, and their acknowledgements are awaited
  together, within the producer's request timeout.

Records go to Kafka as whole batches rather than one ``send()`` each because the per-record
path (a coroutine, a partition choice, a metadata check and a future per record, and one
future resolved per record on acknowledgement) was most of the gateway's CPU per produced
record. Only batches too small to be worth a broker round trip of their own still go record
by record (see :func:`send_all`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import re
from collections.abc import Collection, Sequence
from itertools import repeat
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnknownTopicOrPartitionError,
)
from aiokafka.structs import RecordMetadata

from sessions import kafka_internals

from ..errors import GatewayError, describe, kafka_error_code
from ..kafka import KafkaClients
from .batching import NO_HEADERS, Batch, Headers, Offset, failure, pack
from .topic_limits import TopicLimits

log = logging.getLogger(__name__)

_RETRY_BACKOFF = 0.25
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
# Past the producer's own request timeout (after which aiokafka fails a batch itself) only a
# wedged client leaves a record unanswered; the margin keeps aiokafka's message the usual one.
_DELIVERY_MARGIN = 1.0
# Topics remembered for the no-wait path; beyond, further topics just take the full path.
_TRACKED_MAX = 100_000
_ERROR_CODE = operator.itemgetter("error_code")
# A run of a request's records handed over together: (partition, their indices, one future).
_Group = tuple[int, list[int], "asyncio.Future[Any]"]
_Columns = tuple[
    list[bytes | None],
    list[bytes | None],
    Sequence[int | None] | None,
    Sequence[Headers] | None,
]
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class NotSent(Exception):
    """The request could not be sent at all; every record reports ``error_code``/``message``."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


class ProducerGate:
    """Shares one in-flight producer start among all requests waiting for it.

    While Kafka is down every request wants a producer; without the gate each would queue its
    own connection attempt behind the client lock, and those attempts would outlive the
    requests that asked for them.
    """

    def __init__(self, clients: KafkaClients) -> None:
        self._clients = clients
        self._starting: asyncio.Future[AIOKafkaProducer] | None = None
        self.turns = BatchTurns()  # shared by the requests of this gateway, like the producer
        self.limits = TopicLimits(clients)
        # Requests waiting for each topic's partitions: only the last one to give up on a
        # missing topic may make the producer forget it (see partitions()).
        self._waiting: dict[str, int] = {}
        # Topics the current producer returned partitions for (see _known()).
        self._tracked_by: AIOKafkaProducer | None = None
        self._tracked: set[str] = set()

    async def producer(self) -> AIOKafkaProducer:
        """The shared producer; the caller bounds the wait, the start itself is not cancelled."""
        task = self._starting
        if task is None or task.done():
            task = self._starting = asyncio.ensure_future(self._clients.producer())
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def partitions(
        self, topic: str, max_block_ms: int
    ) -> tuple[AIOKafkaProducer, frozenset[int]]:
        """The producer and the topic's partition ids, or :class:`NotSent` after the wait.

        Asking makes the producer track the topic at every metadata refresh from then on; a
        topic still missing when the last request waiting for it gives up is dropped again,
        so clients naming made-up topics cannot grow the shared producer's state for good.
        """
        known = self._known(topic)
        if known is not None:
            return known
        if not _legal_topic(topic):
            raise NotSent(
                50002,
                f'Topic name "{topic}" is illegal: it must be 1 to 249 ASCII alphanumerics, '
                "'.', '_' or '-', and not '.' or '..'.",
            )
        self._waiting[topic] = self._waiting.get(topic, 0) + 1
        asked: list[AIOKafkaProducer] = []
        try:
            start = asyncio.get_running_loop().time()
            found = await self._wait_for_partitions(topic, max_block_ms, asked)
            if not self.limits.knows(topic):
                # Once per topic, within what is left of the wait (the Kafka timeout at most).
                left = max_block_ms / 1000 - (asyncio.get_running_loop().time() - start)
                bound = min(self._clients.config.kafka_timeout_ms / 1000, left)
                await self.limits.learn(topic, max(bound, 0.1))
            return found
        finally:
            # Also on cancellation (the client went away): the topic was asked about either way.
            left = self._waiting.pop(topic) - 1
            if left:
                self._waiting[topic] = left
            else:
                for producer in asked:
                    kafka_internals.forget_missing_topic(producer, topic)

    def _known(self, topic: str) -> tuple[AIOKafkaProducer, frozenset[int]] | None:
        """The answer without waiting, when the producer is up and already tracks the topic.

        Almost every request names a topic an earlier request already waited for. Skipping
        the bounded wait for those (a timeout scope, a shielded future and aiokafka's own
        metadata coroutine, each costing event-loop work) is a measurable part of a
        single-record produce's latency. Only a topic this producer returned partitions for
        before qualifies: aiokafka then keeps it in every metadata refresh, so its partitions
        in the cluster metadata are current; once they are gone (a deleted topic), the
        request takes the full path, with its wait and the forgetting of missing topics.
        """
        task = self._starting
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        producer = self._tracked_by
        if producer is None or producer is not task.result() or topic not in self._tracked:
            return None
        partitions = producer.client.cluster.partitions_for_topic(topic)
        if not partitions:
            return None
        return producer, frozenset(partitions)

    def _track(self, producer: AIOKafkaProducer, topic: str) -> None:
        if producer is not self._tracked_by:  # a new producer (restarted): it asks anew
            self._tracked_by = producer
            self._tracked = set()
        if len(self._tracked) < _TRACKED_MAX:
            self._tracked.add(topic)

    async def _wait_for_partitions(
        self, topic: str, max_block_ms: int, asked: list[AIOKafkaProducer]
    ) -> tuple[AIOKafkaProducer, frozenset[int]]:
        """:meth:`partitions` after the name check; ``asked`` gets the producer it asks."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_block_ms / 1000
        unavailable: str | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    producer = await self.producer()
                    if producer not in asked:
                        asked.append(producer)
                    known = frozenset(await producer.partitions_for(topic))
                    self._track(producer, topic)
                    return producer, known
            except TimeoutError:
                break
            except GatewayError as exc:  # no producer: the cluster cannot be reached
                unavailable = exc.message
            except UnknownTopicOrPartitionError:  # aiokafka's own wait ended before ours
                pass
            except KafkaError as exc:
                if kafka_error_code(exc) != 50003:  # e.g. not authorized for this topic
                    raise NotSent(kafka_error_code(exc), describe(exc)) from exc
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(_RETRY_BACKOFF, remaining))
        raise NotSent(
            50003, unavailable or f"Topic {topic} not present in metadata after {max_block_ms} ms."
        )


class BatchTurns:
    """Lets one request at a time per partition hand a whole batch to aiokafka, first come
    first served.

    aiokafka's ``send_batch`` waits while the partition already has an undelivered batch
    queued, and that wait's timeout shrinks by the total time waited so far at every wake-up.
    With many requests waiting on one partition, every drain wakes them all, one wins and
    the others soon fail with ``KafkaTimeoutError`` although the partition is healthy. Queued
    here instead, each request waits inside aiokafka for at most one batch.
    """

    def __init__(self) -> None:
        # Dropped when no request holds or waits for it, so topics come and go freely.
        self._turns: dict[tuple[str, int], _Turn] = {}

    async def send_batch(
        self, producer: AIOKafkaProducer, batch: Any, topic: str, partition: int
    ) -> asyncio.Future[Any]:
        """``producer.send_batch`` once this request's turn for the partition has come."""
        key = (topic, partition)
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:
                future: asyncio.Future[Any] = await producer.send_batch(
                    batch, topic, partition=partition
                )
                return future
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[key]


class _Turn:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # requests holding or waiting for the lock


async def send_all(
    producer: AIOKafkaProducer,
    topic: str,
    keys: list[bytes | None],
    values: list[bytes | None],
    partitions: list[int | None],
    known: Collection[int],
    turns: BatchTurns,
    timestamps: Sequence[int | None] | None = None,
    headers: Sequence[Headers] | None = None,
    queued: asyncio.Event | None = None,
    *,
    limits: TopicLimits,
) -> list[Offset]:
    """One ``offsets`` entry per record, in request order.

    ``timestamps`` (epoch ms) and ``headers`` (v3 produce), when given, run parallel to
    ``keys``; with ``timestamps`` every delivered entry also carries the record's
    ``timestamp`` as Kafka keeps it (the broker's clock on a LogAppendTime topic).
    ``queued`` is set once every record is in the producer's queues (or given up on): a
    caller may then start its next records, which aiokafka keeps behind these ones in each
    partition, while these are still awaiting their acknowledgements.

    ``known`` is the topic's partitions as :meth:`ProducerGate.partitions` returned them,
    ``turns`` the gate's :class:`BatchTurns`.
    Partition choice is the producer's: an explicit partition is honoured, a keyed record
    goes where aiokafka's default partitioner (Java's murmur2) puts it, and keyless records
    stick to one randomly chosen available partition until its batch is full and then move
    to another one, as Java's sticky partitioner does.

    Batches are as large as the topic takes (``limits``, see :mod:`.topic_limits`). A batch
    holding at least half of that (or a record with neither key nor value, which ``send()``
    refuses) is handed over whole. A smaller one is handed over record by record instead,
    into whatever batch the producer has open for that partition: aiokafka queues only one
    undelivered batch per partition, so a small batch of its own would make concurrent small
    requests to one partition take one broker round trip each, where records handed over one
    by one share batches.

    Records are appended in request order and a partition's batches are handed over in order,
    which keeps the records of one partition in request order. A batch fails or succeeds as
    a whole, and each of its records reports that outcome, except that a batch Kafka refuses
    as too large for the topic is sent again in smaller batches where that keeps the order
    (not with ``queued``: the caller's later records may be queued behind it already).
    """
    offsets: list[Offset | None] = [None] * len(keys)
    size = limits.batch_bytes(producer, topic)
    batches = pack(
        producer, topic, keys, values, partitions, known, offsets, timestamps, headers, size
    )
    whole = size // 2
    timeout = kafka_internals.request_timeout_ms(producer) / 1000 + _DELIVERY_MARGIN
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    columns = (keys, values, timestamps, headers)
    maybe_empty = None in values and None in keys  # C-level: per batch only if so
    groups: list[_Group] = []  # what was handed over, in order: (partition, indices, future)
    try:
        async with asyncio.timeout_at(deadline):
            for batch in batches:
                p = batch.partition
                if (
                    batch.full
                    or batch.builder.size() >= whole
                    or (maybe_empty and _has_empty(batch, keys, values))
                ):
                    await _hand_over(
                        producer, topic, p, batch.builder, batch.indices, turns, offsets, groups
                    )
                else:
                    await _append_run(producer, topic, batch, columns, offsets, groups, size)
    except TimeoutError:
        pass  # records not handed over yet keep None and report the timeout below
    finally:
        if queued is not None:
            queued.set()
    await _settle(groups, offsets, timestamps, deadline)
    refused = _refused_as_too_large(groups)
    if refused:
        limits.refused(topic)  # later batches of the topic stay at the safe size
        if queued is None:  # a caller's later records may already be queued behind these
            size = limits.batch_bytes(producer, topic)
            await _send_again(producer, topic, refused, columns, size, turns, offsets, deadline)
    timed_out = failure(50003, f"Kafka did not acknowledge the record within {timeout:g} s.")
    return [timed_out if o is None else o for o in offsets]


async def _send_again(
    producer: AIOKafkaProducer,
    topic: str,
    refused: list[tuple[int, list[int]]],
    columns: _Columns,
    size: int,
    turns: BatchTurns,
    offsets: list[Offset | None],
    deadline: float,
) -> None:
    """Send records of refused batches again, in batches of ``size`` bytes, by ``deadline``.

    A batch shared by several requests (or one large request) may be larger than the topic's
    ``max.message.bytes`` allows although each record fits: Kafka refused it whole, so none of
    it was written. Java's producer splits such a batch and sends it again; so does this.
    """
    again: list[_Group] = []
    try:
        async with asyncio.timeout_at(deadline):
            for partition, indices in refused:
                for builder, chunk in _split(producer, columns, indices, size):
                    await _hand_over(
                        producer, topic, partition, builder, chunk, turns, offsets, again
                    )
    except TimeoutError:
        pass  # what was not handed over again keeps its refusal
    for _, indices, _ in again:
        for i in indices:
            offsets[i] = None  # answered by the resend, not by the refusal
    await _settle(again, offsets, columns[2], deadline)


async def _hand_over(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    builder: Any,
    indices: list[int],
    turns: BatchTurns,
    offsets: list[Offset | None],
    groups: list[_Group],
) -> None:
    """Hand a whole batch to the producer (in the partition's turn); a refusal is its records'."""
    try:
        future = await turns.send_batch(producer, builder, topic, partition)
    except KafkaError as exc:
        failed = failure(kafka_error_code(exc), describe(exc))
        for i in indices:
            offsets[i] = failed
    else:
        groups.append((partition, indices, future))


async def _settle(
    groups: list[_Group],
    offsets: list[Offset | None],
    timestamps: Sequence[int | None] | None,
    deadline: float,
) -> None:
    """Wait (until ``deadline``) for the groups' acknowledgements; fill their records' entries.

    A group's future resolves to its first record's metadata; the others follow it
    (``offset + n``), as records appended together are contiguous in their batch.
    """
    futures = [future for _, _, future in groups]
    if futures:
        loop = asyncio.get_running_loop()
        await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
    for _, indices, future in groups:
        outcome = _outcome(future)
        if isinstance(outcome, dict):
            for i in indices:
                offsets[i] = outcome
        elif outcome is not None:
            partition, base = outcome.partition, outcome.offset
            if timestamps is None:
                _fill_delivered(offsets, indices, partition, base)
                continue
            # The answer carries a time of its own only for LogAppendTime (the broker's);
            # with CreateTime each record keeps the one it was sent with.
            appended = outcome.timestamp if outcome.timestamp_type == 1 else None
            for n, i in enumerate(indices):
                entry = offsets[i] = _delivered(partition, base + n)
                entry["timestamp"] = timestamps[i] if appended is None else appended


def _refused_as_too_large(groups: list[_Group]) -> list[tuple[int, list[int]]]:
    """Per partition, the records (in order) of the groups Kafka refused as too large, where
    sending them again keeps the partition's order: only refusals after the partition's last
    group that may have been written (acknowledged, failed otherwise, or unanswered)."""
    refused: dict[int, list[int]] = {}
    for partition, indices, future in groups:
        if future.done() and not future.cancelled() and isinstance(future.exception(), _TOO_LARGE):
            refused.setdefault(partition, []).extend(indices)
        else:
            refused.pop(partition, None)  # resending what came before it would reorder
    return list(refused.items())


def _records(
    columns: _Columns, indices: list[int]
) -> list[tuple[bytes | None, bytes | None, int | None, Headers]]:
    """The records at ``indices`` as ``(key, value, timestamp_ms, headers)`` (C-level maps)."""
    keys, values, timestamps, headers = columns
    return list(
        zip(
            map(keys.__getitem__, indices),
            map(values.__getitem__, indices),
            repeat(None) if timestamps is None else map(timestamps.__getitem__, indices),
            repeat(NO_HEADERS) if headers is None else map(headers.__getitem__, indices),
            strict=False,  # repeat() is endless: the indices decide
        )
    )


def _split(
    producer: AIOKafkaProducer,
    columns: _Columns,
    indices: list[int],
    size: int,
) -> list[tuple[Any, list[int]]]:
    """The records at ``indices`` in batches of at most ``size`` bytes (a record larger than
    that gets a batch of its own)."""
    records = _records(columns, indices)
    out: list[tuple[Any, list[int]]] = []
    start = 0
    while start < len(records):
        builder = kafka_internals.batch_builder(producer, size)
        count = kafka_internals.append_tuples(builder, records[start:])
        out.append((builder, indices[start : start + count]))
        start += count
    return out


async def _append_run(
    producer: AIOKafkaProducer,
    topic: str,
    batch: Batch,
    columns: _Columns,
    offsets: list[Offset | None],
    groups: list[_Group],
    size: int,
) -> None:
    """Hand a small batch's records over into the batch the producer has open for the
    partition (shared with other requests' records), in runs that each get one future; a
    batch opened for them holds ``size`` bytes."""
    records = _records(columns, batch.indices)
    tp = TopicPartition(topic, batch.partition)
    start = 0
    while start < len(records):
        try:
            n, future = kafka_internals.append_to_open_batch(producer, tp, records[start:], size)
        except kafka_internals.BatchFull as full:
            # As send() waits: for the full batch to go (bounded by the caller's deadline).
            with contextlib.suppress(KafkaError):  # it failed: its own records report that
                await full.drained(None)
            continue
        except KafkaError as exc:
            failed = failure(kafka_error_code(exc), describe(exc))
            for i in batch.indices[start:]:
                offsets[i] = failed
            return
        groups.append((batch.partition, batch.indices[start : start + n], future))
        start += n


def _has_empty(batch: Batch, keys: list[bytes | None], values: list[bytes | None]) -> bool:
    """A record with neither key nor value: Kafka takes it (v3's ``{}``), ``send()`` refuses it
    (v2 rejects such records before sending), so its batch must go whole."""
    return any(keys[i] is None and values[i] is None for i in batch.indices)


def _outcome(future: asyncio.Future[Any]) -> RecordMetadata | Offset | None:
    """What a handed-over batch or record came to: its metadata, a failure entry, or None
    while it is not acknowledged (the caller then reports the timeout)."""
    if not future.done():
        return None
    if future.cancelled():
        return failure(50003, "The send was cancelled by the Kafka client.")
    exc = future.exception()
    if exc is None:
        metadata: RecordMetadata = future.result()
        return metadata
    if not isinstance(exc, KafkaError | TimeoutError):
        log.error("non-Kafka failure from the producer", exc_info=exc)
        raise GatewayError(500, 500, "Unexpected non-Kafka exception returned by Kafka")
    return failure(kafka_error_code(exc), describe(exc))


def _fill_delivered(
    offsets: list[Offset | None], indices: list[int], partition: int, base: int
) -> None:
    """The entries of a delivered batch's records (``base`` is the first one's offset),
    without a call per record: most batches are a contiguous run of the request."""
    entries = [
        {"partition": partition, "offset": offset, "error_code": None, "error": None}
        for offset in range(base, base + len(indices))
    ]
    first = indices[0]
    if indices[-1] - first + 1 == len(indices):  # increasing, so contiguous
        offsets[first : first + len(indices)] = entries
    else:
        for i, entry in zip(indices, entries, strict=True):
            offsets[i] = entry


def _delivered(partition: int, offset: int) -> Offset:
    return {"partition": partition, "offset": offset, "error_code": None, "error": None}


def not_sent(exc: NotSent, count: int) -> list[Offset]:
    entry = failure(exc.error_code, exc.message)
    return [entry] * count


def response_status(offsets: list[Offset]) -> int:
    """200 unless a record failed authentication (401) or authorization (403), as Confluent."""
    codes = set(map(_ERROR_CODE, offsets))
    if 40101 in codes:
        return 401
    if 40301 in codes:
        return 403
    return 200


def _legal_topic(topic: str) -> bool:
    # Asking the producer for an illegal name would add it to the producer's metadata topics
    # for good (aiokafka never forgets one), making every later metadata refresh carry it.
    return topic not in (".", "..") and _LEGAL_TOPIC.fullmatch(topic) is not None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a failed start as seen: a request that gave up waiting may never look at it."""
    if not task.cancelled():
        task.exception()
