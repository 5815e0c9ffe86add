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
import re
from collections.abc import Collection, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.structs import RecordMetadata

from sessions import kafka_internals

from ..errors import GatewayError, describe, kafka_error_code
from ..kafka import KafkaClients
from .batching import NO_HEADERS, Batch, Headers, Offset, failure, pack

log = logging.getLogger(__name__)

_RETRY_BACKOFF = 0.25
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
# Past the producer's own request timeout (after which aiokafka fails a batch itself) only a
# wedged client leaves a record unanswered; the margin keeps aiokafka's message the usual one.
_DELIVERY_MARGIN = 1.0
# Topics remembered for the no-wait path; beyond, further topics just take the full path.
_TRACKED_MAX = 100_000


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
            return await self._wait_for_partitions(topic, max_block_ms, asked)
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

    A batch holding at least half the producer's batch size (or a record with neither key nor
    value, which ``send()`` refuses) is handed over whole. A smaller
    one is handed over record by record instead, into whatever batch the producer has open
    for that partition: aiokafka queues only one undelivered batch per partition, so a small
    batch of its own would make concurrent small requests to one partition take one broker
    round trip each, where records handed over one by one share batches.

    Records are appended in request order and a partition's batches are handed over in order,
    which keeps the records of one partition in request order. A batch fails or succeeds as
    a whole, and each of its records reports that outcome.
    """
    offsets: list[Offset | None] = [None] * len(keys)
    batches = pack(producer, topic, keys, values, partitions, known, offsets, timestamps, headers)
    whole = kafka_internals.batch_size(producer) // 2
    timeout = kafka_internals.request_timeout_ms(producer) / 1000 + _DELIVERY_MARGIN
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    handed: list[tuple[Batch, asyncio.Future[Any]]] = []
    runs: list[tuple[list[int], asyncio.Future[Any]]] = []
    try:
        async with asyncio.timeout_at(deadline):
            for batch in batches:
                p = batch.partition
                if batch.full or batch.builder.size() >= whole or _has_empty(batch, keys, values):
                    try:
                        future = await turns.send_batch(producer, batch.builder, topic, p)
                    except KafkaError as exc:
                        failed = failure(kafka_error_code(exc), describe(exc))
                        for i in batch.indices:
                            offsets[i] = failed
                    else:
                        handed.append((batch, future))
                    continue
                await _append_run(
                    producer, topic, batch, (keys, values, timestamps, headers), offsets, runs
                )
    except TimeoutError:
        pass  # records not handed over yet keep None and report the timeout below
    finally:
        if queued is not None:
            queued.set()
    futures = [future for _, future in handed] + [future for _, future in runs]
    if futures:
        await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
    for batch, future in handed:
        outcome = _outcome(future)
        if isinstance(outcome, dict):
            for i in batch.indices:
                offsets[i] = outcome
        elif outcome is not None:
            partition, base = outcome.partition, outcome.offset
            if timestamps is None:
                for n, i in enumerate(batch.indices):
                    offsets[i] = _delivered(partition, base + n)
            else:
                # A whole batch's answer carries a time only for LogAppendTime (-1 otherwise).
                appended = outcome.timestamp if outcome.timestamp_type == 1 else None
                for n, i in enumerate(batch.indices):
                    entry = offsets[i] = _delivered(partition, base + n)
                    entry["timestamp"] = timestamps[i] if appended is None else appended
    for indices, future in runs:
        outcome = _outcome(future)
        if isinstance(outcome, dict):
            for i in indices:
                offsets[i] = outcome
        elif outcome is not None:
            partition, base = outcome.partition, outcome.offset
            # A CreateTime answer carries the record's own time only for the first of a run.
            appended = outcome.timestamp if outcome.timestamp_type == 1 else None
            for n, i in enumerate(indices):
                entry = offsets[i] = _delivered(partition, base + n)
                if timestamps is not None:
                    entry["timestamp"] = timestamps[i] if appended is None else appended
    timed_out = failure(50003, f"Kafka did not acknowledge the record within {timeout:g} s.")
    return [timed_out if o is None else o for o in offsets]


async def _append_run(
    producer: AIOKafkaProducer,
    topic: str,
    batch: Batch,
    columns: tuple[
        list[bytes | None],
        list[bytes | None],
        Sequence[int | None] | None,
        Sequence[Headers] | None,
    ],
    offsets: list[Offset | None],
    runs: list[tuple[list[int], asyncio.Future[Any]]],
) -> None:
    """Hand a small batch's records over into the batch the producer has open for the
    partition (shared with other requests' records), in runs that each get one future."""
    keys, values, timestamps, headers = columns
    records = [
        (
            keys[i],
            values[i],
            None if timestamps is None else timestamps[i],
            NO_HEADERS if headers is None else headers[i],
        )
        for i in batch.indices
    ]
    tp = TopicPartition(topic, batch.partition)
    start = 0
    while start < len(records):
        try:
            n, future = kafka_internals.append_to_open_batch(producer, tp, records[start:])
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
        runs.append((batch.indices[start : start + n], future))
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


def _delivered(partition: int, offset: int) -> Offset:
    return {"partition": partition, "offset": offset, "error_code": None, "error": None}


def not_sent(exc: NotSent, count: int) -> list[Offset]:
    entry = failure(exc.error_code, exc.message)
    return [entry] * count


def response_status(offsets: list[Offset]) -> int:
    """200 unless a record failed authentication (401) or authorization (403), as Confluent."""
    codes = {o["error_code"] for o in offsets}
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
