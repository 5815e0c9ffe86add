"""The ``_schemas`` topic: tailed into memory by a background task, appended to by writers.

One partition, compacted, created on first start when missing. The reader never stops on its
own: a Kafka outage makes it reconnect with backoff from the offset it had reached, so the
registry heals when Kafka returns (while it is away, requests get a bounded, retriable 503).

Read-your-writes across replicas: :meth:`catch_up` asks Kafka for the partition's end offset
*now* and waits until the local view has applied everything before it. A write acknowledged
by any replica before the request arrived is therefore visible to the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from gateway.config import Config
from gateway.errors import GatewayError, describe
from gateway.kafka import kafka_kwargs

from .errors import store_error, timed_out

log = logging.getLogger(__name__)

_TOPIC_EXISTS = 36
_BATCH = 500  # records applied per slice, so a long replay yields to the event loop

# Applies one fetched batch, in offset order; may hand decoding to a worker thread. It must
# not raise for what a record holds (skip and count it instead): a raise is taken as the reader
# failing, which reconnects and retries from the same offset, so a record-borne raise would
# wedge the registry on every replica.
Apply = Callable[[list[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


class SchemaLog:
    """Owns the reader task and its Kafka clients; requests only await its progress."""

    def __init__(self, config: Config, apply: Apply) -> None:
        self._config = config
        self.topic = config.schema_registry_topic
        self._tp = TopicPartition(self.topic, 0)
        self._apply = apply
        self._timeout = config.kafka_timeout_ms / 1000
        # Only ``client.*`` (security, client.id): ``producer.*`` could weaken acks and
        # ``consumer.*`` targets consumer instances, neither is meant for the registry.
        self._client = dict(config.client)
        self._consumer: AIOKafkaConsumer | None = None
        # End offsets come from a second, idle consumer: a broker answers one request per
        # connection at a time, so asking on the reader's connection would queue behind its
        # long-polling fetch (up to fetch.max.wait.ms) on every catch-up.
        self._probe: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._position = 0  # next offset to apply
        self._ready = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._last_error = "not connected yet"

    @property
    def position(self) -> int:
        return self._position

    async def start(self) -> None:
        """Returns at once: the gateway must come up even while Kafka is down."""
        self._task = asyncio.create_task(self._run(), name=f"schema-registry-reader:{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(store_error("the schema registry is shutting down"))
        self._waiters.clear()

    # --- requests ----------------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Apply everything written to the topic before this call (bounded wait)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            left = deadline - loop.time()
            try:
                async with asyncio.timeout(max(left, 0)):
                    await self._ready.wait()
                    probe = self._probe
                    if probe is None:
                        raise KafkaError("reader restarting")
                    end = (await probe.end_offsets([self._tp]))[self._tp]
                break
            except TimeoutError:
                raise timed_out(
                    f"the schema store (topic {self.topic}) is not reachable: {self._last_error}"
                ) from None
            except Exception as exc:  # the reader reconnecting, topic metadata not there yet
                self._last_error = describe(exc)
                await asyncio.sleep(min(0.05, max(deadline - loop.time(), 0)))
        await self.wait_applied(end, deadline)

    async def wait_applied(self, offset: int, deadline: float | None = None) -> None:
        """Until every record below ``offset`` has been applied to the local view."""
        if self._position >= offset:
            return
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self._timeout
        fut: asyncio.Future[None] = loop.create_future()
        entry = (offset, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0)):
                await fut
        except TimeoutError:
            raise timed_out(
                f"the schema store (topic {self.topic}) was not read up to offset {offset} "
                f"(at {self._position}; {self._last_error})"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    async def append(self, key: bytes, value: bytes | None) -> int:
        """Write one record with acks=all; its offset."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._ready.wait()
                producer = self._producer
                if producer is None:
                    raise KafkaError("writer restarting")
                meta = await producer.send_and_wait(self.topic, value=value, key=key, partition=0)
        except TimeoutError:
            raise timed_out(f"writing to the schema store (topic {self.topic})") from None
        except (KafkaError, OSError) as exc:
            raise store_error(f"writing to topic {self.topic} failed: {describe(exc)}") from exc
        return int(meta.offset)

    # --- the reader task ---------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._open()
                backoff = 0.1
                await self._tail()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._last_error = describe(exc)
                log.warning(
                    "schema registry: topic %s unavailable (%s); retrying in %.1f s",
                    self.topic,
                    self._last_error,
                    backoff,
                )
                self._ready.clear()
                await self._close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _open(self) -> None:
        await self._ensure_topic()
        bootstrap = self._config.bootstrap_servers
        request_timeout = max(self._config.kafka_timeout_ms, 1000)
        self._consumer = self._new_consumer(request_timeout)
        self._probe = self._new_consumer(request_timeout)
        async with asyncio.timeout(self._timeout):
            await self._consumer.start()
            await self._probe.start()
        self._consumer.assign([self._tp])
        if self._position == 0:
            await self._consumer.seek_to_beginning(self._tp)
        else:
            self._consumer.seek(self._tp, self._position)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=0,
            request_timeout_ms=request_timeout,
            **kafka_kwargs(self._client, AIOKafkaProducer, source="client"),
        )
        async with asyncio.timeout(self._timeout):
            await self._producer.start()
        self._ready.set()

    def _new_consumer(self, request_timeout_ms: int) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._config.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=request_timeout_ms,
            **kafka_kwargs(self._client, AIOKafkaConsumer, source="client"),
        )

    async def _tail(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            batches = await consumer.getmany(self._tp, timeout_ms=500, max_records=_BATCH)
            records = batches.get(self._tp)
            if records:
                await self._apply(records)
            self._advance(await consumer.position(self._tp))

    def _advance(self, position: int) -> None:
        if position <= self._position:
            return
        self._position = position
        for offset, fut in self._waiters:
            if offset <= position and not fut.done():
                fut.set_result(None)

    async def _ensure_topic(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._config.bootstrap_servers,
            request_timeout_ms=max(self._config.kafka_timeout_ms, 1000),
            **kafka_kwargs(self._client, AIOKafkaAdminClient, source="client"),
        )
        try:
            async with asyncio.timeout(self._timeout):
                await admin.start()
                (meta,) = await admin.describe_topics([self.topic])
                if meta["error_code"] == 0:
                    if len(meta["partitions"]) != 1:
                        log.error(
                            "schema registry topic %s has %d partitions; only partition 0 is "
                            "used (Confluent requires exactly one)",
                            self.topic,
                            len(meta["partitions"]),
                        )
                    return
                brokers = (await admin.describe_cluster())["brokers"]
                topic = NewTopic(
                    self.topic,
                    num_partitions=1,
                    replication_factor=max(1, min(3, len(brokers))),
                    topic_configs={"cleanup.policy": "compact"},
                )
                resp = await admin.create_topics([topic])
                for err in resp.to_object()["topic_errors"]:
                    if err["error_code"] not in (0, _TOPIC_EXISTS):
                        raise GatewayError(
                            503,
                            50001,
                            f"cannot create topic {self.topic}: error {err['error_code']} "
                            f"{err.get('error_message') or ''}".strip(),
                        )
                log.info("schema registry: created compacted topic %s", self.topic)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _close(self) -> None:
        clients = (self._producer, self._probe, self._consumer)
        self._consumer = self._probe = self._producer = None
        for client in clients:
            if client is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._timeout):
                        await client.stop()
