"""Getting one produce request's records into Kafka through the shared producer, in bounded time.

Two waits, each with its own bound, and neither multiplied by the number of records:

* before sending: the producer and the topic's partitions, together within
  ``producer.max.block.ms`` (Java's ``max.block.ms`` covers exactly this). The records of a
  request share one topic, so this wait happens once per request, not once per record. If it
  runs out, nothing is sent and every record reports 50003, as Confluent does for a missing
  topic or an unreachable cluster.
* after: all records are handed to the producer in order, then their acknowledgements are
  awaited together, within the producer's request timeout.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from .errors import GatewayError, describe, kafka_error_code
from .kafka import KafkaClients

log = logging.getLogger(__name__)

_RETRY_BACKOFF = 0.25
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
# Past the producer's own request timeout (after which aiokafka fails a batch itself) only a
# wedged client leaves a record unanswered; the margin keeps aiokafka's message the usual one.
_DELIVERY_MARGIN = 1.0

Offset = dict[str, Any]


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

    def __init__(self) -> None:
        self._starting: asyncio.Future[AIOKafkaProducer] | None = None

    async def producer(self, clients: KafkaClients) -> AIOKafkaProducer:
        """The shared producer; the caller bounds the wait, the start itself is not cancelled."""
        task = self._starting
        if task is None or task.done():
            task = self._starting = asyncio.ensure_future(clients.producer())
            task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def partitions(
        self, clients: KafkaClients, topic: str, max_block_ms: int
    ) -> tuple[AIOKafkaProducer, frozenset[int]]:
        """The producer and the topic's partition ids, or :class:`NotSent` after the wait."""
        if not _legal_topic(topic):
            raise NotSent(
                50002,
                f'Topic name "{topic}" is illegal: it must be 1 to 249 ASCII alphanumerics, '
                "'.', '_' or '-', and not '.' or '..'.",
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_block_ms / 1000
        unavailable: str | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    producer = await self.producer(clients)
                    return producer, frozenset(await producer.partitions_for(topic))
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


async def send_all(
    producer: AIOKafkaProducer,
    topic: str,
    keys: list[bytes | None],
    values: list[bytes | None],
    partitions: list[int | None],
) -> list[Offset]:
    """One ``offsets`` entry per record, in request order.

    Records are handed over one after another, not as concurrent tasks: ``send`` only waits
    when a partition's batch is full, and handing over in order is what keeps the records of
    one partition in request order. Acknowledgements are then awaited all at once.
    """
    timeout = getattr(producer, "_request_timeout_ms", 30_000) / 1000 + _DELIVERY_MARGIN
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    sent: list[asyncio.Future[Any] | BaseException | None] = [None] * len(keys)
    try:
        async with asyncio.timeout_at(deadline):
            for i, (key, value, partition) in enumerate(zip(keys, values, partitions, strict=True)):
                try:
                    sent[i] = await producer.send(topic, value=value, key=key, partition=partition)
                except KafkaError as exc:
                    sent[i] = exc
    except TimeoutError:
        pass  # records not handed over yet stay None and report the timeout below
    futures = [f for f in sent if isinstance(f, asyncio.Future)]
    if futures:
        await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
    timed_out = _failure(50003, f"Kafka did not acknowledge the record within {timeout:g} s.")
    return [_offset(s, timed_out) for s in sent]


def not_sent(exc: NotSent, count: int) -> list[Offset]:
    entry = _failure(exc.error_code, exc.message)
    return [entry] * count


def response_status(offsets: list[Offset]) -> int:
    """200 unless a record failed authentication (401) or authorization (403), as Confluent."""
    codes = {o["error_code"] for o in offsets}
    if 40101 in codes:
        return 401
    if 40301 in codes:
        return 403
    return 200


def _offset(sent: asyncio.Future[Any] | BaseException | None, timed_out: Offset) -> Offset:
    if sent is None:
        return timed_out
    if isinstance(sent, asyncio.Future):
        if not sent.done():
            return timed_out
        if sent.cancelled():
            return _failure(50003, "The send was cancelled by the Kafka client.")
        exc = sent.exception()
        if exc is None:
            metadata = sent.result()
            return {
                "partition": metadata.partition,
                "offset": metadata.offset,
                "error_code": None,
                "error": None,
            }
        sent = exc
    if not isinstance(sent, KafkaError | TimeoutError):
        log.error("non-Kafka failure from the producer", exc_info=sent)
        raise GatewayError(500, 500, "Unexpected non-Kafka exception returned by Kafka")
    return _failure(kafka_error_code(sent), describe(sent))


def _failure(error_code: int, message: str) -> Offset:
    return {"partition": None, "offset": None, "error_code": error_code, "error": message}


def _legal_topic(topic: str) -> bool:
    # Asking the producer for an illegal name would add it to the producer's metadata topics
    # for good (aiokafka never forgets one), making every later metadata refresh carry it.
    return topic not in (".", "..") and _LEGAL_TOPIC.fullmatch(topic) is not None


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a failed start as seen: a request that gave up waiting may never look at it."""
    if not task.cancelled():
        task.exception()
